"""How a spoken turn reaches the conversation: the same `ChatSession` that typed turns use.

`SessionTurns` commits what the user said as their message (marked as spoken), streams the reply
through `ChatSession.reply`, and — when the user talked over the reply — cuts the stored reply to
what was actually heard and marks it interrupted, so the conversation shows what the user heard.
When the user goes on speaking before a word of the reply was heard, the message and the reply
begun to it are taken back (`withdraw`): the next turn answers everything they said at once.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from app.core.conversation import Message
from app.core.turn import ChatSession, ReplyFinished, ReplyStarted, TextDelta, TurnEvent

if TYPE_CHECKING:
    from app.core.attachments import ImageSource
    from app.core.images import ImageStore
    from app.engines.ocr import TextReader

log = logging.getLogger("hearth.voice")


class TurnHandler(Protocol):
    def respond(self, text: str, cancel: threading.Event, meta: dict[str, object] | None = None) -> Iterator[str]:
        """Commit `text` as the user's message and stream the reply's text as it is written."""

    def prepare(self) -> None:
        """The user started speaking: get ready to answer (optional work, may do nothing)."""

    def cut(self, heard: str, by: str = "speech") -> None:
        """The reply just streamed was heard only up to `heard` (spoken words): keep that much.

        `by` says what cut it: "speech" (the user talked over it) or "stop" (the stop button)."""

    def withdraw(self) -> bool:
        """The user went on speaking before any of the reply just begun was heard: take back their
        message and the reply, so that what they said is answered whole. False, with nothing
        changed, where that cannot be done; the loop then cuts the reply instead."""


@dataclass(frozen=True)
class Withdrawn:
    """A spoken message (and the reply begun to it) was taken back: its words open the next turn."""

    conversation_id: int
    message_id: int


class SessionTurns:
    """`TurnHandler` over a ChatSession and one conversation (created on the first spoken turn).

    `conversation` returns the conversation to speak in (None starts a new one); `observe` sees
    every user message and turn event, from the voice thread, so a window can show them;
    `exclusive` is held while the engine runs, so typed and spoken turns never overlap.
    `pictures`, when given, are attached to the spoken message (pictures waiting to be sent when
    the user asked aloud), stored and read with `image_store` and `reader`.
    """

    def __init__(
        self,
        session: ChatSession,
        conversation: Callable[[], int | None],
        observe: Callable[[Message | TurnEvent | Withdrawn], None] | None = None,
        exclusive: AbstractContextManager[object] | None = None,
        pictures: tuple[Sequence[ImageSource], ImageStore, TextReader] | None = None,
    ) -> None:
        self._session = session
        self._pictures = pictures
        self._conversation = conversation
        self._observe = observe or (lambda _event: None)
        self._exclusive = exclusive or nullcontext()
        self._message: Message | None = None
        self._reply: Message | None = None
        self._reply_text = ""
        self.conversation_id: int | None = None

    def respond(self, text: str, cancel: threading.Event, meta: dict[str, object] | None = None) -> Iterator[str]:
        with self._exclusive:
            conversation_id = self._conversation()
            if conversation_id is None:
                conversation_id = self.conversation_id  # the one an earlier spoken turn started
            images, image_store, reader = self._pictures if self._pictures else ((), None, None)
            message = self._session.add_user_message(conversation_id, text, images, image_store, reader)
            self._session.store.update_message(message.id, meta={**message.meta, **(meta or {}), "spoken": True})
            message = self._session.store.get_message(message.id)
            self.conversation_id = message.conversation_id
            self._message = message
            self._observe(message)
            self._reply, self._reply_text = None, ""
            for event in self._session.reply(message.conversation_id, cancel):
                if isinstance(event, ReplyStarted):
                    self._reply = event.message
                elif isinstance(event, TextDelta):
                    self._reply_text += event.text
                    self._observe(event)
                    yield event.text
                    continue
                elif isinstance(event, ReplyFinished):
                    self._reply = event.message
                    self._reply_text = event.message.content
                self._observe(event)

    def prepare(self) -> None:
        conversation_id = self._conversation()
        if conversation_id is None:
            conversation_id = self.conversation_id
        try:
            self._session.prefill(conversation_id)
        except Exception:  # only a head start; the reply itself reports real problems
            log.debug("prefill failed", exc_info=True)

    def cut(self, heard: str, by: str = "speech") -> None:
        reply = self._reply
        if reply is None:
            return
        store = self._session.store
        current = store.get_message(reply.id)
        kept = cut_to_heard(current.content, heard)
        meta = {
            **current.meta,
            "barge_in": by == "speech",
            "stopped_by": by,
            "heard": heard,
            "unheard": current.content[len(kept) :],
        }
        store.update_message(reply.id, content=kept, status="interrupted", meta=meta)
        updated = store.get_message(reply.id)
        self._observe(updated)

    def withdraw(self) -> bool:
        message, reply = self._message, self._reply
        if message is None or message.meta.get("images"):
            return False  # pictures are not carried into the next turn: keep the message that holds them
        store = self._session.store
        with self._exclusive:
            later = [m.id for m in store.messages(message.conversation_id) if m.id >= message.id]
            if later != [message.id, *([reply.id] if reply is not None else [])]:
                return False  # something else was said or written since
            store.delete_messages_from(message.conversation_id, message.id)
        self._message = self._reply = None
        self._observe(Withdrawn(message.conversation_id, message.id))
        return True


_WORD = re.compile(r"[\w']+")


def cut_to_heard(reply: str, heard: str) -> str:
    """The prefix of `reply` (markdown as written) that covers the spoken words in `heard`.

    Spoken text drops markup, so the words of `heard` are matched in order against the words of
    the reply; the reply is cut after the last word matched. Nothing heard → empty.
    """
    heard_words = [w.lower() for w in _WORD.findall(heard)]
    if not heard_words:
        return ""
    end = 0
    index = 0
    for match in _WORD.finditer(reply):
        if index >= len(heard_words):
            break
        if match.group().lower() == heard_words[index]:
            index += 1
            end = match.end()
    if index == 0:
        return heard.strip()
    # Keep markup and punctuation that close the last heard word ("**world**." rather than "**world").
    tail = re.match(r"[*_~`.!?,;:)\]\"'»”]*", reply[end:])
    return reply[: end + (tail.end() if tail else 0)].rstrip()
