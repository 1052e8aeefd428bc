"""The `hearth` command: the window by default, subcommands for scripted use.

    hearth                          open the window
    hearth --smoke-test             open it, answer one prompt, print one JSON line, quit
    hearth ask PROMPT [--image FILE]... [--conversation ID] [--model ID] [--json]
    hearth models list|fetch ID|verify [ID]|import PATH
    hearth tools list | run NAME ARGUMENTS [--yes]
    hearth bench [--json]
    hearth transcribe AUDIO [--json] [--model ID] [--language xx]
    hearth voice-turn IN.wav [-o OUT.wav] [--conversation ID] [--json]
    hearth say TEXT -o OUT.wav [--voice ID] [--rate R] [--json]

Errors print as `error: …` and `hint: …` on stderr with exit status 1; nothing is lost.
An unexpected failure (a bug) prints the same two lines; its traceback goes to the log file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from app import __version__
from app.errors import HearthError

if TYPE_CHECKING:  # imported lazily at run time: `hearth` alone must open the window fast
    from app.core.conversation import Message
    from app.core.turn import ReplyFinished
    from app.engines.llm import EngineInfo
    from app.runtime import Profile
    from app.settings import Settings


def build_parser() -> argparse.ArgumentParser:
    from app.catalog import cli as models_cli
    from app.tools import cli as tools_cli
    from app.voice import cli as voice_cli

    parser = argparse.ArgumentParser(prog="hearth", description="Hearth: a local desktop assistant.")
    parser.add_argument("--version", action="version", version=f"Hearth {__version__}")
    parser.add_argument(
        "--smoke-test",
        action="store_true",
        help="open the window, answer one prompt with the default model, print one JSON line, quit",
    )
    sub = parser.add_subparsers(dest="command")

    ask = sub.add_parser("ask", help="ask one question and stream the answer")
    ask.add_argument("prompt")
    ask.add_argument("--conversation", type=int, help="continue this conversation (id)")
    ask.add_argument(
        "--model", help="model id from `hearth models list` (with the remote engine: the server's model name)"
    )
    ask.add_argument(
        "--image",
        action="append",
        type=Path,
        default=[],
        metavar="FILE",
        help="attach a picture; the model reads the text in it (repeatable)",
    )
    ask.add_argument("--json", action="store_true", help="print one JSON object instead of streaming text")
    ask.add_argument("--max-tokens", type=int)
    ask.add_argument("--temperature", type=float)
    ask.add_argument("--seed", type=int)

    bench = sub.add_parser("bench", help="measure speed; prints figures (JSON with --json)")
    bench.add_argument("--json", action="store_true")
    bench.add_argument("--only", action="append", help="run only this figure (repeatable)")

    models_cli.add_parser(sub)
    voice_cli.add_parsers(sub)
    tools_cli.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from app.engines.worker_main import WORKER_FLAG

    if list(sys.argv[1:] if argv is None else argv)[:1] == [WORKER_FLAG]:  # the model's own process
        from app.engines.worker_main import main as serve

        serve()
    args = build_parser().parse_args(argv)
    try:
        if args.command is None:
            from app.ui.app import run_gui

            return run_gui(smoke_test=args.smoke_test)
        if args.command == "ask":
            return ask(args)
        if args.command == "bench":
            from app.bench.run import run_bench

            return run_bench(args)
        if args.command == "models":
            from app.catalog import cli as models_cli

            return models_cli.run(args)
        if args.command == "tools":
            from app.tools import cli as tools_cli

            return tools_cli.run(args)
        if args.command in ("transcribe", "say", "voice-turn"):
            from app.voice import cli as voice_cli

            return voice_cli.run(args)
    except HearthError as exc:
        report(exc)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug, not a mistake of the user's: say so in one line, keep the details
        return report_unexpected(exc)
    return 2


def report(exc: HearthError) -> None:
    print(f"error: {exc.message}", file=sys.stderr)
    if exc.hint:
        print(f"hint: {exc.hint}", file=sys.stderr)


def report_unexpected(exc: Exception) -> int:
    """One `error:` line for people; the traceback goes to the log file (or stderr when there is none)."""
    log_file = _log_crash(exc)
    if log_file is None:
        traceback.print_exception(exc, file=sys.stderr)
    print(f"error: Hearth stopped because of an unexpected problem: {type(exc).__name__}: {exc}", file=sys.stderr)
    where = f"The details are in {log_file}" if log_file else "The details are above (no log file could be written)"
    print(f"hint: {where}; please include them when you report this problem.", file=sys.stderr)
    return 1


def _log_crash(exc: Exception) -> Path | None:
    """Write the traceback to Hearth's log file and return its path; None when no log file can be opened."""
    from app import logs
    from app.paths import default_paths

    logger = logging.getLogger("hearth")
    try:
        if not _log_files(logger):
            logs.install(default_paths().ensure().logs)
        files = _log_files(logger)
        if not files:
            return None
        logger.error("unexpected error in the hearth command", exc_info=exc)
        return files[0]
    except Exception:  # the report must reach the user even when the data folder itself is the problem
        return None


def _log_files(logger: logging.Logger) -> list[Path]:
    return [Path(h.baseFilename) for h in logger.handlers if isinstance(h, logging.FileHandler)]


def ask(args: argparse.Namespace) -> int:
    from app import logs
    from app.core.turn import ChatSession, ContextTrimmed, ReplyFinished, TextDelta
    from app.runtime import Profile, load_engine

    profile = Profile.open()
    logs.install(profile.paths.logs)
    if profile.store.notice:
        print(f"warning: {profile.store.notice}", file=sys.stderr)
    settings = _with_overrides(profile.settings, args)
    # Every argument is checked before the message is stored, so a typo leaves no half-started conversation.
    if args.conversation is not None:
        profile.store.get_conversation(args.conversation)
    if profile.settings.engine == "local":
        profile.model_entry(args.model)
    user = _add_question(profile, args)
    engine = load_engine(profile, args.model)
    if engine.info.fallback_reason and not args.json:  # with --json it is a field of the result
        print(f"warning: the model runs on the CPU: {engine.info.fallback_reason}.", file=sys.stderr)
        print(f"hint: {engine.info.fallback_hint}", file=sys.stderr)
    if args.image and not engine.info.vision and not args.json:
        print(
            f"note: {engine.info.model_name} cannot see pictures: it was given the text read from them.",
            file=sys.stderr,
        )
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
        print(json.dumps(_json_result(text, final, engine.info, user)))
    elif not args.json:
        print()
    engine.close()
    profile.close()
    return 0


def _add_question(profile: Profile, args: argparse.Namespace) -> Message:
    """Store the question with its pictures; a bad picture raises before anything is stored."""
    from app.core.images import ImageStore
    from app.core.turn import add_user_message
    from app.engines.ocr import RapidOcrReader

    # The reader loads its models only when a picture is read, so a plain question pays nothing.
    reader, image_store = RapidOcrReader(), ImageStore(profile.paths.images)
    return add_user_message(profile.store, args.conversation, _valid_text(args.prompt), args.image, image_store, reader)


def _json_result(text: str, final: ReplyFinished, info: EngineInfo, user: Message) -> dict[str, object]:
    stats = final.stats
    images = [
        {"name": i["name"], "sha256": i["sha256"], "ocr_chars": len(i["ocr_text"])} for i in user.meta.get("images", [])
    ]
    return {
        "text": text,
        "ttft_s": round(stats.ttft_s, 4),
        "tokens": stats.completion_tokens,
        "tokens_per_s": round(stats.tokens_per_s, 2),
        "model": info.model_id,
        "backend": info.backend,
        "gpu_layers": info.gpu_layers,
        "fallback_reason": info.fallback_reason,
        "conversation_id": final.message.conversation_id,
        "message_id": final.message.id,
        "prompt_tokens": stats.prompt_tokens,
        "prompt_evaluated": stats.prompt_evaluated,
        "images": images,
        "sees_pictures": info.vision,
    }


def _with_overrides(settings: Settings, args: argparse.Namespace) -> Settings:
    """The profile's settings with this command's --max-tokens, --temperature and --seed applied."""
    options = (("max_tokens", args.max_tokens), ("temperature", args.temperature), ("seed", args.seed))
    overrides = {name: value for name, value in options if value is not None}
    if not overrides:
        return settings
    try:
        return settings.replace(generation=dataclasses.replace(settings.generation, **overrides))
    except ValueError as exc:
        raise HearthError(f"Invalid option: {exc}", "See `hearth ask --help` for the allowed values.") from exc


def _valid_text(prompt: str) -> str:
    """The prompt as storable text: bytes that were not UTF-8 in the command line become U+FFFD.

    Python keeps such bytes as lone surrogates, which SQLite (and the model) cannot take.
    """
    try:
        raw = prompt.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that did not come from the command line's bytes
        raw = prompt.encode("utf-8", "replace")
    return raw.decode("utf-8", "replace")
