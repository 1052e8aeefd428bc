"""`hearth transcribe` and `hearth say`: the speech engines from a terminal.

    hearth transcribe AUDIO [--json] [--model ID] [--language xx]
    hearth say TEXT -o OUT.wav [--voice ID] [--rate R] [--json]      (TEXT "-" reads standard input)
    hearth voice-turn IN.wav [-o OUT.wav] [--conversation ID] [--json]

Models come from the catalog (the settings' speech model and voice unless --model / --voice name
another) and are fetched when missing, like `hearth ask` does for chat models. The input is checked
before any model loads, so a wrong path fails at once. `say` streams into a temporary file that
replaces OUT.wav only when all of the text was spoken.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from app.errors import ModelError, VoiceError

if TYPE_CHECKING:  # loaded only when a command runs: `hearth` alone must open the window fast
    from app.catalog.catalog import ModelEntry
    from app.runtime import Profile


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    transcribe = sub.add_parser("transcribe", help="print the words spoken in an audio file")
    transcribe.add_argument("audio", type=Path, help="a recording: WAV, FLAC, MP3, Ogg, …")
    transcribe.add_argument("--json", action="store_true", help="print one JSON object with timings and segments")
    transcribe.add_argument("--model", help="speech recognition model id from `hearth models list`")
    transcribe.add_argument(
        "--language", help="spoken language for multilingual models (en, de, fr, …; default: the setting)"
    )

    say = sub.add_parser("say", help="speak text into a WAV file")
    say.add_argument("text", help='the text to speak; "-" reads it from standard input')
    say.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.wav", help="the WAV file to write")
    say.add_argument("--voice", help="voice id from `hearth models list`")
    say.add_argument("--rate", type=float, help="speaking speed, 0.5 to 2 (default: the setting)")
    say.add_argument("--json", action="store_true", help="print one JSON object with the file and timings")

    turn = sub.add_parser("voice-turn", help="one hands-free turn from a recording: hear it, answer aloud into a WAV")
    turn.add_argument("audio", type=Path, help="a recording of a question (WAV, FLAC, …)")
    turn.add_argument("-o", "--output", type=Path, metavar="OUT.wav", help="write the spoken reply here")
    turn.add_argument("--conversation", type=int, help="continue this conversation (id)")
    turn.add_argument("--json", action="store_true", help="print one JSON object with the stage timings")


def run(args: argparse.Namespace) -> int:
    if args.command == "transcribe":
        return transcribe(args)
    if args.command == "voice-turn":
        if args.output is not None:
            from app.voice.audiofile import check_output_path

            check_output_path(args.output)
        return voice_turn_command(args.audio, args.output, args.conversation, args.json)
    return say(args)


def transcribe(args: argparse.Namespace) -> int:
    from app.voice.audiofile import load_audio
    from app.voice.stt import Transcriber

    audio = load_audio(args.audio)
    profile = _open_profile()
    try:
        entry = _entry(profile, args.model or profile.settings.voice.stt_model_id, "stt", "speech recognition model")
        profile.library.ensure(entry)
        language = args.language or profile.settings.voice.language
    finally:
        profile.close()
    transcriber = Transcriber(profile.library.folder_for(entry), language=language)
    if args.language and not transcriber.multilingual and args.language.lower() not in ("en", "auto"):
        print(f"warning: {entry.id} understands English only; --language {args.language} is ignored.", file=sys.stderr)
    result = transcriber.transcribe(audio)
    if args.json:
        print(
            json.dumps(
                {
                    "text": result.text,
                    "language": result.language,
                    "duration_s": round(result.duration_s, 3),
                    "elapsed_s": round(result.elapsed_s, 3),
                    "rtf": round(result.rtf, 4),
                    "model": entry.id,
                    "device": transcriber.device,
                    "segments": [
                        {
                            "start": s.start,
                            "end": s.end,
                            "text": s.text,
                            "no_speech_prob": round(s.no_speech_prob, 4),
                            "avg_logprob": round(s.avg_logprob, 4),
                        }
                        for s in result.segments
                    ],
                }
            )
        )
    else:
        print(result.text)
    return 0


def say(args: argparse.Namespace) -> int:
    from app.voice.audiofile import WavWriter, check_output_path
    from app.voice.tts import Voice, check_rate, split_for_speech

    text = sys.stdin.read() if args.text == "-" else args.text
    if next(split_for_speech(text), None) is None:
        raise VoiceError(
            "There is nothing to say: the text is empty."
            if not text.strip()
            else "There is nothing to say: the text has no words.",
            'Give the text to speak as an argument, or "-" to read it from standard input.',
        )
    check_output_path(args.output)
    profile = _open_profile()
    try:
        entry = _entry(profile, args.voice or profile.settings.voice.voice_id, "tts", "voice")
        rate = check_rate(args.rate if args.rate is not None else profile.settings.voice.speaking_rate)
        profile.library.ensure(entry)
    finally:
        profile.close()
    voice = Voice(profile.library.path_for(entry), speaking_rate=rate)
    started = time.monotonic()
    with WavWriter(args.output, voice.sample_rate) as writer:
        for chunk in voice.synthesize(text):
            writer.write(chunk)
        if writer.samples_written == 0:
            raise VoiceError(
                "There is nothing to say: the voice produced no sound for this text.", "Give text with words in it."
            )
    elapsed = time.monotonic() - started
    if args.json:
        duration = writer.duration_s
        print(
            json.dumps(
                {
                    "path": str(args.output.resolve()),
                    "duration_s": round(duration, 3),
                    "elapsed_s": round(elapsed, 3),
                    "rtf": round(elapsed / duration, 4) if duration else 0.0,
                    "sample_rate": voice.sample_rate,
                    "voice": entry.id,
                }
            )
        )
    return 0


def _open_profile() -> Profile:
    from app import logs
    from app.runtime import Profile

    profile = Profile.open()
    logs.install(profile.paths.logs)
    return profile


def _entry(profile: Profile, model_id: str, kind: str, what: str) -> ModelEntry:
    entry = profile.library.get(model_id)
    if entry.kind != kind:
        choices = ", ".join(e.id for e in profile.library.entries() if e.kind == kind) or "none"
        raise ModelError(f"'{model_id}' is a {entry.kind} model, not a {what}.", f"Choose one of: {choices}.")
    return entry


def voice_turn_command(audio: Path, output: Path | None, conversation_id: int | None, as_json: bool) -> int:
    """`hearth voice-turn IN.wav -o OUT.wav [--json]`: one hands-free turn from a recording."""
    from app.core.turn import ChatSession
    from app.runtime import Profile, load_engine
    from app.voice.audiofile import load_audio
    from app.voice.replay import load_voice_models, run_recorded_turn, save_output

    recording = load_audio(audio)
    profile = Profile.open()
    try:
        if conversation_id is not None:
            profile.store.get_conversation(conversation_id)  # a clear error before any model loads
        engine = load_engine(profile)
        try:
            models = load_voice_models(profile, profile.settings.voice)
            session = ChatSession(profile.store, engine, profile.settings)
            report = run_recorded_turn(
                session, models, recording, profile.settings.voice, conversation_id=conversation_id, fast_reply=True
            )
        finally:
            engine.close()
    finally:
        profile.close()
    if output is not None and len(report.output):
        save_output(report, output)
    if as_json:
        print(json.dumps(report.to_json() | {"output": str(output) if output else None}, indent=2))
    else:
        print(f"you said: {report.heard or '(nothing heard)'}")
        print(f"hearth:   {report.reply}")
        if report.round_trip_s is not None:
            print(
                f"round trip {report.round_trip_s:.3f} s  "
                + "  ".join(f"{k}={v:.3f}" for k, v in report.stages.items())
            )
    if not report.heard:
        from app.errors import AudioError

        raise AudioError(
            "No speech was heard in the recording." + (f" ({'; '.join(report.problems)})" if report.problems else ""),
            "Check that the file holds speech loud enough to hear, with a pause after it.",
        )
    return 0
