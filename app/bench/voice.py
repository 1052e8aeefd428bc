"""Voice figures for `hearth bench`, measured from audio rather than from internal events.

- voice_round_trip_s: median, over spoken questions, from the last sample of speech in the input
  to the first audible sample of the reply (echo of the reply mixed back into the microphone), with
  the model in its worker process as in the app; `in_process_median_s` is the same with the model in
  the benchmark's own process;
- barge_in_ms: median, from the onset of speech over a reply to the speaker falling silent;
- stt_rtf / tts_rtf: seconds of audio handled per second of compute (higher is faster);
- stt_wer: word error rate of speech recognition on Piper-spoken sentences;
- voice_gui_stall_ms: the longest GUI event-loop stall while the window listens, thinks and speaks.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from app.bench.common import Figure
from app.voice.audio import RATE


def _session(folder: Path, model_path: Path, settings: Any, in_process: bool = False) -> Any:
    """A session over the model as the app runs it (in its worker process), or in this process."""
    from app.core.store import Store
    from app.core.turn import ChatSession
    from app.engines.llama_cpp_engine import LlamaCppEngine
    from app.engines.worker import ModelSpec, WorkerEngine
    from app.settings import physical_cores

    if in_process:
        engine: Any = LlamaCppEngine(model_path, model_id="bench", n_ctx=2048, n_threads=physical_cores())
    else:
        engine = WorkerEngine(ModelSpec(model_path, "bench", n_ctx=2048, n_threads=physical_cores()))
    store = Store.open(folder / ("voice-bench-in-process.sqlite3" if in_process else "voice-bench.sqlite3"))
    return ChatSession(store, engine, settings)


def _models(settings: Any) -> Any:
    from app.runtime import Profile
    from app.voice.replay import load_voice_models

    profile = Profile.open()
    try:
        return load_voice_models(profile, settings.voice)
    finally:
        profile.close()


def bench_voice(model_path: Path, folder: Path, utterances: int = 10) -> list[Any]:
    """All voice figures in one run (the models load once)."""
    from app.settings import GenerationSettings, Settings
    from app.ui.stall_probe import measure_voice_stall
    from app.voice.utterances import QUESTIONS, piper_utterances

    settings = Settings(generation=GenerationSettings(temperature=0.0, seed=1, max_tokens=64))
    models = _models(settings)
    session = _session(folder, model_path, settings)
    questions = piper_utterances(models.voice, QUESTIONS[:utterances], rates=(1.0,))
    try:
        trip = _round_trip(session, models, questions, settings)
        figures = [trip, _barge_in(session, models, questions, settings)]
        figures += _speech_rates(models)
    finally:
        session.engine.close()
        session.store.close()
    # The same spoken questions with the model in this process, as before it had a process of its own.
    alone = _session(folder, model_path, settings, in_process=True)
    try:
        before = _round_trip(alone, models, questions, settings)
        trip.detail["in_process_median_s"] = before.value
        trip.detail["in_process_worst_s"] = before.detail["worst_s"]
    finally:
        alone.engine.close()
        alone.store.close()
    stall = measure_voice_stall(model_path, folder, questions[0].samples)
    return [*figures, Figure("voice_gui_stall_ms", stall["stall_ms"], 50.0, "lower", "ms", stall)]


def _round_trip(session: Any, models: Any, questions: list[Any], settings: Any) -> Any:
    from app.voice.replay import run_recorded_turn

    trips: list[float] = []
    stages: dict[str, list[float]] = {}
    for utterance in questions:
        report = run_recorded_turn(session, models, utterance.samples, settings.voice, echo=True, max_reply_audio_s=0.5)
        if report.round_trip_s is not None:
            trips.append(report.round_trip_s)
        for name, value in report.stages.items():
            stages.setdefault(name, []).append(value)
    breakdown = {f"{name}_s": round(statistics.median(values), 4) for name, values in stages.items()}
    breakdown |= {"best_s": min(trips), "worst_s": max(trips), "turns": float(len(trips))}
    return Figure("voice_round_trip_s", statistics.median(trips), 0.8, "lower", "s", breakdown)


def _barge_in(session: Any, models: Any, questions: list[Any], settings: Any) -> Any:
    from app.voice.replay import run_recorded_turn
    from app.voice.utterances import piper_utterances

    cuts: list[float] = []
    interrupter = piper_utterances(models.voice, ["Wait, stop please."])[0]
    for utterance in questions:
        report = run_recorded_turn(
            session,
            models,
            utterance.samples,
            settings.voice,
            echo=True,
            interrupt_with=interrupter.samples[int(0.4 * RATE) :],
        )
        if report.barge_in_s is not None:
            cuts.append(report.barge_in_s * 1000)
    detail = {"best_ms": min(cuts, default=0.0), "worst_ms": max(cuts, default=0.0), "turns": float(len(cuts))}
    return Figure("barge_in_ms", statistics.median(cuts) if cuts else float("inf"), 150.0, "lower", "ms", detail)


def _speech_rates(models: Any) -> list[Any]:
    """Word error rate and real-time factor of recognition; real-time factor of synthesis.

    Each utterance is also transcribed with the encoder reading Whisper's whole 30 s window, side
    by side, so the details show what reading only the clip and 10 s of padding costs in words
    and saves in time (`full_window_*`), on the Piper sentences and on espeak-ng's harder speech.
    """
    from app.voice.utterances import WER_SENTENCES, espeak_available, espeak_utterance, piper_utterances

    piper = _recognition(models.stt, piper_utterances(models.voice, WER_SENTENCES, rates=(1.0, 1.2)))
    detail: dict[str, float] = {
        "sentences": float(len(piper["errors"])),
        "worst": max(piper["errors"]),
        "full_window_wer": float(np.mean(piper["full_errors"])),
        "full_window_time_ratio": piper["full_s"] / piper["compute_s"],
    }
    if espeak_available():
        espeak = _recognition(models.stt, [espeak_utterance(text) for text in WER_SENTENCES])
        detail["espeak_wer"] = float(np.mean(espeak["errors"]))
        detail["espeak_full_window_wer"] = float(np.mean(espeak["full_errors"]))
    tts_audio, tts_time = 0.0, 0.0
    for text in WER_SENTENCES:
        started = time.perf_counter()
        samples = sum(len(chunk) for chunk in models.voice.synthesize(text))
        tts_time += time.perf_counter() - started
        tts_audio += samples / models.voice.sample_rate
    stt_audio, stt_time = piper["audio_s"], piper["compute_s"]
    return [
        Figure("stt_wer", float(np.mean(piper["errors"])), 0.05, "lower", "", detail),
        Figure("stt_rtf", stt_audio / stt_time, 1.0, "higher", "x", {"audio_s": stt_audio, "compute_s": stt_time}),
        Figure("tts_rtf", tts_audio / tts_time, 1.0, "higher", "x", {"audio_s": tts_audio, "compute_s": tts_time}),
    ]


def _recognition(stt: Any, utterances: list[Any]) -> dict[str, Any]:
    """Errors and compute time over `utterances`, as Hearth transcribes and over the full window."""
    from app.voice.wer import word_error_rate

    out: dict[str, Any] = {"errors": [], "full_errors": [], "audio_s": 0.0, "compute_s": 0.0, "full_s": 0.0}
    for utterance in utterances:
        for full in (False, True):
            started = time.perf_counter()
            transcript = stt.transcribe(utterance.samples, full_window=full)
            out["full_s" if full else "compute_s"] += time.perf_counter() - started
            out["full_errors" if full else "errors"].append(word_error_rate(utterance.text, transcript.text))
        out["audio_s"] += len(utterance.samples) / RATE
    return out
