"""One hands-free turn from a recording, through the same loop the window uses.

The recording is played into the loop as a microphone would deliver it (in real time, followed by
silence), the reply is "played" into a recording speaker, and the turn is measured *from the audio*:
from the last sample of speech in the input to the first audible sample of the reply. This backs
`hearth voice-turn` and the voice figures of `hearth bench`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.core.turn import ChatSession
from app.errors import VoiceError
from app.settings import VoiceSettings
from app.voice.audio import RATE, FileInput, RecordingOutput, Samples
from app.voice.loop import (
    Heard,
    NothingHeard,
    Problem,
    StateChanged,
    TurnDone,
    TurnTimings,
    VoiceEvent,
    VoiceLoop,
    VoiceState,
)
from app.voice.turns import SessionTurns
from app.voice.utterances import speech_bounds

AUDIBLE = 0.01  # |sample| above this counts as sound (−40 dBFS)
QUIET_AFTER_S = 2.0  # listening this long after the recording ends with no turn: nothing was said


@dataclass
class VoiceModels:
    """The loaded speech models a voice turn needs (loaded once, reused for every turn)."""

    stt: Any  # app.voice.stt.Transcriber
    voice: Any  # app.voice.tts.Voice


def load_voice_models(profile: Any, settings: VoiceSettings, warm_up: bool = True) -> VoiceModels:
    """Speech recognition and synthesis models from the catalog, fetched and checked if needed."""
    from app.voice.stt import Transcriber
    from app.voice.tts import Voice

    library = profile.library
    stt_entry = library.get(settings.stt_model_id)
    tts_entry = library.get(settings.voice_id)
    language = None if settings.language == "auto" else settings.language
    stt = Transcriber(library.ensure(stt_entry).parent, language=language)
    voice = Voice(library.ensure(tts_entry), speaking_rate=settings.speaking_rate)
    if warm_up:
        stt.warm_up()
        for _ in voice.synthesize_16k("Ready."):
            pass
    return VoiceModels(stt, voice)


@dataclass
class TurnReport:
    heard: str = ""
    reply: str = ""
    status: str = ""
    conversation_id: int | None = None
    round_trip_s: float | None = None  # true end of speech → first audible reply sample
    barge_in_s: float | None = None  # interrupting speech onset → playback stopped
    stages: dict[str, float] = field(default_factory=dict)  # seconds after the true end of speech
    timings: TurnTimings | None = None
    states: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    output: Samples = field(default_factory=lambda: np.zeros(0, np.float32))

    def to_json(self) -> dict[str, Any]:
        return {
            "heard": self.heard,
            "reply": self.reply,
            "status": self.status,
            "conversation": self.conversation_id,
            "round_trip_s": _round(self.round_trip_s),
            "barge_in_s": _round(self.barge_in_s),
            "stages_s": self.stages,
            "states": self.states,
            "problems": self.problems,
            "output_s": round(len(self.output) / RATE, 3),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


class EchoRoom:
    """A microphone that also hears the speaker, as laptop speakers do: the recording plus the
    speaker's output, delayed and attenuated. Lets the echo canceller be exercised without hardware."""

    def __init__(self, source: FileInput, speaker: RecordingOutput, delay_s: float = 0.12, gain: float = 0.6) -> None:
        self.name = f"{source.name}+echo"
        self._source = source
        self._speaker = speaker
        self._delay = int(delay_s * RATE)
        self._gain = gain
        self._heard = 0

    def start(self, sink: Any) -> None:
        def mixed(chunk: Samples) -> None:
            assert self._speaker.timeline_start is not None and self._source.started_at is not None
            offset = int((self._source.started_at - self._speaker.timeline_start) * RATE)
            begin = self._heard + offset - self._delay
            self._heard += len(chunk)
            echo = self._speaker.segment(begin, begin + len(chunk))
            sink(chunk + self._gain * echo)

        self._source.start(mixed)

    def stop(self) -> None:
        self._source.stop()


def run_recorded_turn(
    session: ChatSession,
    models: VoiceModels,
    recording: Samples,
    settings: VoiceSettings,
    *,
    conversation_id: int | None = None,
    interrupt_with: Samples | None = None,
    echo: bool = False,
    max_reply_audio_s: float | None = None,
    fast_reply: bool = False,
    timeout_s: float = 120.0,
) -> TurnReport:
    """Play `recording` into a fresh loop and return what happened, measured from the audio.

    `interrupt_with` is spoken over the reply, 0.8 s after it starts sounding (barge-in).
    `max_reply_audio_s` stops the turn that long after the reply starts sounding; `fast_reply`
    stops pacing the speaker once the reply is audible (the figures are taken by then).
    """
    speaker = RecordingOutput(loud=AUDIBLE)
    source = FileInput(recording, tail_s=timeout_s, name="recording")
    source_input: Any = EchoRoom(source, speaker) if echo else source
    report = TurnReport()
    done = threading.Event()
    turns_left = [2 if interrupt_with is not None else 1]  # the interruption is a turn of its own

    def on_event(event: VoiceEvent) -> None:
        if isinstance(event, StateChanged):
            report.states.append(event.state.value)
        elif isinstance(event, Heard):
            report.heard = event.text
        elif isinstance(event, Problem):
            report.problems.append(str(event.error))
        elif isinstance(event, NothingHeard):
            report.problems.append(event.reason)
            done.set()
        if isinstance(event, TurnDone) and not event.carried_on:
            if report.timings is None:
                report.timings = event.timings
            turns_left[0] -= 1
            if turns_left[0] <= 0:
                done.set()

    turns = SessionTurns(session, lambda: conversation_id)
    loop = VoiceLoop(source_input, speaker, models.stt, models.voice, turns, settings, on_event)
    speaker.start()
    loop.start()
    try:
        first_audio, onset = _drive(
            source, speaker, recording, interrupt_with, max_reply_audio_s, fast_reply, loop, done, timeout_s, report
        )
    finally:
        loop.close()
        speaker.close()
    _measure(report, source, speaker, recording, first_audio, onset)
    report.output = speaker.recording()
    report.conversation_id = turns.conversation_id
    if turns.conversation_id is not None:
        replies = [m for m in session.store.messages(turns.conversation_id) if m.role == "assistant"]
        if replies:  # the reply to the recording (a later turn answers an interruption)
            report.reply, report.status = replies[0].content, replies[0].status
    return report


def _drive(
    source: FileInput,
    speaker: RecordingOutput,
    recording: Samples,
    interrupt_with: Samples | None,
    max_reply_audio_s: float | None,
    fast_reply: bool,
    loop: VoiceLoop,
    done: threading.Event,
    timeout_s: float,
    report: TurnReport,
) -> tuple[float | None, float | None]:
    """Feed the turn until it is done: interrupt it or cut it short when asked.

    Returns when the reply first sounded and when the interrupting speech began (clock times)."""
    deadline = time.monotonic() + timeout_s
    first_audio: float | None = None
    onset: float | None = None
    while not done.wait(0.01):
        if time.monotonic() > deadline:
            raise VoiceError(
                "The voice turn did not finish in time.", "Check the log file for what the loop was doing."
            )
        if (
            loop.state == VoiceState.LISTENING
            and source.delivered > len(recording) + QUIET_AFTER_S * RATE
            and not report.states[1:]
        ):
            report.problems.append("No speech was heard.")
            return None, None
        if first_audio is None:
            first_audio = _first_audible(speaker)
            if first_audio is not None and fast_reply:
                speaker.fast_forward()
            continue
        if interrupt_with is not None and onset is None and time.monotonic() >= first_audio + 0.8:
            at = source.delivered + int(0.05 * RATE)  # a little ahead of the reader
            source.splice(at, interrupt_with)
            onset = source.sample_time(at + speech_bounds(interrupt_with)[0])
        if (
            max_reply_audio_s is not None
            and time.monotonic() >= first_audio + max_reply_audio_s
            and interrupt_with is None
        ):
            loop.interrupt()
            max_reply_audio_s = None
    return first_audio or _first_audible(speaker), onset


def _measure(
    report: TurnReport,
    source: FileInput,
    speaker: RecordingOutput,
    recording: Samples,
    first_audio: float | None,
    onset: float | None,
) -> None:
    """Round trip, stage times and barge-in delay, from the true end of speech in the recording."""
    if source.started_at is None:
        return
    _, speech_end = speech_bounds(recording)
    true_end = source.sample_time(speech_end or len(recording) - 1)
    if first_audio is not None:
        report.round_trip_s = first_audio - true_end
    if report.timings is not None:
        # Stage times from the true end of speech in the audio (the detector hears it a little later).
        t = report.timings
        marks = {
            "heard_end": t.speech_end,
            "endpoint": t.endpoint,
            "transcribed": t.transcribed,
            "first_token": t.first_token,
            "first_sentence": t.first_sentence,
            "first_audio_queued": t.first_audio,
        }
        report.stages = {name: round(at - true_end, 4) for name, at in marks.items() if at}
        if first_audio is not None:
            report.stages["first_audible"] = round(first_audio - true_end, 4)
    after = [t for t in speaker.stops if onset is not None and t >= onset]
    if onset is not None and after:
        report.barge_in_s = after[0] - onset


def _first_audible(speaker: RecordingOutput) -> float | None:
    index = speaker.first_loud
    if index is None or speaker.timeline_start is None:
        return None
    return speaker.timeline_start + index / RATE


def save_output(report: TurnReport, path: Path) -> None:
    """The reply as heard: the speaker's recording from its first audible sample."""
    from app.voice.audiofile import save_wav

    loud = np.nonzero(np.abs(report.output) > AUDIBLE)[0]
    start = max(0, int(loud[0]) - int(0.05 * RATE)) if len(loud) else 0
    save_wav(path, report.output[start:], RATE)
