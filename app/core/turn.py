"""One turn of a conversation: the single loop every way in and every way out goes through.

`ChatSession.add_user_message` commits what the user said the moment they send it;
`ChatSession.reply` builds the context, streams the engine and yields events that the window,
the CLI (and later the voice pipeline) consume. The reply is committed as it streams — at
least every `COMMIT_INTERVAL_S` — so a crash loses at most about a second of it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from app.core.attachments import IMAGE_ONLY_TEXT, ImageSource, attach
from app.core.context import ContextPlan, describe_drop, plan_context, to_chat, visible_dialogue
from app.core.conversation import ChatMessage, Conversation, Message
from app.core.images import ImageStore
from app.core.store import Store
from app.engines.llm import ChatEngine, GenerationStats
from app.engines.ocr import TextReader
from app.errors import EngineCrashed, PromptError
from app.settings import Settings

log = logging.getLogger("hearth.turn")

COMMIT_INTERVAL_S = 0.5
TITLE_LENGTH = 48


@dataclass(frozen=True)
class ContextTrimmed:
    marker: Message  # the stored notice; `marker.meta["dropped_ids"]` lists what left


@dataclass(frozen=True)
class ReplyStarted:
    message: Message  # the assistant message, stored empty with status "streaming"


@dataclass(frozen=True)
class TextDelta:
    message_id: int
    text: str


@dataclass(frozen=True)
class ReplyFinished:
    message: Message  # final content and status ("complete", "stopped" or "error")
    stats: GenerationStats
    context_used: int  # tokens in the context after this reply
    n_ctx: int


TurnEvent = ContextTrimmed | ReplyStarted | TextDelta | ReplyFinished


class ChatSession:
    """Conversations, one engine, one store: the Qt-free brain of Hearth."""

    def __init__(self, store: Store, engine: ChatEngine, settings: Settings) -> None:
        self.store = store
        self.engine = engine
        self.settings = settings

    # -- conversations --------------------------------------------------------------

    def instructions_for(self, conversation: Conversation) -> str:
        if conversation.system_prompt is not None:
            return conversation.system_prompt
        return self.settings.default_instructions

    def add_user_message(
        self,
        conversation_id: int | None,
        text: str,
        images: Sequence[ImageSource] = (),
        image_store: ImageStore | None = None,
        reader: TextReader | None = None,
    ) -> Message:
        return add_user_message(self.store, conversation_id, text, images, image_store, reader)

    def context_usage(self, conversation_id: int) -> tuple[int, int]:
        """(tokens the model would see now, context size) — for the context meter."""
        return self.engine.count_tokens(self._prompt_so_far(conversation_id)), self.engine.info.n_ctx

    def prefill(self, conversation_id: int | None) -> int:
        """Let the engine read the conversation so far while the user is still speaking.

        Only engines that can (a local model) do anything; the reply that follows is the same.
        """
        prefill = getattr(self.engine, "prefill", None)
        if prefill is None:
            return 0
        return int(prefill(self._prompt_so_far(conversation_id)))

    def _prompt_so_far(self, conversation_id: int | None) -> list[ChatMessage]:
        """The instructions and the visible dialogue, as the model would read them now."""
        if conversation_id is None:
            return to_chat(self.settings.default_instructions, [])
        conversation = self.store.get_conversation(conversation_id)
        return to_chat(self.instructions_for(conversation), visible_dialogue(self.store.messages(conversation_id)))

    # -- turns ----------------------------------------------------------------------

    def reply(self, conversation_id: int, cancel: threading.Event | None = None) -> Iterator[TurnEvent]:
        """Answer the conversation's latest user message, streaming events."""
        cancel = cancel or threading.Event()
        conversation = self.store.get_conversation(conversation_id)
        history = self.store.messages(conversation_id)
        plan = plan_context(
            self.instructions_for(conversation),
            history,
            self.engine.count_tokens,
            self.engine.info.n_ctx,
            self.settings.generation.max_tokens,
        )
        if plan.dropped:
            yield ContextTrimmed(self._store_marker(conversation_id, plan))
        yield from self._stream_reply(conversation_id, plan, cancel)

    def regenerate(self, conversation_id: int, cancel: threading.Event | None = None) -> Iterator[TurnEvent]:
        """Replace everything after the latest user message with a new reply."""
        history = self.store.messages(conversation_id)
        last_user = next((m for m in reversed(history) if m.role == "user"), None)
        if last_user is None:
            raise PromptError("There is no message to answer again.", "Send a message first.")
        later = [m for m in history if m.id > last_user.id]
        if later:
            self.store.delete_messages_from(conversation_id, later[0].id)
        yield from self.reply(conversation_id, cancel)

    def edit_and_resend(
        self, conversation_id: int, message_id: int, text: str, cancel: threading.Event | None = None
    ) -> Iterator[TurnEvent]:
        """Change a user message, forget everything after it, and answer again."""
        original = self.store.get_message(message_id)
        if original.role != "user" or original.conversation_id != conversation_id:
            raise PromptError("Only your own messages can be edited.", "Pick one of your messages.")
        images = original.meta.get("images")
        if not text.strip() and not images:
            raise PromptError("The edited message is empty.", "Type something, or cancel the edit.")
        self.store.delete_messages_from(conversation_id, message_id)
        # The pictures stay attached: editing changes the words, not what was shown.
        meta = {"images": images} if images else None
        self.store.add_message(conversation_id, "user", text if text.strip() else IMAGE_ONLY_TEXT, meta=meta)
        yield from self.reply(conversation_id, cancel)

    def _store_marker(self, conversation_id: int, plan: ContextPlan) -> Message:
        # The marker lands after the user's new message (it explains the reply that follows);
        # `context_from` says where the model's view now begins.
        kept_from = max(m.id for m in plan.dropped) + 1
        meta = {"kind": "context", "dropped_ids": [m.id for m in plan.dropped], "context_from": kept_from}
        return self.store.add_message(conversation_id, "marker", describe_drop(plan.dropped), meta=meta)

    def _stream_reply(self, conversation_id: int, plan: ContextPlan, cancel: threading.Event) -> Iterator[TurnEvent]:
        model_id = self.engine.info.model_id
        message = self.store.add_message(conversation_id, "assistant", "", status="streaming", model_id=model_id)
        yield ReplyStarted(message)
        text, last_commit = "", time.monotonic()
        status = "complete"
        try:
            for piece in self.engine.stream(plan.prompt, self.settings.generation, cancel):
                text += piece
                yield TextDelta(message.id, piece)
                if time.monotonic() - last_commit >= COMMIT_INTERVAL_S:
                    self.store.update_message(message.id, content=text)
                    last_commit = time.monotonic()
            stats = self.engine.last_stats
            if stats.finish_reason == "cancelled" or cancel.is_set():
                status = "stopped"
        except EngineCrashed as exc:  # the model's process died: what was written stays, marked interrupted
            crash: dict[str, object] = {"error": str(exc), "engine_crash": exc.signal_name or "exit"}
            self.store.update_message(message.id, content=text, status="interrupted", meta=crash)
            raise
        except Exception as exc:  # keep what was written, say why it stopped, then let the caller report it
            status = "error"
            self.store.update_message(message.id, content=text, status=status, meta={"error": str(exc)})
            raise
        meta = {
            "tokens": stats.completion_tokens,
            "ttft_s": round(stats.ttft_s, 4),
            "tokens_per_s": round(stats.tokens_per_s, 2),
            "finish": stats.finish_reason,
        }
        self.store.update_message(message.id, content=text, status=status, meta=meta)
        final = self.store.get_message(message.id)
        used = stats.prompt_tokens + stats.completion_tokens
        yield ReplyFinished(final, stats, used, plan.n_ctx)


def add_user_message(
    store: Store,
    conversation_id: int | None,
    text: str,
    images: Sequence[ImageSource] = (),
    image_store: ImageStore | None = None,
    reader: TextReader | None = None,
) -> Message:
    """Commit the user's message (creating a conversation if needed) before any model work.

    Attached pictures are checked, stored and read first: a bad one raises ImageError and
    nothing of the message is stored, while the caller still holds its text.
    """
    if not text.strip() and not images:
        raise PromptError("The message is empty.", "Type something to send.")
    attachments = attach(images, image_store, reader)
    meta = {"images": [a.to_meta() for a in attachments]} if attachments else None
    content = text if text.strip() else IMAGE_ONLY_TEXT
    if conversation_id is None:
        conversation_id = store.create_conversation(title=_title_from(text if text.strip() else attachments[0].name)).id
    return store.add_message(conversation_id, "user", content, meta=meta)


def _title_from(text: str) -> str:
    words = " ".join(text.split())
    return words if len(words) <= TITLE_LENGTH else words[: TITLE_LENGTH - 1].rstrip() + "…"
