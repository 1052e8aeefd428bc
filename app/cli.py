"""The `hearth` command: the window by default, subcommands for scripted use.

    hearth                          open the window
    hearth ask PROMPT [--conversation ID] [--model ID] [--json]
    hearth models list|fetch ID|verify [ID]|import PATH
    hearth bench [--json]

Errors print as `error: …` and `hint: …` on stderr with exit status 1; nothing is lost.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from app import __version__
from app.errors import HearthError


def build_parser() -> argparse.ArgumentParser:
    from app.catalog import cli as models_cli

    parser = argparse.ArgumentParser(prog="hearth", description="Hearth: a local desktop assistant.")
    parser.add_argument("--version", action="version", version=f"Hearth {__version__}")
    sub = parser.add_subparsers(dest="command")

    ask = sub.add_parser("ask", help="ask one question and stream the answer")
    ask.add_argument("prompt")
    ask.add_argument("--conversation", type=int, help="continue this conversation (id)")
    ask.add_argument("--model", help="model id from `hearth models list`")
    ask.add_argument("--json", action="store_true", help="print one JSON object instead of streaming text")
    ask.add_argument("--max-tokens", type=int)
    ask.add_argument("--temperature", type=float)
    ask.add_argument("--seed", type=int)

    bench = sub.add_parser("bench", help="measure speed; prints figures (JSON with --json)")
    bench.add_argument("--json", action="store_true")
    bench.add_argument("--only", action="append", help="run only this figure (repeatable)")

    models_cli.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command is None:
            from app.ui.app import run_gui

            return run_gui()
        if args.command == "ask":
            return ask(args)
        if args.command == "bench":
            from app.bench import run_bench

            return run_bench(args)
        if args.command == "models":
            from app.catalog import cli as models_cli

            return models_cli.run(args)
    except HearthError as exc:
        report(exc)
        return 1
    except KeyboardInterrupt:
        return 130
    return 2


def report(exc: HearthError) -> None:
    print(f"error: {exc.message}", file=sys.stderr)
    if exc.hint:
        print(f"hint: {exc.hint}", file=sys.stderr)


def ask(args: argparse.Namespace) -> int:
    from app import logs
    from app.core.turn import ChatSession, ContextTrimmed, ReplyFinished, TextDelta, add_user_message
    from app.runtime import Profile, load_engine

    profile = Profile.open()
    logs.install(profile.paths.logs)
    settings = profile.settings
    gen = settings.generation
    overrides = {k: v for k, v in (("max_tokens", args.max_tokens), ("temperature", args.temperature), ("seed", args.seed)) if v is not None}
    if overrides:
        import dataclasses

        settings = settings.replace(generation=dataclasses.replace(gen, **overrides))
    if args.conversation is not None:
        profile.store.get_conversation(args.conversation)  # a clear error before any model work
    user = add_user_message(profile.store, args.conversation, args.prompt)
    engine = load_engine(profile, args.model)
    session = ChatSession(profile.store, engine, settings)
    text, final = "", None
    for event in session.reply(user.conversation_id):
        if isinstance(event, TextDelta):
            text += event.text
            if not args.json:
                sys.stdout.write(event.text)
                sys.stdout.flush()
        elif isinstance(event, ContextTrimmed) and not args.json:
            print(f"[{event.marker.content}]", file=sys.stderr)
        elif isinstance(event, ReplyFinished):
            final = event
    if args.json and final is not None:
        stats = final.stats
        print(json.dumps({
            "text": text,
            "ttft_s": round(stats.ttft_s, 4),
            "tokens": stats.completion_tokens,
            "tokens_per_s": round(stats.tokens_per_s, 2),
            "model": engine.info.model_id,
            "backend": engine.info.backend,
            "conversation_id": user.conversation_id,
            "message_id": final.message.id,
            "prompt_tokens": stats.prompt_tokens,
            "prompt_evaluated": stats.prompt_evaluated,
        }))
    elif not args.json:
        print()
    engine.close()
    profile.close()
    return 0

