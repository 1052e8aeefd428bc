"""The conversation, rendered: every message as safe markdown, the streaming reply updated in place.

Finished messages are rendered once. While a reply streams, only its own block at the end of
the document is replaced, at most every `REFRESH_MS`, so drawing costs the same at turn 200
as at turn 1 and the event loop never stalls on a long conversation.

Links inside messages use the ``hearth-action:`` scheme for Hearth's own buttons (edit, copy,
regenerate, a picture's thumbnail, "What was read"); every other link goes through the
browser's confirm-before-opening path. Pictures are shown from the small copies in the data
folder's ``images/thumbs`` (see `app.core.thumbnails`), never decoded full size here.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QEvent, QTimer, QUrl, Signal
from PySide6.QtGui import QGuiApplication, QHelpEvent, QImage, QPalette, QTextCursor
from PySide6.QtWidgets import QToolTip, QWidget

from app.core.attachments import IMAGE_ONLY_TEXT, Attachment, attachments_of
from app.core.conversation import Message
from app.core.images import ImageStore
from app.core.thumbnails import Thumbnails
from app.ui.chat_pictures import (
    ACTION_SCHEME,
    fit_thumbnail,
    is_inside,
    parse_picture_link,
    picture_tip,
    pictures_html,
)
from app.ui.markdown import render_markdown
from app.ui.safe_browser import SafeTextBrowser, confirm_and_open

REFRESH_MS = 40
RECENT = 60  # messages rendered when a conversation opens; older ones on request
ACTION_SEPARATOR = " · "
REGENERATE_HREF = f"{ACTION_SCHEME}:regenerate:"

ROLE_LABEL = {"user": "You", "assistant": "Hearth"}
STATUS_NOTE = {
    "stopped": "stopped",
    "interrupted": "interrupted — Hearth was closed while writing this",
    "error": "failed",
    "streaming": "writing…",
}
# A spoken reply the user talked over (or stopped) keeps only what was read aloud.
BARGE_IN_NOTE = "interrupted — you spoke; kept as far as you heard it"
STOPPED_SPEAKING_NOTE = "stopped — kept as far as you heard it"
BARGE_IN_EMPTY_NOTE = "interrupted before any of it was read aloud"
SPOKEN_NOTE = "spoken"
ENGINE_CRASH_NOTE = "interrupted — the model's process stopped; Hearth started it again"


def is_dark(widget: QWidget) -> bool:
    return widget.palette().color(QPalette.ColorRole.Base).lightness() < 128


class ChatView(SafeTextBrowser):
    """Signals `actionRequested(action, message_id)` for edit / copy / regenerate links, and
    `pictureRequested(message_id, index)` when a thumbnail is clicked."""

    actionRequested = Signal(str, int)
    pictureRequested = Signal(int, int)

    def __init__(self, parent: QWidget | None = None, allowed_roots: Sequence = ()) -> None:  # type: ignore[type-arg]
        super().__init__(parent, allowed_roots)
        self.setAccessibleName("Conversation")
        self.setAccessibleDescription("The messages of this conversation. Tab moves between links and buttons.")
        self._messages: list[Message] = []  # the ones rendered
        self._all: list[Message] = []  # the whole conversation
        self._code: dict[str, str] = {}
        self._stream: Message | None = None
        self._stream_text = ""
        self._stream_start = -1  # document position where the streaming reply's block begins
        self._tail_start = -1  # document position where the last message's block begins (-1: unknown)
        self._dirty = False
        self._thumbnails: Thumbnails | None = None
        self._reading: set[int] = set()  # messages whose "What was read" is open
        self._timer = QTimer(self)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self._refresh_stream)
        self.copyRequested.connect(self._copy)
        self.linkRequested.connect(self._on_link)
        self.show_messages([])  # the welcome text, until a conversation opens

    # -- whole conversation ---------------------------------------------------------------

    def show_messages(self, messages: Sequence[Message], everything: bool = False) -> None:
        """Show a conversation; a reply still being written at its end goes on streaming.

        Only the latest `RECENT` messages are rendered unless `everything` is asked for (the
        "show earlier messages" link does), so opening a long conversation costs the GUI
        thread the same as opening a short one.
        """
        self._timer.stop()
        self._stream, self._stream_start = None, -1
        live = messages[-1] if messages and messages[-1].status == "streaming" else None
        self._all = list(messages[:-1] if live else messages)
        hidden = 0 if everything else max(0, len(self._all) - RECENT)
        self._messages = self._all[hidden:]
        self._code.clear()
        last_assistant = next((m.id for m in reversed(self._messages) if m.role == "assistant"), None)
        blocks = [self._block(m, m.id == last_assistant) for m in self._messages]
        if hidden:
            blocks.insert(0, self._earlier_link(hidden))
        self.setHtml(self._page(blocks) if blocks or live is None else "")
        self._tail_start = -1
        if live is not None:
            self.begin_reply(live)
        self._scroll_to_end()

    def set_picture_folder(self, folder: Path) -> None:
        """Where the pictures of messages are stored (the data folder's ``images``): allowed, and shown."""
        self._thumbnails = Thumbnails(ImageStore(folder))
        if not any(is_inside(QUrl.fromLocalFile(str(folder)), root) for root in self.allowed_roots):
            self.set_allowed_roots([*self.allowed_roots, folder])

    def attachment(self, message_id: int, index: int) -> Attachment | None:
        message = self.message(message_id)
        attachments = attachments_of(message) if message is not None else []
        return attachments[index] if 0 <= index < len(attachments) else None

    def message(self, message_id: int) -> Message | None:
        """A message of this conversation, by id (also one not rendered yet)."""
        return next((m for m in reversed(self._all) if m.id == message_id), None)

    def _earlier_link(self, hidden: int) -> str:
        plural = "s" if hidden != 1 else ""
        return (
            f"<p align='center'><a href='{ACTION_SCHEME}:earlier:{hidden}'>"
            f"Show {hidden} earlier message{plural}</a></p>"
        )

    def append_message(self, message: Message) -> None:
        self._all.append(message)
        self._messages.append(message)
        self._insert_at_end(self._block(message, False))

    def remove_messages_from(self, message_id: int) -> None:
        """Forget the messages from `message_id` on (a spoken turn taken back) and show the rest."""
        kept = [m for m in self._all if m.id < message_id]
        if len(kept) != len(self._all) or (self._stream is not None and self._stream.id >= message_id):
            self.show_messages(kept, everything=len(self._messages) >= len(self._all))

    def update_message(self, message: Message) -> None:
        """Show the stored version of a message already on screen (a spoken reply cut short).

        The newest message is replaced in place; an older one re-renders the conversation.
        """
        index = next((n for n, m in enumerate(self._all) if m.id == message.id), None)
        if index is None:
            return
        self._all[index] = message
        self._messages = [message if m.id == message.id else m for m in self._messages]
        last = self._messages[-1] if self._messages else None
        if last is not None and last.id == message.id and self._stream is None and self._tail_start >= 0:
            latest_reply = message.role == "assistant"
            self._stream_start = self._tail_start
            self._replace_tail(self._block(message, latest_reply))
            self._stream_start = -1
        elif self._stream is None:
            self.show_messages(self._all, everything=len(self._messages) >= len(self._all))

    # -- streaming reply ------------------------------------------------------------------

    def begin_reply(self, message: Message) -> None:
        self._drop_regenerate_link()
        self._stream, self._stream_text = message, message.content
        self._stream_start = self._end_position()
        self._insert_at_end(self._block(message, False))
        self._timer.start()

    def append_delta(self, text: str) -> None:
        self._stream_text += text
        self._dirty = True

    def finish_reply(self, message: Message) -> None:
        """Replace the streamed block with the stored message and its actions."""
        self._timer.stop()
        self._stream = None
        self._all.append(message)
        self._messages.append(message)
        if self._stream_start < 0:  # this page was shown before the reply began
            self._insert_at_end(self._block(message, True))
        else:
            self._replace_tail(self._block(message, True))
        self._stream_start = -1

    @property
    def streaming_text(self) -> str:
        return self._stream_text

    def _refresh_stream(self) -> None:
        if not self._dirty or self._stream is None:
            return
        self._dirty = False
        shown = Message(self._stream.id, self._stream.conversation_id, "assistant", self._stream_text, "streaming")
        self._replace_tail(self._block(shown, False))

    # -- document editing -----------------------------------------------------------------

    def _end_position(self) -> int:
        cursor = self.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        return cursor.position()

    def _insert_at_end(self, block_html: str) -> None:
        cursor = QTextCursor(self.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        self._tail_start = cursor.position()
        cursor.insertHtml(block_html)
        self._scroll_to_end()

    def _replace_tail(self, block_html: str) -> None:
        if self._stream_start < 0:
            return
        bar = self.verticalScrollBar()
        following = bar.value() >= bar.maximum() - 4
        cursor = QTextCursor(self.document())
        cursor.setPosition(self._stream_start)
        cursor.movePosition(QTextCursor.MoveOperation.End, QTextCursor.MoveMode.KeepAnchor)
        cursor.insertHtml(block_html)
        if following:
            self._scroll_to_end()

    def _drop_regenerate_link(self) -> None:
        """Only the newest reply offers Regenerate: take the link off the reply before it.

        Blocks are only ever added or replaced at the end, so the link to remove is the last
        one in the document; walking back from the end finds it within a message or two.
        """
        block = self.document().lastBlock()
        while block.isValid():
            fragments = block.begin()
            while not fragments.atEnd():
                fragment = fragments.fragment()
                if fragment.charFormat().anchorHref().startswith(REGENERATE_HREF):
                    self._remove_link(fragment.position(), fragment.length())
                    return
                fragments += 1
            block = block.previous()

    def _remove_link(self, start: int, length: int) -> None:
        cursor = QTextCursor(self.document())
        cursor.setPosition(max(0, start - len(ACTION_SEPARATOR)))
        cursor.setPosition(start, QTextCursor.MoveMode.KeepAnchor)
        if cursor.selectedText() != ACTION_SEPARATOR:
            cursor.setPosition(start)
        cursor.setPosition(start + length, QTextCursor.MoveMode.KeepAnchor)
        cursor.removeSelectedText()

    def _scroll_to_end(self) -> None:
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())

    # -- rendering ------------------------------------------------------------------------

    def _page(self, blocks: Sequence[str]) -> str:
        return "".join(blocks) or self._empty_state()

    def _empty_state(self) -> str:
        return (
            "<p align='center' style='color:gray; margin-top:80px'><big>Ask Hearth anything.</big><br>"
            "It runs on this computer; nothing you type leaves it.</p>"
        )

    def _block(self, message: Message, latest_reply: bool) -> str:
        if message.role == "marker":
            return f"<p style='color:#b0761a; margin:10px 4px'>⟡ {html.escape(message.content)}</p>"
        dark = is_dark(self)
        attachments = attachments_of(message) if message.role == "user" else []
        text = "" if attachments and message.content == IMAGE_ONLY_TEXT else message.content
        rendered = render_markdown(text or " ", dark=dark, copy_prefix=f"m{message.id}-")
        pictures = pictures_html(message.id, attachments, self._thumbnails, message.id in self._reading)
        for n, code in enumerate(rendered.code_blocks):
            self._code[f"m{message.id}-{n}"] = code
        background = _background(message.role, dark)
        note = _note(message)
        head = f"<b>{ROLE_LABEL.get(message.role, message.role)}</b>"
        if note:
            head += f" <span style='color:gray'>· {html.escape(note)}</span>"
        actions = self._actions(message, latest_reply) if message.status != "streaming" else ""
        return (
            f"<table width='100%' cellspacing='0' cellpadding='10' style='margin-top:6px; margin-bottom:6px'>"
            f"<tr><td bgcolor='{background}'>{head}{rendered.html if text else ''}{pictures}{actions}</td></tr></table>"
        )

    def _actions(self, message: Message, latest_reply: bool) -> str:
        links = [f"<a href='{ACTION_SCHEME}:copy:{message.id}'>Copy</a>"]
        if message.role == "user":
            links.append(f"<a href='{ACTION_SCHEME}:edit:{message.id}'>Edit</a>")
        if message.role == "assistant" and latest_reply:
            links.append(f"<a href='{ACTION_SCHEME}:regenerate:{message.id}'>Regenerate</a>")
        return "<p style='font-size:small'>" + ACTION_SEPARATOR.join(links) + "</p>"

    # -- clicks ---------------------------------------------------------------------------

    def _copy(self, block_id: str) -> None:
        code = self._code.get(block_id)
        if code is not None:
            QGuiApplication.clipboard().setText(code)

    def _on_link(self, url: QUrl) -> None:
        if url.scheme() == ACTION_SCHEME:
            action, _, ident = url.path().partition(":")
            if action == "picture":
                target = parse_picture_link(ident)
                if target is not None:
                    self.pictureRequested.emit(*target)
            elif ident.isdigit():
                self._do_action(action, int(ident))
            return
        confirm_and_open(self, url)

    def _do_action(self, action: str, message_id: int) -> None:
        if action == "earlier":
            live = [self._stream] if self._stream is not None else []
            text = self._stream_text
            self.show_messages(self._all + live, everything=True)
            self._stream_text = text if live else self._stream_text
            return
        if action == "read":
            self._reading ^= {message_id}
            self._render_again()
            return
        if action == "copy":
            message = self.message(message_id)
            if message is not None:
                QGuiApplication.clipboard().setText(message.content)
            return
        self.actionRequested.emit(action, message_id)

    # -- pictures -------------------------------------------------------------------------

    def _render_again(self) -> None:
        """Render the conversation again where the reader is (a reply being written goes on)."""
        bar = self.verticalScrollBar()
        position, following = bar.value(), bar.value() >= bar.maximum() - 4
        live = [replace(self._stream, content=self._stream_text)] if self._stream is not None else []
        self.show_messages(self._all + live, everything=len(self._messages) >= len(self._all))
        if not following:
            bar.setValue(position)

    def loadResource(self, resource_type: int, url: QUrl | str) -> object:  # noqa: N802 - Qt override
        result = super().loadResource(resource_type, url)
        thumbnails = getattr(self, "_thumbnails", None)  # None too while the base class is set up
        if isinstance(result, QImage) and thumbnails is not None and is_inside(QUrl(url), thumbnails.folder):
            return fit_thumbnail(result, self.devicePixelRatioF())
        return result

    def viewportEvent(self, event: QEvent) -> bool:  # noqa: N802 - Qt override
        if event.type() == QEvent.Type.ToolTip and isinstance(event, QHelpEvent):
            tip = self._picture_tip(self.anchorAt(event.pos()))
            if tip:
                QToolTip.showText(event.globalPos(), tip, self.viewport())
                return True
        return super().viewportEvent(event)

    def _picture_tip(self, anchor: str) -> str:
        prefix = f"{ACTION_SCHEME}:picture:"
        target = parse_picture_link(anchor[len(prefix) :]) if anchor.startswith(prefix) else None
        attachment = self.attachment(*target) if target is not None else None
        return picture_tip(attachment) if attachment is not None else ""


def _note(message: Message) -> str:
    """The grey words after the sender's name: how the message ended, or that it was spoken."""
    if message.status == "interrupted" and message.meta.get("engine_crash"):
        return ENGINE_CRASH_NOTE
    if message.status == "interrupted" and message.meta.get("stopped_by"):
        if not message.content.strip():
            return BARGE_IN_EMPTY_NOTE
        return BARGE_IN_NOTE if message.meta["stopped_by"] == "speech" else STOPPED_SPEAKING_NOTE
    note = STATUS_NOTE.get(message.status, "")
    if message.role == "user" and message.meta.get("spoken"):
        return f"{SPOKEN_NOTE} · {note}" if note else SPOKEN_NOTE
    return note


def _background(role: str, dark: bool) -> str:
    if role == "user":
        return "#2b3440" if dark else "#eef3fb"
    return "#23262b" if dark else "#fafafa"
