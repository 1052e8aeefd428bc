"""The hands-free voice loop: listen, hear a turn, answer aloud, listen again — and stop talking
the moment the user speaks over it.

Threads (none of them is the GUI thread):

* **capture** — the microphone's own thread hands chunks to a queue and returns at once;
* **frames** — takes 10 ms frames in order, removes Hearth's own voice with the echo canceller
  (the speaker's reference, frame for frame), runs voice detection every 32 ms and decides where
  turns begin and end. Barge-in is decided here, so it does not wait on anything else;
* **transcription** — one worker: each stretch of speech is transcribed as soon as the user pauses,
  so when the turn ends only the last few words are left (often already done);
* **reply** — one per turn: streams the model's answer through the `TurnHandler`, cuts it into
  sentences and synthesises them, queueing audio on the speaker while the rest is still written.

The end of a turn is `patience_ms` of silence, or less (`QUICK_END_MS`) once the words so far end
a sentence. If the user speaks again before the answer has begun, it was a pause, not an end: the
words so far open the new turn. Every state change and stage time is reported through `on_event`.
"""

from __future__ import annotations

import enum
import logging
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from app.errors import HearthError
from app.settings import VoiceSettings
from app.voice.audio import FRAME, RATE, AudioInput, AudioOutput, Samples
from app.voice.turns import TurnHandler
from app.voice.vad import WINDOW, EchoCanceller, EchoPath, SileroVad, rms_db

log = logging.getLogger("hearth.voice")

ONSET_PROB = 0.5
OFFSET_PROB = 0.35
ONSET_WINDOWS = 2  # 64 ms of speech starts a turn (or a barge-in)
ONSET_WINDOWS_OVER_ECHO = 2  # while Hearth's own voice may be in the microphone
# While Hearth talks, the echo canceller's suppression distorts the user's words enough that the
# detector is often unsure of them (0.2–0.5). A window the canceller took little off (so it is not
# Hearth's voice) and that is as loud as a voice counts as speech when the detector half agrees.
FAINT_PROB_OVER_ECHO = 0.2
NOT_ECHO_DB = 12.0
VOICE_FLOOR_DB = -50.0
PRE_ROLL_S = 0.35  # audio kept from before the detector fired: the first syllable
SPECULATE_WINDOWS = 1  # 32 ms of silence: transcribe the words so far, in case the turn is ending
CHUNK_PAUSE_MS = 160  # a pause this long commits the words so far as a transcribed piece
QUICK_END_MS = 250  # silence that ends a turn whose words end a sentence
QUICK_END_MIN_WORDS = 3  # "Stop." or "Wait." is more often the start of a sentence than all of it
MIN_SPEECH_WINDOWS = 4  # shorter blips (a cough, a click) are not transcribed
MAX_CHUNK_S = 25.0  # Whisper sees 30 s at most: cut long monologues into pieces
MAX_TURN_S = 300.0
FIRST_AUDIO_WAIT_S = 2.0
LEVEL_EVERY_S = 0.05
_SENTENCE_END = re.compile(r"[.!?…]['\")\]]*\s*$")


class VoiceState(enum.StrEnum):
    OFF = "off"
    LISTENING = "listening"
    HEARING = "hearing"
    THINKING = "thinking"
    SPEAKING = "speaking"


@dataclass
class TurnTimings:
    """Monotonic times of one turn's stages (0 where a stage did not happen)."""

    speech_start: float = 0.0
    speech_end: float = 0.0  # the detector's last speech window: the heard end of speech
    endpoint: float = 0.0  # the turn was declared over
    transcribed: float = 0.0
    first_token: float = 0.0
    first_sentence: float = 0.0
    first_audio: float = 0.0  # first synthesised samples queued on the speaker
    stt_s: float = 0.0  # transcription work left after the turn ended

    def stages(self) -> dict[str, float]:
        """Seconds from the heard end of speech to each later stage."""
        origin = self.speech_end
        names = ("endpoint", "transcribed", "first_token", "first_sentence", "first_audio")
        return {name: round(getattr(self, name) - origin, 4) for name in names if getattr(self, name)}


@dataclass(frozen=True)
class StateChanged:
    state: VoiceState


@dataclass(frozen=True)
class Level:
    db: float  # microphone level after echo cancellation, dBFS


@dataclass(frozen=True)
class Partial:
    text: str  # the words heard so far in this turn


@dataclass(frozen=True)
class Heard:
    text: str
    timings: TurnTimings


@dataclass(frozen=True)
class NothingHeard:
    reason: str  # e.g. only noise


@dataclass(frozen=True)
class Speaking:
    text: str  # a sentence queued for playback


@dataclass(frozen=True)
class BargedIn:
    heard: str  # what of the reply was played before the user spoke
    by: str = "speech"  # "speech" (the user talked over it) or "stop" (the stop button)


@dataclass(frozen=True)
class TurnDone:
    timings: TurnTimings
    interrupted: bool
    carried_on: bool = False  # the user went on before any of the answer was heard: its words open the next turn


@dataclass(frozen=True)
class Problem:
    error: HearthError


VoiceEvent = StateChanged | Level | Partial | Heard | NothingHeard | Speaking | BargedIn | TurnDone | Problem


class Transcribes(Protocol):
    def transcribe(self, audio: Samples, language: str | None = None) -> object:
        """Returns an object with a `.text` attribute."""


class Speaks(Protocol):
    def synthesize_16k(self, text: str) -> object:
        """Yields 16 kHz float32 chunks."""


class SentenceSplitter(Protocol):
    def feed(self, delta: str) -> list[str]: ...

    def flush(self) -> list[str]: ...


@dataclass
class _Span:
    sentence: int  # index of the sentence in the reply
    text: str
    start: int  # position in the speaker's played-samples count
    length: int


@dataclass
class _Turn:
    """One user turn, from the first speech window to the reply's last sample."""

    number: int
    timings: TurnTimings = field(default_factory=TurnTimings)
    audio: list[Samples] = field(default_factory=list)  # since the last chunk cut
    chunks: list[Future[str]] = field(default_factory=list)
    spec: tuple[Future[str], int] | None = None  # a transcription started early, and the windows it covers
    texts: dict[int, str] = field(default_factory=dict)
    speech_windows: int = 0  # in the current chunk
    total_s: float = 0.0
    cancel: threading.Event = field(default_factory=threading.Event)
    spans: list[_Span] = field(default_factory=list)
    heard_cut: str | None = None
    cut_by: str = "speech"  # what cut the reply: the user's "speech" or the "stop" button
    first_audio_ready: threading.Event = field(default_factory=threading.Event)
    ended: bool = False
    responding: bool = False  # its words were committed to the conversation
    carried: list[Future[str]] = field(default_factory=list)  # words of a turn the user went on from
    carried_on: bool = False  # the user went on speaking before any of this turn's answer was heard
    withdrawn: bool = False  # ...after its words were committed: the message and answer are taken back


class VoiceLoop:
    """Runs voice turns between a microphone, a speaker and a conversation."""

    def __init__(
        self,
        mic: AudioInput,
        speaker: AudioOutput,
        stt: Transcribes,
        voice: Speaks | None,
        turns: TurnHandler,
        settings: VoiceSettings,
        on_event: Callable[[VoiceEvent], None],
        *,
        sentences: Callable[[], SentenceSplitter] | None = None,
        vad: SileroVad | None = None,
        echo: EchoCanceller | None = None,
    ) -> None:
        self.mic, self.speaker, self.stt, self.voice, self.turns = mic, speaker, stt, voice, turns
        self.settings = settings
        self._emit = on_event
        if sentences is None:
            from app.voice.speech_text import SentenceStream

            sentences = SentenceStream
        self._sentences = sentences
        self._vad = vad or SileroVad()
        self._vad_raw = SileroVad()
        self._echo_path = EchoPath()
        self._echo = echo if echo is not None else (EchoCanceller() if settings.echo_cancellation else None)
        self._chunks: queue.Queue[Samples | None] = queue.Queue()
        self._control: queue.Queue[Callable[[], None]] = queue.Queue()
        self._stt_pool = ThreadPoolExecutor(1, thread_name_prefix="hearth-stt")
        self._stt_pending = 0
        self._replies: list[threading.Thread] = []
        self._lock = threading.RLock()
        self._state = VoiceState.OFF
        self._thread: threading.Thread | None = None
        self._turn: _Turn | None = None  # the turn being heard
        self._answering: _Turn | None = None  # the turn being answered
        self._turn_count = 0
        self._ring: deque[Samples] = deque(maxlen=int(PRE_ROLL_S * RATE / WINDOW) + 1)
        self._pending = np.zeros(0, dtype=np.float32)
        self._window = np.zeros(0, dtype=np.float32)
        self._window_raw = np.zeros(0, dtype=np.float32)
        self._run_len = 0
        self._silence = 0
        self._cut_sent = False
        self._ptt = False
        self._level_due = 0.0
        self._level_acc: list[Samples] = []

    # -- control (any thread) -------------------------------------------------------

    @property
    def state(self) -> VoiceState:
        return self._state

    def start(self) -> None:
        """Open the microphone and listen (hands-free) or wait for the talk key (push-to-talk)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._frames, name="hearth-voice-frames", daemon=True)
        self._thread.start()
        self.speaker.clear_reference()  # the reference and the microphone start together
        try:
            self.mic.start(self._chunks.put)
        except BaseException:
            self._chunks.put(None)
            self._thread.join()
            self._thread = None
            raise
        with self._lock:
            opened = self._state == VoiceState.OFF  # speech may already have begun a turn
        if opened:
            self._set_state(VoiceState.LISTENING)

    def stop(self) -> None:
        """Stop listening and speaking; a reply being written is stopped and kept as it stands."""
        if self._thread is None:
            return
        self.mic.stop()
        with self._lock:
            answering = self._answering
            self._answering = None
            self._turn = None
        if answering is not None:
            answering.cancel.set()
        self.speaker.stop()
        self._chunks.put(None)
        self._thread.join()
        self._thread = None
        self._set_state(VoiceState.OFF)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop, then wait (up to `timeout_s`) for replies being written to be stored as they stand."""
        self.stop()
        deadline = time.monotonic() + timeout_s
        for thread in self._replies:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._stt_pool.shutdown(wait=True, cancel_futures=True)

    def interrupt(self) -> None:
        """Stop talking now (the always-visible stop); the cut reply is kept as heard."""
        self._control.put(lambda: self._barge_in(by="stop"))

    def push_to_talk(self, pressed: bool) -> None:
        """Push-to-talk: pressing starts a turn (and interrupts a reply); releasing ends it."""
        self._control.put(lambda: self._on_push(pressed))

    def update_settings(self, settings: VoiceSettings) -> None:
        self.settings = settings

    # -- the frames thread ------------------------------------------------------------

    def _frames(self) -> None:
        waiting = False
        while True:
            try:
                # While a frame waits for its reference, look again soon rather than at the next chunk.
                chunk = self._chunks.get(timeout=0.005 if waiting else 0.05)
            except queue.Empty:
                chunk = np.zeros(0, dtype=np.float32)
            self._run_controls()
            if chunk is None:
                return
            try:
                waiting = self._consume(chunk)
            except Exception as exc:  # a bug here must not kill listening silently
                waiting = False
                log.exception("voice frame processing failed")
                self._emit(Problem(HearthError(f"Voice processing failed: {exc}", "Turn voice off and on again.")))

    def _run_controls(self) -> None:
        while True:
            try:
                action = self._control.get_nowait()
            except queue.Empty:
                return
            action()

    def _consume(self, chunk: Samples) -> bool:
        """Process every whole frame whose reference is there; True if one is left waiting for it."""
        self._pending = np.concatenate([self._pending, chunk.astype(np.float32, copy=False)])
        while len(self._pending) >= FRAME:
            if self._echo is not None and not self.speaker.reference_ready(FRAME):
                return True  # the speaker's writer is late: its sound is still playing, wait for it
            raw, self._pending = self._pending[:FRAME], self._pending[FRAME:]
            reference = self.speaker.take_reference(FRAME)
            cleaned = self._echo.process(raw, reference) if self._echo is not None else raw
            self._echo_path.note(raw, reference)
            self._level(cleaned)
            self._window = np.concatenate([self._window, cleaned])
            self._window_raw = np.concatenate([self._window_raw, raw])
            if len(self._window) >= WINDOW:
                window, self._window = self._window[:WINDOW], self._window[WINDOW:]
                window_raw, self._window_raw = self._window_raw[:WINDOW], self._window_raw[WINDOW:]
                prob, prob_raw = self._vad(window), self._vad_raw(window_raw)
                if self._echo is None or self._echo_path.absent():
                    # Nothing of Hearth's voice can be in the microphone (it has been quiet, or the
                    # user wears headphones): listen to the microphone itself. The canceller also
                    # damps the user's words for a while after playback, so its output is used
                    # only while an echo may really be there.
                    self._on_window(window_raw, prob_raw)
                else:
                    self._on_window(window, _through_echo(prob, window, window_raw))
        return False

    def _level(self, frame: Samples) -> None:
        self._level_acc.append(frame)
        now = time.monotonic()
        if now >= self._level_due:
            self._emit(Level(rms_db(np.concatenate(self._level_acc))))
            self._level_acc.clear()
            self._level_due = now + LEVEL_EVERY_S

    def _on_window(self, window: Samples, prob: float) -> None:
        turn = self._turn
        if turn is None:
            self._ring.append(window)
            self._run_len = self._run_len + 1 if prob >= ONSET_PROB else 0
            needed = ONSET_WINDOWS if self._echo_path.absent() else ONSET_WINDOWS_OVER_ECHO
            if self._run_len >= needed and self.settings.mode == "hands-free" and not self._ptt:
                self._begin_turn(onset_windows=self._run_len)
            return
        turn.audio.append(window)
        turn.total_s += WINDOW / RATE
        if prob >= OFFSET_PROB:
            if prob >= ONSET_PROB:
                turn.speech_windows += 1
            self._silence = 0
            self._cut_sent = False
            turn.spec = None  # the user went on: the early transcription is not the last word
            turn.timings.speech_end = time.monotonic()
        else:
            self._silence += 1
            if (
                self._silence == SPECULATE_WINDOWS
                and not self._cut_sent
                and not self._ptt
                and turn.spec is None
                and turn.speech_windows >= MIN_SPEECH_WINDOWS
                and self._stt_pending == 0
            ):
                turn.spec = (self._submit(np.concatenate(turn.audio)), len(turn.audio))
                log.debug("early transcription started after %d silent windows", self._silence)
        silence_ms = self._silence * WINDOW * 1000 / RATE
        if self._ptt:
            if turn.total_s >= MAX_CHUNK_S and self._silence == 0:
                self._cut_chunk(turn)
            return
        if silence_ms >= CHUNK_PAUSE_MS and not self._cut_sent:
            self._cut_sent = True
            self._cut_chunk(turn)
        elif self._silence == 0 and sum(len(a) for a in turn.audio) >= MAX_CHUNK_S * RATE:
            self._cut_chunk(turn)
        self._maybe_end(turn, silence_ms)

    def _maybe_end(self, turn: _Turn, silence_ms: float) -> None:
        if turn.ended or self._silence == 0:
            return
        patience = self.settings.patience_ms
        if silence_ms >= patience or turn.total_s >= MAX_TURN_S:
            self._end_turn(turn)
            return
        if silence_ms >= min(QUICK_END_MS, patience) and turn.chunks and all(f.done() for f in turn.chunks):
            words = self._joined(turn)
            if len(words.split()) >= QUICK_END_MIN_WORDS and _SENTENCE_END.search(words):
                self._end_turn(turn)

    def _begin_turn(self, onset_windows: int) -> None:
        log.debug(
            "speech onset (%s; echo %s: %s)",
            self._state.value,
            "absent" if self._echo_path.absent() else "possible",
            self._echo_path,
        )
        carried: list[Future[str]] = []
        carried_s = 0.0
        with self._lock:
            previous = self._answering
            if previous is not None and not previous.spans:
                # The user went on speaking before a word of the answer was played (a pause between
                # sentences): what they said so far opens this turn instead of being answered on
                # its own, and an answer already begun is taken back.
                previous.carried_on = True
                previous.withdrawn = previous.responding
                carried = previous.carried + previous.chunks
                carried_s = previous.total_s
            if self._state in (VoiceState.THINKING, VoiceState.SPEAKING):
                self._barge_in()
        self._turn_count += 1
        turn = _Turn(self._turn_count, carried=carried, total_s=carried_s)
        now = time.monotonic()
        turn.timings.speech_start = now - onset_windows * WINDOW / RATE
        turn.timings.speech_end = now
        turn.audio = list(self._ring)
        turn.speech_windows = onset_windows
        self._ring.clear()
        self._silence = 0
        self._cut_sent = False
        self._turn = turn
        self._set_state(VoiceState.HEARING)
        if self._answering is None:
            # While the user speaks, the model can already read the conversation so far.
            threading.Thread(target=self.turns.prepare, name="hearth-voice-prefill", daemon=True).start()

    def _submit(self, samples: Samples) -> Future[str]:
        language = None if self.settings.language == "auto" else self.settings.language
        with self._lock:
            self._stt_pending += 1
        future: Future[str] = self._stt_pool.submit(self._transcribe, samples, language)

        def finished(_f: Future[str]) -> None:
            with self._lock:
                self._stt_pending -= 1

        future.add_done_callback(finished)
        return future

    def _cut_chunk(self, turn: _Turn) -> None:
        """Commit the speech since the last cut as one piece (the early transcription, if one covers it)."""
        spec, turn.spec = turn.spec, None
        if spec is not None:
            future, covered = spec
            turn.audio = turn.audio[covered:]  # only silence came after
            turn.speech_windows = 0
        else:
            audio, speech = turn.audio, turn.speech_windows
            turn.audio, turn.speech_windows = [], 0
            if not audio or speech < MIN_SPEECH_WINDOWS:
                return
            future = self._submit(np.concatenate(audio))
        index = len(turn.chunks)
        turn.chunks.append(future)

        def done(f: Future[str]) -> None:
            if not f.cancelled() and f.exception() is None:
                turn.texts[index] = f.result()
                if not turn.ended:
                    self._emit(Partial(self._joined(turn)))
                    # A finished sentence may end the turn early: re-check on the frames thread.
                    self._control.put(lambda: self._recheck(turn))

        future.add_done_callback(done)

    def _recheck(self, turn: _Turn) -> None:
        if self._turn is turn:
            self._maybe_end(turn, self._silence * WINDOW * 1000 / RATE)

    def _transcribe(self, samples: Samples, language: str | None) -> str:
        started = time.monotonic()
        result = self.stt.transcribe(samples, language)
        text = str(getattr(result, "text", "")).strip()
        log.debug("transcribed %.2f s of audio in %.3f s: %r", len(samples) / RATE, time.monotonic() - started, text)
        return text

    @staticmethod
    def _joined(turn: _Turn) -> str:
        return " ".join(turn.texts[i] for i in sorted(turn.texts) if turn.texts[i]).strip()

    def _end_turn(self, turn: _Turn) -> None:
        log.debug("turn ends after %d silent windows", self._silence)
        turn.ended = True
        turn.timings.endpoint = time.monotonic()
        self._cut_chunk(turn)
        self._turn = None
        self._run_len = 0
        with self._lock:
            self._answering = turn
        self._set_state(VoiceState.THINKING)
        earlier = [t for t in self._replies if t.is_alive()]
        thread = threading.Thread(target=self._answer, args=(turn, earlier), name="hearth-voice-reply", daemon=True)
        self._replies = [*earlier, thread]
        thread.start()

    def _on_push(self, pressed: bool) -> None:
        if pressed and not self._ptt:
            self._ptt = True
            if self._turn is None:
                self._begin_turn(onset_windows=0)
        elif not pressed and self._ptt:
            self._ptt = False
            turn = self._turn
            if turn is not None:
                turn.timings.speech_end = time.monotonic()
                self._end_turn(turn)

    def _barge_in(self, by: str = "speech") -> None:
        """The user spoke over the reply (or pressed stop): silence now, cancel, keep what was heard."""
        with self._lock:
            turn = self._answering
            if turn is None:
                return
            self._answering = None
        played = self.speaker.played_samples
        self.speaker.stop()
        heard = _heard_text(turn.spans, played)
        turn.heard_cut = heard
        turn.cut_by = by
        turn.cancel.set()
        self._emit(BargedIn(heard, by))
        if self._turn is None:
            self._set_state(VoiceState.LISTENING)

    # -- the reply thread --------------------------------------------------------------

    def _answer(self, turn: _Turn, earlier: list[threading.Thread]) -> None:
        try:
            for thread in earlier:  # an answer cut or taken back is wound up before the next one begins
                thread.join()
            text = self._final_text(turn)
            with self._lock:
                if turn.cancel.is_set():
                    return
                turn.responding = True
            if not text:
                self._emit(NothingHeard("Only silence or noise was heard."))
                return
            turn.timings.transcribed = time.monotonic()
            self._emit(Heard(text, turn.timings))
            self._reply(turn, text)
        except HearthError as exc:
            self._emit(Problem(exc))
        except Exception as exc:
            log.exception("voice turn failed")
            self._emit(Problem(HearthError(f"The voice turn failed: {exc}", "Try again, or type your message.")))
        finally:
            self._finish(turn)

    def _final_text(self, turn: _Turn) -> str:
        started = time.monotonic()
        earlier: list[str] = []
        for future in [*turn.carried, *turn.chunks]:
            try:
                text = future.result()
            except Exception as exc:
                raise HearthError(
                    f"Speech recognition failed: {exc}",
                    "Try again; if it keeps failing, pick another speech model in Settings › Voice.",
                ) from exc
            if future in turn.carried and text:
                earlier.append(text)
        turn.timings.stt_s = time.monotonic() - started
        return " ".join([*earlier, self._joined(turn)]).strip()

    def _reply(self, turn: _Turn, text: str) -> None:
        splitter = self._sentences()
        audio_q: queue.Queue[str | None] = queue.Queue()
        speak = self.settings.speak_replies and self.voice is not None
        speaker_thread = None
        if speak:
            speaker_thread = threading.Thread(
                target=self._speak, args=(turn, audio_q), name="hearth-voice-tts", daemon=True
            )
            speaker_thread.start()
        meta: dict[str, object] = {"voice": {"audio_s": round(turn.total_s, 2), "stt_s": round(turn.timings.stt_s, 3)}}
        try:
            for delta in self.turns.respond(text, turn.cancel, meta):
                if not turn.timings.first_token:
                    turn.timings.first_token = time.monotonic()
                for sentence in splitter.feed(delta):
                    first = not turn.timings.first_sentence
                    self._queue_sentence(turn, audio_q, sentence)
                    if first and speak:
                        # The model writes far faster than speech: hold it until the first words
                        # sound, so synthesis has the processor to itself on the critical path.
                        turn.first_audio_ready.wait(FIRST_AUDIO_WAIT_S)
            if not turn.cancel.is_set():
                for sentence in splitter.flush():
                    self._queue_sentence(turn, audio_q, sentence)
        finally:
            audio_q.put(None)
            if speaker_thread is not None:
                speaker_thread.join()

    def _queue_sentence(self, turn: _Turn, audio_q: queue.Queue[str | None], sentence: str) -> None:
        if not turn.timings.first_sentence:
            turn.timings.first_sentence = time.monotonic()
        audio_q.put(sentence)

    def _speak(self, turn: _Turn, audio_q: queue.Queue[str | None]) -> None:
        assert self.voice is not None
        number = -1
        while (sentence := audio_q.get()) is not None:
            number += 1
            if turn.cancel.is_set():
                continue
            try:
                for chunk in self.voice.synthesize_16k(sentence):  # type: ignore[attr-defined]
                    if turn.cancel.is_set():
                        break
                    if not turn.spans:
                        chunk = _trim_lead_in(chunk)
                    with self._lock:
                        if self._answering is not turn:
                            break
                        start = self.speaker.played_samples + self.speaker.pending_samples
                        self.speaker.play(chunk)
                        turn.spans.append(_Span(number, sentence, start, len(chunk)))
                    if not turn.timings.first_audio:
                        turn.timings.first_audio = time.monotonic()
                        turn.first_audio_ready.set()
                        self._set_state(VoiceState.SPEAKING, turn)
                turn.first_audio_ready.set()  # also when a sentence had nothing to say aloud
                self._emit(Speaking(sentence))
            except HearthError as exc:
                turn.first_audio_ready.set()
                self._emit(Problem(exc))
            except Exception as exc:
                turn.first_audio_ready.set()
                log.exception("speech synthesis failed")
                self._emit(
                    Problem(HearthError(f"Speech synthesis failed: {exc}", "Check the voice in Settings › Voice."))
                )

    def _finish(self, turn: _Turn) -> None:
        # Wait for the last sentence to finish playing before listening again.
        while not turn.cancel.is_set() and self.speaker.pending_samples > 0 and self._thread is not None:
            time.sleep(0.02)
        with self._lock:
            current = self._answering is turn
            if current:
                self._answering = None
        interrupted = turn.heard_cut is not None and turn.responding
        try:
            if turn.withdrawn and self.turns.withdraw():
                interrupted = False
            elif interrupted:
                self.turns.cut(turn.heard_cut or "", turn.cut_by)
        except HearthError as exc:
            self._emit(Problem(exc))
        self._emit(TurnDone(turn.timings, interrupted=interrupted, carried_on=turn.carried_on))
        if current and self._thread is not None and self._turn is None:
            self._set_state(VoiceState.LISTENING)

    # -- state -----------------------------------------------------------------------

    def _set_state(self, state: VoiceState, turn: _Turn | None = None) -> None:
        with self._lock:
            if turn is not None and self._answering is not turn:
                return
            if state == self._state:
                return
            self._state = state
        self._emit(StateChanged(state))


def _through_echo(prob: float, cleaned: Samples, raw: Samples) -> float:
    """The speech probability of a window of the canceller's output, allowing for double talk."""
    if prob >= ONSET_PROB or prob < FAINT_PROB_OVER_ECHO:
        return prob
    level = rms_db(cleaned)
    if level >= VOICE_FLOOR_DB and rms_db(raw) - level <= NOT_ECHO_DB:
        return ONSET_PROB
    return prob


def _trim_lead_in(chunk: Samples, threshold: float = 0.003, keep_s: float = 0.02) -> Samples:
    """The first chunk of a reply without the synthesiser's lead-in silence (keeping a few ms)."""
    loud = np.nonzero(np.abs(chunk) > threshold)[0]
    if len(loud) == 0:
        return chunk
    return chunk[max(0, int(loud[0]) - int(keep_s * RATE)) :]


def _heard_text(spans: list[_Span], played: int) -> str:
    """The words of the reply that reached the speaker before `played` samples."""
    words: list[str] = []
    by_sentence: dict[int, list[_Span]] = {}
    for span in spans:
        by_sentence.setdefault(span.sentence, []).append(span)
    for number in sorted(by_sentence):
        parts = by_sentence[number]
        total = sum(p.length for p in parts)
        done = sum(max(0, min(p.length, played - p.start)) for p in parts)
        if done <= 0:
            break
        sentence_words = parts[0].text.split()
        if done >= total:
            words.extend(sentence_words)
            continue
        words.extend(sentence_words[: int(len(sentence_words) * done / total)])
        break
    return " ".join(words)
