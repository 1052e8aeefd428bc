"""What the store keeps: search, a restart, closing mid-reply, and sends that fail."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QToolButton
from pytestqt.qtbot import QtBot

from app.core.conversation import ChatMessage
from app.errors import ModelError
from app.runtime import Profile
from app.settings import GenerationSettings
from app.ui.main_window import NOTICE_BACKGROUND
from tests.fakes import FakeEngine
from tests.gui.window_kit import (
    OFFSCREEN_NOISE,
    WAIT_MS,
    StepGate,
    WindowFactory,
    chat_text,
    click_row,
    listed_titles,
    notice_background,
    send_and_finish,
    stored,
    type_and_send,
    wait_idle,
)

pytestmark = pytest.mark.qt_log_ignore(OFFSCREEN_NOISE)


def test_search_finds_a_message_and_opens_its_conversation(qtbot: QtBot, windows: WindowFactory) -> None:
    window = windows(FakeEngine(["Aardvarks dig burrows.", "Zebras have stripes."]))
    send_and_finish(qtbot, window, "tell me about aardvarks")
    first = window.controller.current
    qtbot.keyClick(window.composer.editor, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: window.controller.current is None and "Ask Hearth anything" in chat_text(window))
    send_and_finish(qtbot, window, "and zebras?")
    qtbot.waitUntil(lambda: len(listed_titles(window)) == 2, timeout=WAIT_MS)

    qtbot.keyClick(window.composer.editor, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert window.sidebar.search.hasFocus()
    with qtbot.waitSignal(window.controller.searchResults, timeout=WAIT_MS) as results:
        qtbot.keyClicks(window.sidebar.search, "burrows")
    hits = results.args[0]
    assert [(h.conversation_id, h.title) for h in hits] == [(first, "tell me about aardvarks")]
    titles = listed_titles(window)
    assert len(titles) == 1 and titles[0].startswith("tell me about aardvarks") and "burrows" in titles[0]

    with qtbot.waitSignal(window.controller.conversationOpened, timeout=WAIT_MS):
        click_row(qtbot, window, 0)
    assert window.controller.current == first
    assert "Aardvarks dig burrows." in chat_text(window) and "Zebras" not in chat_text(window)

    with qtbot.waitSignal(window.controller.searchResults, timeout=WAIT_MS) as results:
        window.sidebar.search.setText("nothing-like-this")
    assert results.args[0] == [] and listed_titles(window) == ["No matches"]
    with qtbot.waitSignal(window.controller.conversationsChanged, timeout=WAIT_MS):
        window.sidebar.search.clear()
    assert sorted(listed_titles(window)) == ["and zebras?", "tell me about aardvarks"]


def test_restart_lists_and_reopens_the_conversation(qtbot: QtBot, windows: WindowFactory) -> None:
    window = windows(FakeEngine(["It is **kept**."]))
    send_and_finish(qtbot, window, "will you remember this?")
    qtbot.waitUntil(lambda: listed_titles(window) == ["will you remember this?"], timeout=WAIT_MS)
    windows.close(window)

    again = windows(FakeEngine())
    assert listed_titles(again) == ["will you remember this?"]
    assert again.controller.current is None
    with qtbot.waitSignal(again.controller.conversationOpened, timeout=WAIT_MS):
        click_row(qtbot, again, 0)
    text = chat_text(again)
    assert "will you remember this?" in text and "It is kept." in text
    qtbot.waitUntil(lambda: again.context_meter.value() > 0, timeout=WAIT_MS)


class _StopAwareGate(StepGate):
    """Holds each word like StepGate, but lets go once the reply is stopped — as a real engine,
    busy with its next token, would notice the stop a moment later."""

    def __init__(self) -> None:
        super().__init__()
        self.cancel: threading.Event | None = None

    def wait(self, timeout: float | None = None) -> bool:
        while self.cancel is None or not self.cancel.is_set():
            if super().wait(timeout=0.01):
                return True
        return True


class _StopAwareEngine(FakeEngine):
    def stream(
        self, messages: Sequence[ChatMessage], settings: GenerationSettings, cancel: threading.Event | None = None
    ) -> Iterator[str]:
        assert isinstance(self.gate, _StopAwareGate)
        self.gate.cancel = cancel
        return super().stream(messages, settings, cancel)


def test_closing_mid_reply_keeps_what_was_written(
    qtbot: QtBot, windows: WindowFactory, caplog: pytest.LogCaptureFixture
) -> None:
    gate = _StopAwareGate()
    window = windows(_StopAwareEngine(["part of an answer that never ends"], gate=gate))
    with qtbot.waitSignal(window.controller.replyStarted, timeout=WAIT_MS):
        type_and_send(qtbot, window, "long question")
    gate.allow(3)
    qtbot.waitUntil(lambda: "part of an" in chat_text(window), timeout=WAIT_MS)
    cid = window.controller.current
    assert cid is not None
    window.close()  # while the engine is still holding its next word
    window.close()  # the app closes its window again after the event loop ends: harmless
    windows.close(window)

    profile = Profile.open()
    try:
        reply = profile.store.messages(cid)[-1]
    finally:
        profile.close()
    assert (reply.role, reply.content, reply.status) == ("assistant", "part of an", "stopped")
    # Results that arrive after the close (a refresh, the finished reply) go nowhere, quietly.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_blank_message_is_not_sent(qtbot: QtBot, windows: WindowFactory) -> None:
    window = windows()
    with qtbot.assertNotEmitted(window.controller.busyChanged, wait=100):
        type_and_send(qtbot, window, "   ")
        qtbot.mouseClick(window.composer.send_button, Qt.MouseButton.LeftButton)
    assert window.controller.current is None and listed_titles(window) == []
    assert window.composer.text() == "   "


class _FailingOnceEngine(FakeEngine):
    """Its first reply fails the way a broken model does; later ones work."""

    def __init__(self) -> None:
        super().__init__(["Working again."])
        self.failures = 1

    def stream(
        self, messages: Sequence[ChatMessage], settings: GenerationSettings, cancel: threading.Event | None = None
    ) -> Iterator[str]:
        if self.failures:
            self.failures -= 1
            raise ModelError("The model stopped responding.", "Reload it from Settings › Model.")
        yield from super().stream(messages, settings, cancel)


def test_engine_failure_shows_the_error_and_keeps_the_message(qtbot: QtBot, windows: WindowFactory) -> None:
    window = windows(_FailingOnceEngine())
    with qtbot.waitSignal(window.controller.notice, timeout=WAIT_MS) as notice:
        type_and_send(qtbot, window, "are you there?")
    wait_idle(qtbot, window)
    assert notice.args == ["The model stopped responding.", "Reload it from Settings › Model."]
    bar = window.message_bar
    assert bar.isVisible() and notice_background(window) == NOTICE_BACKGROUND
    assert "The model stopped responding." in bar.label.text() and "Reload it from Settings" in bar.label.text()
    assert [(m.role, m.content, m.status) for m in stored(window)] == [
        ("user", "are you there?", "complete"),
        ("assistant", "", "error"),
    ]
    qtbot.waitUntil(lambda: "are you there?" in chat_text(window) and "failed" in chat_text(window), timeout=WAIT_MS)

    # The window carries on: dismiss the notice, regenerate, and the reply arrives.
    qtbot.mouseClick(bar.findChild(QToolButton), Qt.MouseButton.LeftButton)
    assert not bar.isVisible()
    with qtbot.waitSignal(window.controller.replyFinished, timeout=WAIT_MS):
        qtbot.keyClick(window.composer.editor, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
    wait_idle(qtbot, window)
    assert [m.content for m in stored(window)] == ["are you there?", "Working again."]


def test_store_failure_puts_the_text_back(qtbot: QtBot, windows: WindowFactory) -> None:
    window = windows()
    profile = window.controller.profile
    assert profile is not None
    profile.store.close()  # the database goes away under the window
    with qtbot.waitSignal(window.controller.sendFailed, timeout=WAIT_MS):
        type_and_send(qtbot, window, "do not lose me")
    wait_idle(qtbot, window)
    assert window.composer.text() == "do not lose me"
    assert window.message_bar.isVisible() and "database is closed" in window.message_bar.label.text()
