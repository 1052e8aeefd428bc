"""Opening a long conversation renders only the recent messages; older ones come on request."""

from __future__ import annotations

from PySide6.QtCore import QUrl
from pytestqt.qtbot import QtBot

from app.core.conversation import Message
from app.ui.chat_view import ACTION_SCHEME, RECENT, ChatView


def conversation(n: int) -> list[Message]:
    roles = ("user", "assistant")
    return [Message(i + 1, 1, roles[i % 2], f"message number {i + 1}") for i in range(n)]  # type: ignore[arg-type]


def test_long_conversation_opens_with_the_recent_messages_and_a_link(qtbot: QtBot) -> None:
    view = ChatView()
    qtbot.addWidget(view)
    messages = conversation(RECENT + 40)
    view.show_messages(messages)
    text = view.toPlainText()
    assert f"message number {len(messages)}\n" in text + "\n"
    assert "message number 1\n" not in text + "\n", "the oldest message is not rendered yet"
    assert "Show 40 earlier messages" in text
    # Older messages can still be acted on (e.g. edited) by id.
    assert view.message(1) is not None and view.message(1).content == "message number 1"

    with qtbot.waitSignal(view.linkRequested, timeout=1000):
        view.anchorClicked.emit(QUrl(f"{ACTION_SCHEME}:earlier:40"))
    text = view.toPlainText()
    assert "message number 1\n" in text and "earlier messages" not in text


def test_short_conversation_has_no_link(qtbot: QtBot) -> None:
    view = ChatView()
    qtbot.addWidget(view)
    view.show_messages(conversation(4))
    assert "earlier message" not in view.toPlainText()


def test_a_turn_taken_back_leaves_the_view(qtbot: QtBot) -> None:
    """A spoken question and the answer begun to it are taken back when the user goes on speaking."""
    view = ChatView()
    qtbot.addWidget(view)
    view.show_messages(conversation(6))
    view.remove_messages_from(5)
    text = view.toPlainText()
    assert "message number 4" in text and "message number 5" not in text and "message number 6" not in text
    assert view.message(5) is None and view.message(4) is not None
    view.append_message(Message(7, 1, "user", "message number 7"))
    assert "message number 7" in view.toPlainText()
