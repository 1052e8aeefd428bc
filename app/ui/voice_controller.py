"""Voice in the window: the hands-free `VoiceLoop` between the microphone, the speaker and the
conversation on screen.

Turning voice on loads, on the Runner's ``io`` lane, the speech recognition model (fetched and
checked through the model library, then warmed up), the Piper voice, the voice detector and echo
canceller (the loop builds those), and opens the devices; the panel says "Loading voice…"
meanwhile. The speech models stay loaded for the rest of the session, so turning voice off and on
again only reopens the devices.

The loop reports from its own threads. Every report — its events, the spoken user message and the
reply's `TurnEvent`s from `SessionTurns`, a device failure — crosses to the GUI thread through one
queued signal, in order. Spoken turns land in the conversation that is open (a new one when none
is), and their reply is shown by `ChatController.show_turn_event`, exactly as a typed reply is.

Typed and spoken turns never run the engine at once: spoken turns hold the chat controller's
`engine_lock` while they stream, as typed turns do. A typed send (or regenerate, or edit) while a
spoken reply is being written or read aloud interrupts it first and goes ahead once it has settled,
so the two replies never interleave on screen.

A problem — a device lost, a model that cannot load, a turn that fails — is shown with its hint
and voice turns off; the conversation keeps everything said so far.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal

from app.core.conversation import Message
from app.core.thumbnails import Thumbnails
from app.core.turn import ChatSession, ContextTrimmed, ReplyFinished, ReplyStarted, TextDelta
from app.errors import HearthError, ModelError
from app.runtime import Profile
from app.settings import VoiceSettings
from app.ui.chat_controller import ChatController, describe
from app.ui.settings_dialog import SpeechModel

# The voice core (and numpy with it) loads when voice is first turned on, not when the window opens.
if TYPE_CHECKING:
    from app.catalog.library import ModelLibrary
    from app.voice.audio import AudioInput, AudioOutput
    from app.voice.loop import VoiceEvent, VoiceLoop
    from app.voice.stt import Transcriber
    from app.voice.tts import Voice
    from app.voice.turns import SessionTurns

log = logging.getLogger("hearth.ui.voice")

# What the panel shows: the loop's states, plus "loading" while the models and devices open.
OFF, LOADING = "off", "loading"
LEVEL_MIN_GAP_S = 0.04  # the loop reports the level every 50 ms; never pass on more than that
SETTLE_TIMEOUT_MS = 10_000  # a typed send waits at most this long for a spoken reply to settle
SHUTDOWN_WAIT_S = 5.0
# Changing one of these means new models, devices or filters: voice restarts (models stay cached).
RESTART_KEYS = ("stt_model_id", "voice_id", "input_device", "output_device", "echo_cancellation")


@dataclass
class VoiceDevices:
    """A microphone and a speaker for one voice session.

    They are made on the GUI thread (a Qt device reports its failures to the thread that made it);
    `open` (the speaker; the microphone opens when the loop starts) and `close` (both) may wait on
    the sound system, so they run on a worker thread.
    """

    mic: AudioInput
    speaker: AudioOutput
    open: Callable[[], None]
    close: Callable[[], None]


# Makes the devices that `settings` name; `on_error` is called later, on the GUI thread, when one fails.
DeviceFactory = Callable[[VoiceSettings, Callable[[HearthError], None]], VoiceDevices]


def qt_devices(settings: VoiceSettings, on_error: Callable[[HearthError], None]) -> VoiceDevices:
    """The microphone and speaker chosen in Settings › Voice, through QtMultimedia."""
    from app.ui.audio_devices import QtAudioInput, QtAudioOutput

    mic = QtAudioInput(settings.input_device, on_error=on_error)
    speaker = QtAudioOutput(settings.output_device, on_error=on_error)

    def close() -> None:
        try:
            mic.close()
        finally:
            speaker.close()

    return VoiceDevices(mic, speaker, speaker.start, close)


class _SpeechModels:
    """The loaded speech recognition model and voice, kept for the session (``io`` lane only)."""

    def __init__(self) -> None:
        self._stt: tuple[str, Transcriber] | None = None
        self._voice: tuple[str, Voice] | None = None

    def load(self, library: ModelLibrary, settings: VoiceSettings) -> tuple[Transcriber, Voice]:
        from app.voice.stt import Transcriber
        from app.voice.tts import Voice

        if self._stt is None or self._stt[0] != settings.stt_model_id:
            self._stt = None  # the old model goes before the new one loads: never both in memory
            folder = library.ensure(library.get(settings.stt_model_id)).parent
            stt = Transcriber(folder)
            stt.warm_up()
            self._stt = (settings.stt_model_id, stt)
        if self._voice is None or self._voice[0] != settings.voice_id:
            self._voice = None
            voice = Voice(library.ensure(library.get(settings.voice_id)), speaking_rate=settings.speaking_rate)
            for _ in voice.synthesize_16k("Ready."):  # the first synthesis pays for set-up: not the first reply
                pass
            self._voice = (settings.voice_id, voice)
        voice = self._voice[1]
        voice.set_rate(settings.speaking_rate)
        return self._stt[1], voice

    def set_rate(self, rate: float) -> None:
        if self._voice is not None:
            self._voice[1].set_rate(rate)


class _Session:
    """One stretch of voice being on: its settings, then (once open) its devices and loop."""

    def __init__(self, settings: VoiceSettings) -> None:
        self.settings = settings
        self.cancelled = threading.Event()  # turned off (or the window closed) before it opened
        self.devices: VoiceDevices | None = None
        self.loop: VoiceLoop | None = None
        self._closed = False
        self._lock = threading.Lock()

    def close(self) -> None:
        """Stop listening and speaking and release the devices (any worker thread; idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            if self.loop is not None:
                self.loop.close()
        finally:
            if self.devices is not None:
                self.devices.close()


@dataclass(frozen=True)
class PicturesUsed:
    """These pictures, waiting in the composer, went with a spoken message (relayed to the GUI thread)."""

    pictures: tuple[Any, ...]


class _WaitingPictures:
    """The pictures waiting in the composer, as the GUI thread last saw them, for the voice thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pictures: tuple[Any, ...] = ()

    def set(self, pictures: Sequence[Any]) -> None:
        with self._lock:
            self._pictures = tuple(pictures)

    def get(self) -> tuple[Any, ...]:
        with self._lock:
            return self._pictures

    def used(self, pictures: tuple[Any, ...]) -> None:
        with self._lock:
            if self._pictures == pictures:
                self._pictures = ()


class _WindowTurns:
    """The loop's `TurnHandler`: each spoken turn goes through `SessionTurns`, in the conversation
    open in the window (a new one when none is), on the chat controller's current engine.

    Pictures waiting in the composer when the user asks aloud go with the spoken message, as they
    would with a typed one; the composer lets go of them once the message is stored."""

    def __init__(
        self, chat: ChatController, observe: Callable[[Message | Any], None], waiting: _WaitingPictures | None = None
    ) -> None:
        self._chat = chat
        self._observe = observe
        self._waiting = waiting or _WaitingPictures()
        self._turns: SessionTurns | None = None

    def _session(self) -> ChatSession:
        session = self._chat.session
        if session is None:
            raise ModelError(
                "No model is loaded, so Hearth cannot answer.",
                "Wait for the model to load, or choose one in Settings › Model.",
            )
        return session

    def respond(self, text: str, cancel: threading.Event, meta: dict[str, object] | None = None) -> Iterator[str]:
        from app.voice.turns import SessionTurns

        # The conversation is read when the turn is committed: whichever one is open by then.
        pictures = self._waiting.get()
        attach = None
        observe = self._observe
        if pictures and self._chat.profile is not None:
            from app.core.images import ImageStore
            from app.ui.pictures import encoded, text_reader

            profile = self._chat.profile
            attach = ([encoded(p) for p in pictures], ImageStore(profile.paths.images), text_reader())

            def observe(item: Message | Any) -> None:
                if isinstance(item, Message) and item.role == "user":
                    Thumbnails(ImageStore(profile.paths.images)).ensure_for([item])
                    self._waiting.used(pictures)
                    self._observe(PicturesUsed(pictures))
                self._observe(item)

        turns = SessionTurns(self._session(), lambda: self._chat.current, observe, self._chat.engine_lock, attach)
        self._turns = turns
        return turns.respond(text, cancel, meta)

    def prepare(self) -> None:
        """The user started speaking: let the model read the open conversation meanwhile."""
        from app.voice.turns import SessionTurns

        session = self._chat.session
        if session is None or not self._chat.engine_lock.acquire(blocking=False):
            return  # no model, or a reply is being written: nothing to get ready
        try:
            SessionTurns(session, lambda: self._chat.current).prepare()
        finally:
            self._chat.engine_lock.release()

    def cut(self, heard: str, by: str = "speech") -> None:
        turns = self._turns
        if turns is not None:
            with self._chat.engine_lock:  # the store write finishes before the window may close it
                turns.cut(heard, by)

    def withdraw(self) -> bool:
        turns = self._turns
        return turns is not None and turns.withdraw()  # which deletes under the engine lock itself


class VoiceController(QObject):
    """Owns voice for the main window; the `VoicePanel` shows its signals and calls its slots.

    `devices` opens a microphone and speaker (the Qt ones by default; tests pass recordings).
    """

    stateChanged = Signal(str)  # off, loading, listening, hearing, thinking, speaking
    level = Signal(float)  # microphone level, dBFS
    partial = Signal(str)  # the words heard so far in this turn ("" when none)
    modeChanged = Signal(str)  # hands-free or push-to-talk
    notice = Signal(str, str)  # message, hint
    picturesUsed = Signal(list)  # pictures from the composer that went with a spoken message
    _relay = Signal(object, object)  # (session, loop event | turn item | device error), from any thread

    def __init__(
        self, chat: ChatController, devices: DeviceFactory | None = None, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self._chat = chat
        self._devices = devices or qt_devices
        self._models = _SpeechModels()
        self._waiting = _WaitingPictures()
        self._session: _Session | None = None
        self._state = OFF
        self._answering = 0  # spoken turns between end of speech and TurnDone, as seen on the GUI thread
        self._reply_cid: int | None = None  # the conversation the spoken reply is written in
        self._deferred: list[Callable[[], None]] = []
        self._settle_timer = QTimer(self)
        self._settle_timer.setSingleShot(True)
        self._settle_timer.setInterval(SETTLE_TIMEOUT_MS)
        self._settle_timer.timeout.connect(self._run_deferred)
        # Worker-thread bookkeeping: sessions running, replies not yet done, level throttling.
        self._sessions_lock = threading.Lock()
        self._running: set[_Session] = set()
        self._closing = False
        self._replies = threading.Condition()
        self._replies_open = 0
        self._last_level = 0.0
        self.speech_models: list[SpeechModel] = []  # for Settings › Voice, read off the GUI thread
        self._relay.connect(self._deliver, Qt.ConnectionType.QueuedConnection)
        chat.profileReady.connect(self._on_profile)

    def set_waiting_pictures(self, pictures: Sequence[Any]) -> None:
        """The pictures in the composer now (GUI thread): a question asked aloud takes them along."""
        self._waiting.set(pictures)

    def _on_profile(self, profile: Profile) -> None:
        self.modeChanged.emit(profile.settings.voice.mode)

        def speech_models() -> list[SpeechModel]:
            return [
                SpeechModel(e.id, e.name, e.kind, "multilingual" in e.capabilities)
                for e in profile.library.entries()
                if e.kind in ("stt", "tts")
            ]

        self._chat.runner.submit("io", speech_models).then(lambda models: setattr(self, "speech_models", models))

    # -- what the window asks ---------------------------------------------------------------

    @property
    def state(self) -> str:
        return self._state

    @property
    def enabled(self) -> bool:
        """Voice is on or opening."""
        return self._session is not None

    @property
    def answering(self) -> bool:
        """A spoken turn is being transcribed, answered or read aloud."""
        return self._answering > 0

    @property
    def loop(self) -> VoiceLoop | None:
        session = self._session
        return session.loop if session is not None else None

    def set_enabled(self, on: bool) -> None:
        if on:
            self.start()
        else:
            self.stop()

    def start(self) -> None:
        """Turn voice on: load what is missing and open the devices off the GUI thread, then listen."""
        profile = self._chat.profile
        if self._session is not None:
            return
        if profile is None:
            self.notice.emit("Hearth is still starting.", "Turn voice on again in a moment.")
            self.stateChanged.emit(OFF)  # the panel's toggle went on: put it back
            return
        session = _Session(profile.settings.voice)
        try:
            session.devices = self._devices(session.settings, lambda error: self._relay.emit(session, error))
        except Exception as error:
            self._fail(*describe(error))
            self.stateChanged.emit(OFF)
            return
        self._session = session
        self.modeChanged.emit(session.settings.mode)
        self._show_state(LOADING)
        job = self._chat.runner.submit("io", self._open, session, profile.library)
        job.then(lambda _: self._opened(session)).fail(lambda error: self._open_failed(session, error))

    def stop(self) -> None:
        """Turn voice off: stop listening and speaking (a reply being written stops and is kept)."""
        session, self._session = self._session, None
        if session is None:
            return
        session.cancelled.set()
        self._show_state(OFF)
        self.partial.emit("")
        self._chat.runner.submit("io", self._close, session)

    def interrupt(self) -> None:
        """Stop talking now (the panel's Stop); the reply is kept as far as it was heard."""
        loop = self.loop
        if loop is not None:
            loop.interrupt()

    def push_to_talk(self, pressed: bool) -> None:
        """The talk button or key went down (a turn starts, a reply stops) or up (the turn ends)."""
        loop = self.loop
        if loop is not None:
            loop.push_to_talk(pressed)

    def device_lost(self, kind: str, description: str) -> None:
        """A device in use was unplugged (`AudioDevices.lost`): say so and turn voice off."""
        if self._session is not None:
            what = "microphone" if kind == "input" else "speaker"
            self._fail(
                f"The {what} “{description}” was disconnected.",
                "Connect it again, or choose another one in Settings › Voice, then turn voice on.",
            )

    def when_idle(self, action: Callable[[], None]) -> None:
        """Run a typed action once no spoken reply is under way, interrupting one that is."""
        if not self.answering:
            action()
            return
        self._deferred.append(action)
        self._settle_timer.start()
        self.interrupt()

    def apply_settings(self, old: VoiceSettings, new: VoiceSettings) -> None:
        """New voice settings were saved: pass them on, reopening what they change."""
        self.modeChanged.emit(new.mode)
        session = self._session
        if session is None or old == new:
            return
        if any(getattr(old, key) != getattr(new, key) for key in RESTART_KEYS):
            self.stop()
            self.start()
            return
        session.settings = new
        if session.loop is not None:
            session.loop.update_settings(new)
        if new.speaking_rate != old.speaking_rate:
            self._chat.runner.submit("io", self._models.set_rate, new.speaking_rate)

    def shutdown(self) -> None:
        """The window is closing: stop voice now and let a spoken reply write its last words."""
        with self._sessions_lock:
            self._closing = True
            running = list(self._running)
            self._running.clear()
        if self._session is not None:
            self._session.cancelled.set()
            self._session = None
        for session in running:
            session.close()
        with self._replies:
            self._replies.wait_for(lambda: self._replies_open == 0, timeout=SHUTDOWN_WAIT_S)

    # -- opening and closing (io lane) ---------------------------------------------------

    def _open(self, session: _Session, library: ModelLibrary) -> None:
        from app.voice.loop import VoiceLoop

        devices = session.devices
        assert devices is not None
        stt, voice = self._models.load(library, session.settings)
        if session.cancelled.is_set():
            return
        try:
            devices.open()
            turns = _WindowTurns(self._chat, lambda item: self._relay.emit(session, item), self._waiting)
            session.loop = VoiceLoop(
                devices.mic,
                devices.speaker,
                stt,
                voice,
                turns,
                session.settings,
                lambda event: self._on_loop_event(session, event),
            )
            with self._sessions_lock:
                if session.cancelled.is_set() or self._closing:
                    session.close()
                    return
                session.loop.start()
                self._running.add(session)
        except BaseException:
            session.close()
            raise

    def _close(self, session: _Session) -> None:
        with self._sessions_lock:
            self._running.discard(session)
        session.close()

    def _opened(self, session: _Session) -> None:
        loop = session.loop
        if session is self._session and loop is not None and loop.settings != session.settings:
            loop.update_settings(session.settings)  # settings applied while it was opening

    def _open_failed(self, session: _Session, error: BaseException) -> None:
        if session is self._session:
            self._fail(*describe(error))

    # -- reports (voice threads → GUI thread) --------------------------------------------

    def _on_loop_event(self, session: _Session, event: VoiceEvent) -> None:
        """Runs on the loop's threads: keep count of replies under way, thin out the level, relay."""
        from app.voice.loop import Level, StateChanged, TurnDone

        if isinstance(event, Level):
            now = time.monotonic()
            if now - self._last_level < LEVEL_MIN_GAP_S:
                return
            self._last_level = now
        elif isinstance(event, StateChanged) and event.state == "thinking":
            with self._replies:
                self._replies_open += 1
        elif isinstance(event, TurnDone):
            with self._replies:
                self._replies_open -= 1
                self._replies.notify_all()
        self._relay.emit(session, event)

    def _deliver(self, session: _Session, item: object) -> None:
        """Runs on the GUI thread, in the order the reports were made."""
        from app.voice.turns import Withdrawn

        if isinstance(item, Message):
            self._show_message(item)
        elif isinstance(item, ReplyStarted | TextDelta | ReplyFinished | ContextTrimmed):
            if isinstance(item, ReplyStarted):
                self._reply_cid = item.message.conversation_id
            self._chat.show_turn_event(item, self._reply_cid)
        elif isinstance(item, HearthError):  # a device failed
            if session is self._session:
                self._fail(item.message, item.hint)
        elif isinstance(item, PicturesUsed):
            self.picturesUsed.emit(list(item.pictures))
        elif isinstance(item, Withdrawn):  # the user went on speaking: their words are answered whole later
            self._chat.show_taken_back(item.conversation_id, item.message_id)
        else:
            self._on_event(session, item)

    def _show_message(self, message: Message) -> None:
        if message.role == "user":
            self._reply_cid = message.conversation_id
            self._chat.show_spoken_message(message)
        else:  # the reply, cut to what was heard
            self._chat.show_updated_message(message)

    def _on_event(self, session: _Session, event: object) -> None:
        from app.voice.loop import Heard, Level, NothingHeard, Partial, Problem, StateChanged, TurnDone

        # Turns are counted whichever session they belong to: a reply outlives voice being turned off.
        if isinstance(event, StateChanged) and event.state == "thinking":
            self._answering += 1
        elif isinstance(event, TurnDone):
            self._answering = max(0, self._answering - 1)
            self._chat.refresh_conversations()
            if not self._answering:
                self._run_deferred()
        if session is not self._session:
            return
        if isinstance(event, StateChanged):
            if event.state != "off":
                self._show_state(event.state.value)
            if event.state == "listening":
                self.partial.emit("")
        elif isinstance(event, Level):
            self.level.emit(event.db)
        elif isinstance(event, Partial):
            self.partial.emit(event.text)
        elif isinstance(event, Heard | NothingHeard):
            self.partial.emit("")
        elif isinstance(event, Problem):
            self._fail(event.error.message, event.error.hint)

    def _run_deferred(self) -> None:
        self._settle_timer.stop()
        actions, self._deferred = self._deferred, []
        for action in actions:
            action()

    def _fail(self, message: str, hint: str) -> None:
        log.info("voice turned off: %s", message)
        self.notice.emit(message, hint)
        self.stop()

    def _show_state(self, state: str) -> None:
        if state != self._state:
            self._state = state
            self.stateChanged.emit(state)
