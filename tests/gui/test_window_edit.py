"""Changing the past: regenerate the latest reply, or edit a message and resend it."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt, QUrl
from pytestqt.qtbot import QtBot

from app.ui.main_window import MainWindow
from tests.fakes import FakeEngine
from tests.gui.window_kit import (
    OFFSCREEN_NOISE,
    WAIT_MS,
    StepGate,
    WindowFactory,
    chat_text,
    send_and_finish,
    stored,
    wait_idle,
)

pytestmark = pytest.mark.qt_log_ignore(OFFSCREEN_NOISE)


def _click_action(window: MainWindow, action: str, message_id: int) -> None:
    """What a click on one of the chat's own links does: the browser reports the anchor."""
    window.chat.anchorClicked.emit(QUrl(f"hearth-action:{action}:{message_id}"))


def _roles_and_text(window: MainWindow) -> list[tuple[str, str, str]]:
    return [(m.role, m.content, m.status) for m in stored(window)]


@pytest.mark.parametrize("how", ["link", "ctrl-r"])
def test_regenerate_replaces_the_latest_reply(qtbot: QtBot, windows: WindowFactory, how: str) -> None:
    gate = StepGate()
    window = windows(FakeEngine(["First answer.", "Second answer.", "Third answer, streamed slowly."], gate=gate))
    gate.allow(4)  # the first two replies, two words each
    send_and_finish(qtbot, window, "opening question")
    old = send_and_finish(qtbot, window, "follow-up question")
    # Only the newest reply offers Regenerate.
    assert chat_text(window).count("Regenerate") == 1

    with qtbot.waitSignal(window.controller.replyStarted, timeout=WAIT_MS):
        if how == "link":
            _click_action(window, "regenerate", old.id)
        else:
            qtbot.keyClick(window.composer.editor, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
    gate.allow(2)
    qtbot.waitUntil(lambda: "Third answer," in chat_text(window), timeout=WAIT_MS)
    text = chat_text(window)
    assert "Second answer." not in text and "writing…" in text and "Regenerate" not in text
    assert text.count("follow-up question") == 1

    with qtbot.waitSignal(window.controller.replyFinished, timeout=WAIT_MS) as finished:
        gate.set()
    wait_idle(qtbot, window)

    assert finished.args[0].content == "Third answer, streamed slowly."
    assert _roles_and_text(window) == [
        ("user", "opening question", "complete"),
        ("assistant", "First answer.", "complete"),
        ("user", "follow-up question", "complete"),
        ("assistant", "Third answer, streamed slowly.", "complete"),
    ]
    text = chat_text(window)
    assert "Second answer." not in text and "First answer." in text
    assert text.count("follow-up question") == 1 and text.count("streamed slowly.") == 1
    assert text.count("Regenerate") == 1 and "writing…" not in text


def test_edit_and_resend_replaces_later_messages(qtbot: QtBot, windows: WindowFactory) -> None:
    window = windows(FakeEngine(["Paris.", "Berlin.", "Rome, after the edit."]))
    send_and_finish(qtbot, window, "capital of France?")
    send_and_finish(qtbot, window, "capital of Germany?")
    first_user = stored(window)[0]

    _click_action(window, "edit", first_user.id)
    composer = window.composer
    assert composer.editing_id == first_user.id
    assert composer.text() == "capital of France?"
    assert composer.edit_banner.isVisible()

    composer.editor.selectAll()
    qtbot.keyClicks(composer.editor, "capital of Italy?")
    with qtbot.waitSignal(window.controller.replyFinished, timeout=WAIT_MS):
        qtbot.keyClick(composer.editor, Qt.Key.Key_Return)
    wait_idle(qtbot, window)

    assert _roles_and_text(window) == [
        ("user", "capital of Italy?", "complete"),
        ("assistant", "Rome, after the edit.", "complete"),
    ]
    qtbot.waitUntil(lambda: "Rome, after the edit." in chat_text(window), timeout=WAIT_MS)
    text = chat_text(window)
    for gone in ("France", "Germany", "Paris", "Berlin"):
        assert gone not in text
    assert text.count("Rome, after the edit.") == 1
    assert composer.editing_id is None and not composer.edit_banner.isVisible()
    assert composer.text() == ""


def test_escape_cancels_an_edit(qtbot: QtBot, windows: WindowFactory) -> None:
    window = windows()
    send_and_finish(qtbot, window, "keep me")
    _click_action(window, "edit", stored(window)[0].id)
    assert window.composer.editing_id is not None
    qtbot.keyClick(window.composer.editor, Qt.Key.Key_Escape)
    assert window.composer.editing_id is None and not window.composer.edit_banner.isVisible()
    assert window.composer.text() == ""
    assert [m.content for m in stored(window)] == ["keep me", "Fake reply."]
