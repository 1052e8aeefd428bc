"""The voice loop end to end: real speech in, the real chat model, real speech out.

Questions are spoken by Piper and espeak-ng with leading silence and played into the loop as a
microphone would deliver them; the reply is "played" into a recording speaker, which is then
transcribed again. Echo: the speaker's output is mixed back into the microphone (`echo=True`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.core.store import Store
from app.core.turn import ChatSession
from app.engines.llama_cpp_engine import LlamaCppEngine
from app.settings import GenerationSettings, Settings, VoiceSettings
from app.voice.audio import RATE, FileInput, RecordingOutput, ReferenceTap
from app.voice.loop import (
    BargedIn,
    Heard,
    Level,
    NothingHeard,
    StateChanged,
    TurnDone,
    VoiceEvent,
    VoiceLoop,
    VoiceState,
)
from app.voice.replay import EchoRoom, VoiceModels, run_recorded_turn
from app.voice.turns import SessionTurns, Withdrawn, cut_to_heard
from app.voice.utterances import espeak_available, espeak_utterance, piper_utterances, speech_bounds
from app.voice.wer import word_error_rate
from tests.conftest import require

pytestmark = pytest.mark.voice

SETTINGS = Settings(generation=GenerationSettings(temperature=0.0, seed=7, max_tokens=40))


@pytest.fixture(scope="module")
def engine(smollm2_path: Path) -> Iterator[LlamaCppEngine]:
    engine = LlamaCppEngine(smollm2_path, model_id="smollm2-135m-instruct", n_ctx=2048, n_threads=2)
    yield engine
    engine.close()


@pytest.fixture
def session(engine: LlamaCppEngine, tmp_path: Path) -> Iterator[ChatSession]:
    store = Store.open(tmp_path / "voice.sqlite3")
    yield ChatSession(store, engine, SETTINGS)
    store.close()


@pytest.fixture(scope="module")
def models(transcriber: object, voice: object) -> VoiceModels:
    return VoiceModels(transcriber, voice)


def _words(text: str) -> list[str]:
    return [w.strip(".,!?;:'\"").lower() for w in text.split() if w.strip(".,!?;:'\"")]


def test_a_spoken_question_is_heard_answered_aloud_and_stored(session: ChatSession, models: VoiceModels) -> None:
    question = piper_utterances(models.voice, ["What is the capital of France?"])[0]
    report = run_recorded_turn(session, models, question.samples, SETTINGS.voice, echo=True)

    assert word_error_rate(question.text, report.heard) == 0.0, report.heard
    assert report.problems == []
    assert report.states[:4] == ["listening", "hearing", "thinking", "speaking"]
    assert report.round_trip_s is not None and report.round_trip_s > 0
    messages = session.store.messages(report.conversation_id or 0)
    user, reply = messages[0], messages[-1]
    assert (user.role, user.content, user.meta.get("spoken")) == ("user", report.heard, True)
    assert reply.role == "assistant" and reply.status == "complete" and reply.content.strip()
    # What came out of the speaker is the stored reply, spoken: its first words come back from STT.
    spoken = models.stt.transcribe(report.output[int(0.2 * RATE) :]).text
    first = _words(spoken)[:3]
    assert first and " ".join(first) in " ".join(_words(reply.content)), (spoken, reply.content)
    assert {"endpoint", "transcribed", "first_token", "first_sentence", "first_audible"} <= set(report.stages)


def test_espeak_speech_is_understood(session: ChatSession, models: VoiceModels) -> None:
    require(espeak_available(), "espeak-ng is not installed (apt-get install espeak-ng)")
    question = espeak_utterance("Please tell me a joke about cats.")
    report = run_recorded_turn(session, models, question.samples, SETTINGS.voice, fast_reply=True)
    assert word_error_rate(question.text, report.heard) <= 0.34, report.heard
    assert report.reply.strip()


def test_speaking_over_the_reply_stops_it_and_keeps_what_was_heard(session: ChatSession, models: VoiceModels) -> None:
    long_answer = Settings(generation=GenerationSettings(temperature=0.0, seed=7, max_tokens=200))
    session.settings = long_answer
    # Words said while Hearth is still talking reach the detector through the echo canceller, which
    # damps them while both voices overlap (double talk): the first word or two of an interruption
    # may be lost. What follows once playback has stopped must be heard.
    question, interruption = piper_utterances(
        models.voice, ["Tell me a long story about a dragon.", "Stop please, that is quite enough for now, thank you."]
    )
    report = run_recorded_turn(
        session,
        models,
        question.samples,
        long_answer.voice,
        echo=True,
        interrupt_with=interruption.samples[int(0.4 * RATE) :],
    )
    assert report.barge_in_s is not None, report.states
    messages = session.store.messages(report.conversation_id or 0)
    cut = next(m for m in messages if m.role == "assistant")
    assert cut.status == "interrupted" and cut.meta["barge_in"] is True and cut.meta["stopped_by"] == "speech"
    assert cut.meta["unheard"], "the reply was cut, so some of it was never heard"
    assert len(cut.content) < len(cut.content + cut.meta["unheard"])
    heard_words = _words(cut.meta["heard"])
    assert _words(cut.content)[: len(heard_words)] == heard_words
    # The interruption itself is the next thing the user said, its words after the overlap intact.
    later_user = [m for m in messages if m.role == "user"][1:]
    assert later_user, (report.problems, report.states)
    heard = _words(later_user[0].content)
    assert {"enough", "now", "thank", "you"} <= set(heard), later_user[0].content
    assert word_error_rate(interruption.text, later_user[0].content) <= 0.6, later_user[0].content


def test_it_does_not_hear_itself(session: ChatSession, models: VoiceModels) -> None:
    question = piper_utterances(models.voice, ["Describe a sunny beach in a few sentences."])[0]
    settings = Settings(generation=GenerationSettings(temperature=0.0, seed=3, max_tokens=80))
    session.settings = settings
    report = run_recorded_turn(session, models, question.samples, settings.voice, echo=True)
    messages = session.store.messages(report.conversation_id or 0)
    users = [m for m in messages if m.role == "user"]
    assert [m.content for m in users] == [report.heard], "the loop transcribed its own voice"
    assert messages[-1].status == "complete"
    assert len(report.output) / RATE > 2.0, "the reply was spoken, with its echo in the microphone"


def test_silence_and_a_cough_start_no_turn(session: ChatSession, models: VoiceModels) -> None:
    rng = np.random.default_rng(1)
    quiet = (rng.standard_normal(3 * RATE) * 0.002).astype(np.float32)
    click = np.zeros(RATE, np.float32)
    click[RATE // 2 : RATE // 2 + 400] = 0.8 * np.sign(rng.standard_normal(400))
    report = run_recorded_turn(session, models, np.concatenate([quiet, click, quiet]), SETTINGS.voice)
    assert report.heard == "" and report.conversation_id is None
    assert report.problems
    assert session.store.list_conversations() == []


class _Events:
    def __init__(self) -> None:
        self.items: list[VoiceEvent] = []
        self.turn_done = threading.Event()

    def __call__(self, event: VoiceEvent) -> None:
        self.items.append(event)
        # A turn carried on (the user spoke again before its answer began) is not done: its words
        # open the next one.
        if isinstance(event, NothingHeard) or (isinstance(event, TurnDone) and not event.carried_on):
            self.turn_done.set()


class _CountingTranscriber:
    """The real transcriber, noting how much audio each call was given."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.lengths_s: list[float] = []

    def transcribe(self, audio: np.ndarray, language: str | None = None) -> Any:
        self.lengths_s.append(len(audio) / RATE)
        return self.inner.transcribe(audio, language)


def test_a_long_monologue_is_transcribed_in_pieces_while_it_is_spoken(
    session: ChatSession, models: VoiceModels
) -> None:
    sentences = [
        "I want to tell you about my weekend.",
        "On Saturday morning we walked along the river and watched the boats.",
        "In the afternoon my sister baked bread and we ate it with soup.",
        "On Sunday it rained all day so we played cards and read books.",
    ] * 3
    pieces = piper_utterances(models.voice, sentences)
    gap = np.zeros(int(0.3 * RATE), np.float32)
    monologue = np.concatenate([np.concatenate([u.samples[int(0.5 * RATE) :], gap]) for u in pieces])
    assert len(monologue) / RATE > 35
    events = _Events()
    settings = VoiceSettings(speak_replies=False)
    mic = FileInput(np.concatenate([np.zeros(RATE // 2, np.float32), monologue]), realtime=False, tail_s=2.0)
    speaker = RecordingOutput(realtime=False)
    stt = _CountingTranscriber(models.stt)
    loop = VoiceLoop(mic, speaker, stt, None, SessionTurns(session, lambda: None), settings, events)
    speaker.start()
    loop.start()
    try:
        assert events.turn_done.wait(120)
    finally:
        loop.close()
        speaker.close()
    heard = next(e.text for e in events.items if isinstance(e, Heard))
    assert len(stt.lengths_s) >= 4, "the monologue was transcribed piece by piece, at the speaker's pauses"
    assert max(stt.lengths_s) <= 25.5, "no piece is longer than Whisper's window"
    # tiny.en mishears the same few words in every repetition ("with soup" → "with suit", "it
    # rained" → "at rain all"), about 0.1 of them; pieces cut badly would lose whole sentences.
    assert word_error_rate(" ".join(sentences), heard) <= 0.15, heard


def test_push_to_talk_makes_one_turn_from_press_to_release(session: ChatSession, models: VoiceModels) -> None:
    question = piper_utterances(models.voice, ["What is the capital of France?"])[0]
    events = _Events()
    settings = VoiceSettings(mode="push-to-talk", speak_replies=False)
    mic = FileInput(question.samples, realtime=True, tail_s=30.0)
    speaker = RecordingOutput()
    loop = VoiceLoop(mic, speaker, models.stt, models.voice, SessionTurns(session, lambda: None), settings, events)
    speaker.start()
    loop.start()
    try:
        # Hands-free detection is off: speech alone starts nothing.
        assert not events.turn_done.wait(len(question.samples) / RATE + 1.0)
        assert loop.state == VoiceState.LISTENING
        mic.splice(mic.delivered + RATE // 10, question.samples)
        loop.push_to_talk(True)
        threading.Event().wait(len(question.samples) / RATE + 0.3)
        loop.push_to_talk(False)
        assert events.turn_done.wait(60)
    finally:
        loop.close()
        speaker.close()
    heard = next(e.text for e in events.items if isinstance(e, Heard))
    assert word_error_rate(question.text, heard) <= 0.2, heard
    assert not any(isinstance(e, (BargedIn, NothingHeard)) for e in events.items)


class _LateTranscriber:
    """The real transcriber, held back until `release_at` (clock time): the turn's answer cannot begin before then."""

    def __init__(self, inner: Any, release_at: float) -> None:
        self.inner, self.release_at = inner, release_at

    def transcribe(self, audio: np.ndarray, language: str | None = None) -> Any:
        threading.Event().wait(max(0.0, self.release_at - time.monotonic()))
        return self.inner.transcribe(audio, language)


def _one_answered_turn_after_one_carried_on(
    mic: FileInput, stt: Any, voice: Any, turns: SessionTurns, settings: VoiceSettings
) -> list[VoiceEvent]:
    """Run the loop on `mic` until a turn is answered; the first turn must have been carried on
    into it (neither cut nor answered on its own). Returns the loop's events."""
    events = _Events()
    speaker = RecordingOutput()
    loop = VoiceLoop(mic, speaker, stt, voice, turns, settings, events)
    speaker.start()
    loop.start()
    try:
        assert events.turn_done.wait(60), [type(e).__name__ for e in events.items]
    finally:
        loop.close()
        speaker.close()
    done = [e for e in events.items if isinstance(e, TurnDone)]
    assert [e.carried_on for e in done] == [True, False], "the pause ended a turn, and speaking again carried it on"
    assert not any(e.interrupted for e in done)
    return events.items


class _LateVoice:
    """The real voice, silent until `release_at` (clock time): no word of an answer is played before then."""

    def __init__(self, inner: Any, release_at: float) -> None:
        self.inner, self.release_at = inner, release_at

    def synthesize_16k(self, text: str) -> Iterator[np.ndarray]:
        threading.Event().wait(max(0.0, self.release_at - time.monotonic()))
        yield from self.inner.synthesize_16k(text)


def test_speaking_on_after_the_answer_began_but_before_it_was_heard_makes_one_turn(
    session: ChatSession, models: VoiceModels
) -> None:
    """The pause ends the turn and the answer begins (the question is stored, the model writes),
    but the user goes on before a word of it is played: message and answer are taken back, and
    everything the user said is answered as one message."""
    first, rest = piper_utterances(models.voice, ["What is the capital of France?", "Tell me in one sentence."])
    # Far longer than the patience below: the turn ends, and its answer begins well before the rest.
    pause = np.zeros(int(1.4 * RATE), np.float32)
    recording = np.concatenate([first.samples, pause, rest.samples[int(0.3 * RATE) :]])
    mic = FileInput(recording, realtime=True, tail_s=30.0)
    voice = _LateVoice(models.voice, time.monotonic() + len(recording) / RATE + 0.2)
    observed: list[object] = []
    turns = SessionTurns(session, lambda: None, observed.append)
    events = _one_answered_turn_after_one_carried_on(mic, models.stt, voice, turns, VoiceSettings(patience_ms=400))
    heard = [e.text for e in events if isinstance(e, Heard)]
    assert len(heard) == 2 and word_error_rate(first.text, heard[0]) <= 0.2, heard
    assert word_error_rate(f"{first.text} {rest.text}", heard[1]) <= 0.2, heard
    withdrawn = [item for item in observed if isinstance(item, Withdrawn)]
    assert len(withdrawn) == 1, "the first answer was begun, then taken back"
    messages = session.store.messages(withdrawn[0].conversation_id)
    assert [m.role for m in messages] == ["user", "assistant"], [(m.role, m.content) for m in messages]
    assert messages[0].content == heard[1] and messages[1].status == "complete"


def test_a_spoken_turn_is_taken_back_only_while_it_is_the_last_thing_said(session: ChatSession) -> None:
    observed: list[object] = []
    turns = SessionTurns(session, lambda: None, observed.append)
    assert turns.withdraw() is False, "nothing was said yet"
    assert "".join(turns.respond("Say hello.", threading.Event()))
    conversation = turns.conversation_id
    assert conversation is not None
    assert turns.withdraw() is True
    assert session.store.messages(conversation) == [] and observed[-1] == Withdrawn(conversation, 1)
    assert turns.withdraw() is False, "taken back once"

    assert "".join(turns.respond("Say hello again.", threading.Event()))
    typed = session.store.add_message(conversation, "user", "A typed message meanwhile.")
    assert turns.withdraw() is False, "something was written after it"
    assert [m.role for m in session.store.messages(conversation)] == ["user", "assistant", "user"]
    assert session.store.messages(conversation)[-1].id == typed.id


def test_speaking_on_before_the_answer_begins_makes_one_turn(session: ChatSession, models: VoiceModels) -> None:
    first, rest = piper_utterances(models.voice, ["Wait.", "What is the capital of France?"])
    pause = np.zeros(int(0.9 * RATE), np.float32)  # longer than the patience below: the turn ends
    recording = np.concatenate([first.samples, pause, rest.samples[int(0.3 * RATE) :]])
    settings = VoiceSettings(speak_replies=False, patience_ms=400)
    mic = FileInput(recording, realtime=True, tail_s=30.0)
    # Recognition finishes only once all of it was said, so the first turn is still unanswered when speech resumes.
    stt = _LateTranscriber(models.stt, time.monotonic() + len(recording) / RATE + 0.2)
    events = _one_answered_turn_after_one_carried_on(mic, stt, None, SessionTurns(session, lambda: None), settings)
    heard = [e.text for e in events if isinstance(e, Heard)]
    assert len(heard) == 1 and word_error_rate("Wait. " + rest.text, heard[0]) <= 0.2, heard
    conversation = session.store.list_conversations()[0]
    users = [m.content for m in session.store.messages(conversation.id) if m.role == "user"]
    assert users == heard, "one user message with all the words, nothing lost and nothing twice"


@pytest.mark.parametrize(
    ("reply", "heard", "kept"),
    [
        ("Hello **world**. Second sentence here.", "Hello world", "Hello **world**."),
        ("Use `pip install` then run it.", "Use pip install", "Use `pip install`"),
        ("One. Two. Three.", "", ""),
        (
            "Visit [the site](https://example.com) today.",
            "Visit the site today",
            "Visit [the site](https://example.com) today.",
        ),
    ],
)
def test_a_cut_reply_keeps_the_words_that_were_heard(reply: str, heard: str, kept: str) -> None:
    assert cut_to_heard(reply, heard) == kept


def test_speech_bounds_find_the_spoken_part() -> None:
    samples = np.zeros(RATE * 2, np.float32)
    samples[RATE // 2 : RATE] = 0.3
    start, end = speech_bounds(samples)
    assert abs(start - RATE // 2) <= 160 and abs(end - RATE) <= 160


def _frames(signal: np.ndarray) -> list[np.ndarray]:
    return [signal[i : i + 160] for i in range(0, len(signal) - 159, 160)]


def _syllables(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Noise in bursts of 80–250 ms with 30–150 ms gaps: the rhythm of speech, for the echo path."""
    out = np.zeros(int(seconds * RATE), np.float32)
    at = 0
    while at < len(out):
        burst = int(rng.uniform(0.08, 0.25) * RATE)
        out[at : at + burst] = rng.standard_normal(len(out[at : at + burst])) * rng.uniform(0.03, 0.2)
        at += burst + int(rng.uniform(0.03, 0.15) * RATE)
    return out


def _verdicts(echo_path: object, mic: np.ndarray, played: np.ndarray) -> list[bool]:
    from app.voice.vad import EchoPath

    assert isinstance(echo_path, EchoPath)
    verdicts = []
    for m, r in zip(_frames(mic), _frames(played), strict=True):
        echo_path.note(m, r)
        verdicts.append(echo_path.absent())
    return verdicts


def _delayed(signal: np.ndarray, seconds: float) -> np.ndarray:
    return np.concatenate([np.zeros(int(seconds * RATE), np.float32), signal])[: len(signal)]


def test_the_echo_path_is_judged_from_what_the_microphone_hears_of_the_speaker() -> None:
    from app.voice.vad import EchoPath

    rng = np.random.default_rng(5)
    played = _syllables(4.0, rng)
    ms = 100  # verdicts per second

    speakers = EchoPath()
    assert not any(_verdicts(speakers, 0.5 * _delayed(played, 0.15), played)), "laptop speakers"

    # A slow device (Bluetooth, USB): the echo arrives 400 ms after the sound was sent.
    assert not any(_verdicts(EchoPath(), 0.3 * _delayed(played, 0.4), played)), "a late echo taken for headphones"

    # A device that falls behind mid-reply (an underrun): the echo comes 120 ms, then 330 ms, late.
    jump = 2 * RATE
    echo = np.concatenate([_delayed(played, 0.12)[:jump], _delayed(played, 0.33)[jump:]])
    assert not any(_verdicts(EchoPath(), 0.5 * echo, played)), "an echo whose delay changed was lost"

    # Quiet speakers: the microphone hears the reply 20 dB down. Still an echo.
    assert not any(_verdicts(EchoPath(), 0.1 * _delayed(played, 0.2), played)), "quiet speakers"

    headphones = EchoPath()
    verdicts = _verdicts(headphones, np.zeros_like(played), played)
    assert not any(verdicts[: int(0.45 * ms)]), "no verdict before the echo of a slow device could arrive"
    assert all(verdicts[int(0.75 * ms) :]), "headphones: known within a breath of playback"

    # The user talking over a reply (headphones) from half a second in: the verdict comes before their
    # words, and their words do not make an echo appear.
    user = _delayed(_syllables(3.0, rng), 0.55)[: len(played)]
    user = np.concatenate([user, np.zeros(len(played) - len(user), np.float32)])
    verdicts = _verdicts(EchoPath(), user, played)
    assert all(verdicts[int(0.6 * ms) :]), "the user's words over a reply were taken for an echo"

    # Once the speaker has been quiet longer than any echo, nothing of it can be in the microphone,
    # and the next reply is judged afresh.
    quiet = int(0.7 * RATE)
    assert _verdicts(speakers, 0.5 * _delayed(played, 0.15)[:quiet], np.zeros(quiet, np.float32))[-1]
    silence = np.zeros(quiet, np.float32)
    assert _verdicts(headphones, silence, silence)[-1]
    assert not any(_verdicts(headphones, 0.5 * _delayed(played, 0.15), played)), "headphones taken off"


class LateTap(ReferenceTap):
    """A reference whose writer stops getting the processor for `stall_s`, `after_s` into playback,
    then hands over everything it owed at once: as an audio thread does on a busy machine while
    the device keeps playing what it was given earlier."""

    def __init__(self, after_s: float, stall_s: float) -> None:
        super().__init__()
        self._after, self._stall = after_s, stall_s
        self._first_loud: float | None = None
        self._held: list[np.ndarray] = []

    def push(self, samples: np.ndarray) -> None:
        now = time.monotonic()
        if self._first_loud is None and np.abs(samples).max() > 0.01:
            self._first_loud = now
        stalled = self._first_loud is not None and self._after <= now - self._first_loud < self._after + self._stall
        self._held.append(samples)
        if not stalled:
            for held in self._held:
                super().push(held)
            self._held.clear()


def test_a_late_speaker_writer_does_not_put_the_reference_behind_its_echo(models: VoiceModels) -> None:
    """A reply plays on laptop speakers (its echo in the microphone, 120 ms later) while the
    speaker's writer stalls for 150 ms. The loop waits for the reference it owes rather than
    inventing silence, so echo cancellation stays locked on: the microphone, cleaned, stays quiet
    and Hearth's own voice never starts a turn."""
    reply = piper_utterances(
        models.voice, ["The moon is bright tonight, and the sea is calm. Sleep well, and dream of tides."]
    )[0]
    speaker = RecordingOutput(loud=0.01, reference=LateTap(after_s=1.5, stall_s=0.15))
    mic = EchoRoom(FileInput(np.zeros(7 * RATE, np.float32), tail_s=0.0, name="quiet room"), speaker)
    states: list[str] = []
    levels: list[tuple[float, float]] = []
    listening, heard_out = threading.Event(), threading.Event()
    until = [float("inf")]  # when the reply and its echo's tail have been through the loop

    def on_event(event: VoiceEvent) -> None:
        if isinstance(event, StateChanged):
            states.append(event.state.value)
            if event.state == VoiceState.LISTENING:
                listening.set()
        elif isinstance(event, Level):
            levels.append((time.monotonic(), event.db))
            if levels[-1][0] >= until[0]:
                heard_out.set()

    loop = VoiceLoop(mic, speaker, models.stt, None, _NoTurns(), VoiceSettings(), on_event)
    speaker.start()
    loop.start()
    try:
        assert listening.wait(5)
        started = time.monotonic()
        until[0] = started + len(reply.samples) / RATE + 0.5
        speaker.play(reply.samples)
        assert heard_out.wait(len(reply.samples) / RATE + 10)
    finally:
        loop.close()
        speaker.close()
    assert "hearing" not in states, f"Hearth took its own voice for the user: {states}"
    settled = [db for at, db in levels if started + 1.0 <= at <= started + len(reply.samples) / RATE]
    assert settled and max(settled) < -45, f"the echo came through after the stall: {[round(db) for db in settled]}"


class _NoTurns:
    """A conversation that must never be reached: these tests expect no turn at all."""

    def prepare(self) -> None:
        raise AssertionError("a turn began")

    def respond(self, text: str, cancel: threading.Event, meta: dict[str, object] | None = None) -> Iterator[str]:
        raise AssertionError(f"a turn was answered: {text!r}")

    def cut(self, heard: str, by: str = "speech") -> None:
        raise AssertionError("a reply was cut")

    def withdraw(self) -> bool:
        raise AssertionError("a turn was taken back")


def test_double_talk_that_the_canceller_passes_counts_as_speech() -> None:
    """While Hearth talks, a window the detector is half sure of counts as the user's speech
    when the echo canceller took little off it and it is as loud as a voice; echo the canceller
    removed, or a faint sound, does not."""
    from app.voice.loop import ONSET_PROB, _through_echo

    rng = np.random.default_rng(9)

    def at(db: float) -> np.ndarray:
        return (rng.standard_normal(512) * 10 ** (db / 20)).astype(np.float32)

    user_over_echo = _through_echo(0.3, at(-25), at(-20))
    echo_removed = _through_echo(0.3, at(-85), at(-20))
    faint = _through_echo(0.3, at(-60), at(-58))
    unsure = _through_echo(0.1, at(-25), at(-20))
    assert user_over_echo == ONSET_PROB
    assert (echo_removed, faint, unsure) == (0.3, 0.3, 0.1)
    assert _through_echo(0.9, at(-85), at(-20)) == 0.9
