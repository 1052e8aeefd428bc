"""The window's brain-stem: turns clicks into background jobs and job results into signals.

It owns no widgets. Every store or model call goes through the `Runner` (``io`` lane for the
database, ``llm`` lane for the engine), and results come back as Qt signals the window
connects to. Tests drive it with a hand-written fake engine through `engine_factory`.

Pictures sent with a message are read (OCR) and stored on the ``io`` lane, and the small copies
the chat shows (`app.core.thumbnails`) are made there before a message reaches the view.

Typed turns and spoken ones (`app.ui.voice_controller`) share the engine: `engine_lock` is held
by whichever of them is running it, and both show their reply through `show_turn_event`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from app.core.conversation import Message
from app.core.export import export_conversation
from app.core.images import ImageStore
from app.core.store import Store
from app.core.thumbnails import Thumbnails, forget_unused_pictures
from app.core.turn import (
    ChatSession,
    ContextTrimmed,
    ReplyFinished,
    ReplyStarted,
    TextDelta,
    TurnEvent,
    add_user_message,
)
from app.engines.llm import ChatEngine
from app.errors import HearthError, ModelError
from app.runtime import Profile
from app.settings import Settings
from app.ui.pictures import Picture, PictureSource, encoded, text_reader, warm_up
from app.ui.tasks import Runner

log = logging.getLogger("hearth.ui")

Progress = Callable[[int, int, str], None]
EngineFactory = Callable[[Profile, Progress], ChatEngine]
RELOAD_KEYS = ("model_id", "n_ctx", "n_threads", "n_gpu_layers", "engine", "remote_url", "remote_model")


@dataclass(frozen=True)
class Reopened:
    """The conversation as stored once a regenerate or edit rewrote it, without the new reply."""

    messages: list[Message]


def with_reopen(store: Store, conversation_id: int, events: Iterator[TurnEvent]) -> Iterator[TurnEvent | Reopened]:
    """Put the rewritten conversation into the turn's own stream, just before the new reply.

    Regenerate and edit delete messages first. Reading the result here, on the turn's lane,
    delivers it in order — after the deletion, before the first word — so the view never
    mixes the old reply with the new one or misses words while it reloads.
    """
    for event in events:
        if isinstance(event, ContextTrimmed):
            continue  # the marker is already stored, so the reopened messages show it
        if isinstance(event, ReplyStarted):
            messages = [m for m in store.messages(conversation_id) if m.id != event.message.id]
            yield Reopened(messages)
        yield event


def describe(error: BaseException) -> tuple[str, str]:
    if isinstance(error, HearthError):
        return error.message, error.hint
    log.error("unexpected error", exc_info=error)
    return f"Something went wrong: {error}", "The details are in Hearth's log file; your conversation is saved."


class ChatController(QObject):
    notice = Signal(str, str)  # message, hint
    profileReady = Signal(object)  # Profile
    engineLoading = Signal(int, int, str)
    engineReady = Signal(object)  # EngineInfo
    engineFailed = Signal(str, str)
    conversationsChanged = Signal(list)
    conversationOpened = Signal(object, list)  # id or None, messages
    searchResults = Signal(list)
    userMessageAdded = Signal(object)
    spokenMessageAdded = Signal(object)  # a user message said aloud: the composer is left alone
    messageUpdated = Signal(object)  # a message already shown changed (a spoken reply cut short)
    messagesTakenBack = Signal(int)  # the messages from this id on are gone (a spoken turn taken back)
    sendFailed = Signal(str, list)  # the text and the pictures to put back in the composer
    replyStarted = Signal(object)
    replyDelta = Signal(str)
    contextTrimmed = Signal(object)
    replyFinished = Signal(object)
    busyChanged = Signal(bool)
    contextUsage = Signal(int, int)

    def __init__(self, runner: Runner, profile_factory: Callable[[], Profile], engine_factory: EngineFactory) -> None:
        super().__init__()
        self.runner = runner
        self._profile_factory = profile_factory
        self._engine_factory = engine_factory
        self.profile: Profile | None = None
        self.chat_models: list[tuple[str, str]] = []  # (id, name), read off the GUI thread
        self.session: ChatSession | None = None
        self.current: int | None = None
        self.busy = False
        self._cancel = threading.Event()
        self._live: Message | None = None  # the reply being written, and every word of it so far
        self._live_text = ""
        # Held while the engine runs, by typed turns here and by spoken turns on the voice
        # threads, so the two never stream at once (and the engine is not closed under either).
        self.engine_lock = threading.Lock()
        self._reader_warmed = False

    # -- start-up -------------------------------------------------------------------------

    def start(self) -> None:
        self.runner.submit("io", self._profile_factory).then(self._on_profile).fail(self._fatal)

    def _on_profile(self, profile: Profile) -> None:
        self.profile = profile
        self.profileReady.emit(profile)
        if profile.store.notice:
            self.notice.emit(profile.store.notice, "")
        self.refresh_conversations()
        self.refresh_models()
        self.load_engine()
        # Pictures of conversations deleted moments before Hearth last closed are still stored.
        self.runner.submit("io", _forget_unused_pictures, profile).fail(self._fatal)

    def refresh_models(self) -> None:
        """The chat models the library knows (catalog + imported files), for Settings › Model."""
        profile = self.profile
        if profile is None:
            return

        def chat_models() -> list[tuple[str, str]]:
            return [(e.id, e.name) for e in profile.library.entries() if e.kind == "chat"]

        self.runner.submit("io", chat_models).then(lambda models: setattr(self, "chat_models", models))

    def _fatal(self, error: BaseException) -> None:
        self.notice.emit(*describe(error))

    def load_engine(self) -> None:
        profile = self.profile
        if profile is None:
            return
        old, self.session = self.session, None
        if old is not None:
            self.runner.submit("llm", self._exclusively, old.engine.close)

        def progress(done: int, total: int, stage: str) -> None:
            self.runner.post(lambda: self.engineLoading.emit(done, total, stage))

        self.engineLoading.emit(0, 0, "Preparing the model…")
        job = self.runner.submit("llm", self._engine_factory, profile, progress)
        job.then(self._on_engine).fail(lambda e: self.engineFailed.emit(*describe(e)))

    def _on_engine(self, engine: ChatEngine) -> None:
        assert self.profile is not None
        self.session = ChatSession(self.profile.store, engine, self.profile.settings)
        self.engineReady.emit(engine.info)
        self.update_context_usage()

    # -- conversations --------------------------------------------------------------------

    def refresh_conversations(self) -> None:
        if self.profile is not None:
            self.runner.submit("io", self.profile.store.list_conversations).then(self.conversationsChanged.emit)

    def open_conversation(self, conversation_id: int | None) -> None:
        self.current = conversation_id
        if conversation_id is None or self.profile is None:
            self.conversationOpened.emit(None, [])
            self.contextUsage.emit(0, self._n_ctx())
            return
        job = self.runner.submit("io", self._messages_to_show, self.profile, conversation_id)
        job.then(lambda messages: self._opened(conversation_id, messages)).fail(self._fatal)

    @staticmethod
    def _messages_to_show(profile: Profile, conversation_id: int) -> list[Message]:
        messages = profile.store.messages(conversation_id)
        _thumbnails(profile).ensure_for(messages)
        return messages

    def _opened(self, conversation_id: int, messages: list[Any]) -> None:
        if conversation_id == self.current:
            self.conversationOpened.emit(conversation_id, self._with_live_text(messages))
            self.update_context_usage()

    def _with_live_text(self, messages: list[Message]) -> list[Message]:
        """The store holds a reply being written only as of its last commit; show every word."""
        live = self._live
        if live is None:
            return messages
        return [replace(m, content=self._live_text, status="streaming") if m.id == live.id else m for m in messages]

    def update_context_usage(self) -> None:
        session, cid = self.session, self.current
        if session is None:
            return
        if cid is None:
            self.contextUsage.emit(0, session.engine.info.n_ctx)
            return
        job = self.runner.submit("llm", self._exclusively, session.context_usage, cid)
        job.then(lambda usage: self._usage(cid, usage)).fail(lambda error: self._usage_failed(cid, error))

    def _usage(self, cid: int, usage: tuple[int, int]) -> None:
        if cid == self.current:
            self.contextUsage.emit(*usage)

    def _usage_failed(self, cid: int, error: BaseException) -> None:
        if cid == self.current:  # a conversation closed (or deleted) meanwhile needs no meter
            self._fatal(error)

    def _exclusively(self, fn: Callable[..., Any], *args: Any) -> Any:
        with self.engine_lock:
            return fn(*args)

    def _n_ctx(self) -> int:
        return self.session.engine.info.n_ctx if self.session else (self.profile.settings.n_ctx if self.profile else 0)

    def search(self, query: str) -> None:
        if self.profile is None:
            return
        if not query.strip():
            self.refresh_conversations()
            return
        self.runner.submit("io", self.profile.store.search, query).then(self.searchResults.emit).fail(self._fatal)

    def rename(self, conversation_id: int, title: str) -> None:
        self._store_call(self._store().rename_conversation, conversation_id, title)

    def set_instructions(self, conversation_id: int, text: str | None) -> None:
        self._store_call(self._store().set_system_prompt, conversation_id, text, usage=True)

    def delete(self, conversation_id: int) -> None:
        """Delete the conversation, and the stored pictures no other conversation holds."""
        if conversation_id == self.current:
            self.open_conversation(None)
        profile = self.profile
        self._store_call(self._store().delete_conversation, conversation_id)
        if profile is not None:
            self.runner.submit("io", _forget_unused_pictures, profile).fail(self._fatal)

    def export(self, conversation_id: int, path: Path) -> None:
        job = self.runner.submit("io", export_conversation, self._store(), conversation_id, path)
        job.then(lambda _: self.notice.emit(f"Exported to {path}", "")).fail(self._fatal)

    def conversation(self, conversation_id: int) -> Any:
        return self.runner.submit("io", self._store().get_conversation, conversation_id)

    def _store(self) -> Any:
        if self.profile is None:
            raise HearthError("Hearth is still starting.", "Try again in a moment.")
        return self.profile.store

    def _store_call(self, fn: Callable[..., Any], *args: Any, usage: bool = False) -> None:
        job = self.runner.submit("io", fn, *args).then(lambda _: self.refresh_conversations()).fail(self._fatal)
        if usage:
            job.then(lambda _: self.update_context_usage())

    # -- turns ----------------------------------------------------------------------------

    def send(self, text: str, images: Sequence[PictureSource | Picture] = ()) -> None:
        """Store the user's message (with its pictures, read and stored first), then answer it.

        If it cannot be stored, `sendFailed` gives back the text and these same `images`.
        """
        if self.busy or self.profile is None:
            return
        self._set_busy(True)
        pictures = list(images)
        if pictures:
            job = self.runner.submit("io", _add_with_pictures, self.profile, self.current, text, pictures)
        else:
            job = self.runner.submit("io", add_user_message, self.profile.store, self.current, text)
        job.then(self._after_user_message).fail(lambda e: self._send_failed(text, pictures, e))

    def _send_failed(self, text: str, pictures: list[PictureSource | Picture], error: BaseException) -> None:
        self._set_busy(False)
        self.sendFailed.emit(text, pictures)
        self.notice.emit(*describe(error))

    def prepare_reading(self) -> None:
        """Pictures are on their way: load the text reader now (once), so sending need not wait for it."""
        if self._reader_warmed:
            return
        self._reader_warmed = True
        job = self.runner.submit("images", warm_up, text_reader())
        job.fail(lambda e: log.info("the text reader did not load in advance: %s", e))

    def _after_user_message(self, message: Any) -> None:
        new = self.current != message.conversation_id
        self.current = message.conversation_id
        if new:
            self.conversationOpened.emit(self.current, [message])
            self.refresh_conversations()
        else:
            self.userMessageAdded.emit(message)
        self._run_turn(lambda session, cancel: session.reply(message.conversation_id, cancel))

    def regenerate(self) -> None:
        cid = self.current
        if self.busy or cid is None:
            return
        self._set_busy(True)
        self._run_turn(lambda session, cancel: session.regenerate(cid, cancel), reopen=True)

    def edit_and_resend(self, message_id: int, text: str) -> None:
        cid = self.current
        if self.busy or cid is None:
            return
        self._set_busy(True)
        self._run_turn(lambda session, cancel: session.edit_and_resend(cid, message_id, text, cancel), reopen=True)

    def stop(self) -> None:
        self._cancel.set()

    def _run_turn(
        self, make: Callable[[ChatSession, threading.Event], Iterator[TurnEvent]], reopen: bool = False
    ) -> None:
        self._cancel = cancel = threading.Event()
        cid = self.current

        def turn() -> Iterator[TurnEvent | Reopened]:
            with self.engine_lock:  # a spoken turn may be finishing: wait for it, off the GUI thread
                session = self.session
                if session is None:
                    raise ModelError(
                        "No model is loaded.", "Choose a model in Settings › Model, or check the message above."
                    )
                events = make(session, cancel)
                yield from with_reopen(session.store, cid, events) if reopen and cid is not None else events

        job = self.runner.stream("llm", turn, lambda event: self.show_turn_event(event, cid))
        job.fail(self._turn_failed).always(self._turn_done)

    def show_turn_event(self, event: TurnEvent | Reopened, conversation_id: int | None) -> None:
        """Show one event of a reply being written in `conversation_id`, typed or spoken."""
        self._track_live(event)
        if conversation_id != self.current:
            return  # the user switched away; the store still gets the whole reply
        if isinstance(event, Reopened):
            self.conversationOpened.emit(self.current, event.messages)
        elif isinstance(event, TextDelta):
            self.replyDelta.emit(event.text)
        elif isinstance(event, ReplyStarted):
            self.replyStarted.emit(event.message)
        elif isinstance(event, ContextTrimmed):
            self.contextTrimmed.emit(event.marker)
        elif isinstance(event, ReplyFinished):
            self.replyFinished.emit(event.message)
            self.contextUsage.emit(event.context_used, event.n_ctx)

    def show_spoken_message(self, message: Message) -> None:
        """A message the user said aloud is stored: show it, opening its conversation if it is new."""
        if message.conversation_id != self.current:
            self.current = message.conversation_id
            self.conversationOpened.emit(self.current, [message])
            self.refresh_conversations()
        else:
            self.spokenMessageAdded.emit(message)

    def show_taken_back(self, conversation_id: int, message_id: int) -> None:
        """A spoken message and the reply begun to it were taken back: the user went on speaking."""
        if conversation_id == self.current:
            self.messagesTakenBack.emit(message_id)
            self.update_context_usage()

    def show_updated_message(self, message: Message) -> None:
        """A message already shown was rewritten in the store (a spoken reply cut to what was heard)."""
        if message.conversation_id == self.current:
            self.messageUpdated.emit(message)
            self.update_context_usage()

    def _track_live(self, event: TurnEvent | Reopened) -> None:
        # Followed whichever conversation is on screen, so coming back to this one shows it all.
        if isinstance(event, ReplyStarted):
            self._live, self._live_text = event.message, ""
        elif isinstance(event, TextDelta):
            self._live_text += event.text
        elif isinstance(event, ReplyFinished):
            self._live = None

    def _turn_failed(self, error: BaseException) -> None:
        self.notice.emit(*describe(error))
        self.open_conversation(self.current)

    def _turn_done(self) -> None:
        self._live = None
        self._set_busy(False)
        self.refresh_conversations()

    def _set_busy(self, busy: bool) -> None:
        self.busy = busy
        self.busyChanged.emit(busy)

    # -- settings -------------------------------------------------------------------------

    def apply_settings(self, settings: Settings) -> None:
        profile = self.profile
        if profile is None:
            return
        reload = any(getattr(settings, k) != getattr(profile.settings, k) for k in RELOAD_KEYS)
        self.runner.submit("io", profile.save_settings, settings).fail(self._fatal)
        profile.settings = settings
        if self.session is not None:
            self.session.settings = settings
        if reload:
            self.load_engine()

    def shutdown(self) -> None:
        """Stop the reply, let the running work end, then close the engine and the store."""
        self._cancel.set()
        # The lanes drain first: a stopped reply still writes its last words and its status,
        # which it could not do once the store is closed.
        self.runner.shutdown(wait=True)
        session, self.session = self.session, None
        if session is not None:
            session.engine.close()
        if self.profile is not None:
            self.profile.close()


def _forget_unused_pictures(profile: Profile) -> int:
    return forget_unused_pictures(profile.store.picture_addresses(), ImageStore(profile.paths.images))


def _thumbnails(profile: Profile) -> Thumbnails:
    return Thumbnails(ImageStore(profile.paths.images))


def _add_with_pictures(
    profile: Profile, conversation_id: int | None, text: str, pictures: list[PictureSource | Picture]
) -> Message:
    """Read, check and store the pictures and the message (nothing is stored if one is bad)."""
    store = ImageStore(profile.paths.images)
    sources = [encoded(picture) for picture in pictures]
    message = add_user_message(profile.store, conversation_id, text, sources, store, text_reader())
    _thumbnails(profile).ensure_for([message])
    return message
