"""The main window's everyday loop: type, watch the reply stream, stop it."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import pytest
from PySide6.QtCore import Qt, QTimer
from pytestqt.qtbot import QtBot

from app.core.conversation import ChatMessage
from app.settings import GenerationSettings
from app.ui.chat_view import REFRESH_MS
from tests.fakes import FakeEngine
from tests.gui.window_kit import (
    OFFSCREEN_NOISE,
    WAIT_MS,
    StepGate,
    WindowFactory,
    chat_text,
    listed_titles,
    send_and_finish,
    stored,
    type_and_send,
    wait_idle,
)

pytestmark = pytest.mark.qt_log_ignore(OFFSCREEN_NOISE)


def test_send_streams_reply_and_lists_conversation(qtbot: QtBot, windows: WindowFactory) -> None:
    gate = StepGate()
    engine = FakeEngine(["Hello there, nice to meet you."], gate=gate)
    window = windows(engine)
    assert "Ask Hearth anything." in chat_text(window)
    assert window.composer.send_button.isVisible() and not window.composer.stop_button.isVisible()

    with qtbot.waitSignal(window.controller.replyStarted, timeout=WAIT_MS):
        type_and_send(qtbot, window, "What is a hearth?")
    assert "What is a hearth?" in chat_text(window)
    assert window.composer.text() == ""
    assert window.composer.stop_button.isVisible() and not window.composer.send_button.isVisible()

    gate.allow(2)
    qtbot.waitUntil(lambda: "Hello there," in chat_text(window), timeout=WAIT_MS)
    assert "nice to meet you." not in chat_text(window)
    assert "writing…" in chat_text(window)

    with qtbot.waitSignal(window.controller.replyFinished, timeout=WAIT_MS):
        gate.set()
    wait_idle(qtbot, window)
    text = chat_text(window)
    assert "Hello there, nice to meet you." in text and "writing…" not in text
    assert "Regenerate" in text

    qtbot.waitUntil(lambda: listed_titles(window) == ["What is a hearth?"], timeout=WAIT_MS)
    assert window.sidebar.selected_id() == window.controller.current
    assert [(m.role, m.content, m.status) for m in stored(window)] == [
        ("user", "What is a hearth?", "complete"),
        ("assistant", "Hello there, nice to meet you.", "complete"),
    ]
    meter = window.context_meter
    assert meter.value() > 0 and meter.maximum() == engine.info.n_ctx


def test_shift_enter_adds_a_line_instead_of_sending(qtbot: QtBot, windows: WindowFactory) -> None:
    window = windows()
    editor = window.composer.editor
    editor.setFocus()
    qtbot.keyClicks(editor, "first line")
    with qtbot.assertNotEmitted(window.composer.sendRequested):
        qtbot.keyClick(editor, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
        qtbot.keyClicks(editor, "second line")
    assert window.composer.text() == "first line\nsecond line"
    assert window.controller.current is None

    with qtbot.waitSignal(window.controller.replyFinished, timeout=WAIT_MS):
        qtbot.keyClick(editor, Qt.Key.Key_Return)
    assert stored(window)[0].content == "first line\nsecond line"


def _stop_mid_reply(qtbot: QtBot, window: WindowFactory, press: str) -> None:
    gate = StepGate()
    win = window(FakeEngine(["one two three four five six"], gate=gate))
    with qtbot.waitSignal(win.controller.replyStarted, timeout=WAIT_MS):
        type_and_send(qtbot, win, "count please")
    gate.allow(2)
    qtbot.waitUntil(lambda: "one two" in chat_text(win), timeout=WAIT_MS)

    with qtbot.waitSignal(win.controller.replyFinished, timeout=WAIT_MS) as finished:
        if press == "escape":
            qtbot.keyClick(win.composer.editor, Qt.Key.Key_Escape)
        else:
            qtbot.mouseClick(win.composer.stop_button, Qt.MouseButton.LeftButton)
        gate.set()  # the engine notices the stop at its next token
    wait_idle(qtbot, win)

    assert finished.args[0].status == "stopped"
    reply = stored(win)[-1]
    assert (reply.role, reply.content, reply.status) == ("assistant", "one two", "stopped")
    text = chat_text(win)
    assert "Hearth · stopped" in text and "three" not in text
    assert win.composer.send_button.isVisible() and not win.composer.stop_button.isVisible()


def test_escape_stops_the_reply(qtbot: QtBot, windows: WindowFactory) -> None:
    _stop_mid_reply(qtbot, windows, "escape")


def test_stop_button_stops_the_reply(qtbot: QtBot, windows: WindowFactory) -> None:
    _stop_mid_reply(qtbot, windows, "button")


class _ThreadNotingEngine(FakeEngine):
    """Remembers which thread produced the tokens."""

    def __init__(self, replies: Sequence[str], gate: StepGate) -> None:
        super().__init__(replies, gate=gate)
        self.threads: set[str] = set()

    def stream(
        self, messages: Sequence[ChatMessage], settings: GenerationSettings, cancel: threading.Event | None = None
    ) -> Iterator[str]:
        for piece in super().stream(messages, settings, cancel):
            self.threads.add(threading.current_thread().name)
            yield piece


def test_gui_thread_keeps_running_while_a_reply_is_held(qtbot: QtBot, windows: WindowFactory) -> None:
    gate = StepGate()
    engine = _ThreadNotingEngine(["slow and steady"], gate=gate)
    window = windows(engine)
    with qtbot.waitSignal(window.controller.replyStarted, timeout=WAIT_MS):
        type_and_send(qtbot, window, "take your time")
    gate.allow(1)
    qtbot.waitUntil(lambda: "slow" in chat_text(window), timeout=WAIT_MS)

    # The engine is now blocked inside its stream; timers and input still get through.
    ticks: list[int] = []
    timer = QTimer()
    timer.setInterval(REFRESH_MS)
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start()
    qtbot.waitUntil(lambda: len(ticks) >= 3, timeout=WAIT_MS)
    timer.stop()
    qtbot.keyClicks(window.composer.editor, "typing meanwhile")
    assert window.composer.text() == "typing meanwhile"
    assert window.controller.busy

    gate.set()
    wait_idle(qtbot, window)
    assert engine.threads and all(name.startswith("hearth-llm") for name in engine.threads)
    assert threading.current_thread().name not in engine.threads


def test_switching_away_and_back_mid_reply(qtbot: QtBot, windows: WindowFactory) -> None:
    gate = StepGate()
    window = windows(FakeEngine(["Earlier reply.", "A reply that keeps going while you look elsewhere."], gate=gate))
    gate.allow(2)
    send_and_finish(qtbot, window, "first conversation")
    first = window.controller.current
    with qtbot.waitSignal(window.controller.conversationOpened, timeout=WAIT_MS):
        window.new_action.trigger()
    with qtbot.waitSignal(window.controller.replyStarted, timeout=WAIT_MS):
        type_and_send(qtbot, window, "second conversation")
    second = window.controller.current
    gate.allow(3)
    qtbot.waitUntil(lambda: "A reply that" in chat_text(window), timeout=WAIT_MS)

    with qtbot.waitSignal(window.controller.conversationOpened, timeout=WAIT_MS):
        window.controller.open_conversation(first)
    assert "Earlier reply." in chat_text(window)
    with qtbot.waitSignal(window.controller.conversationOpened, timeout=WAIT_MS):
        window.controller.open_conversation(second)
    assert "A reply that" in chat_text(window)  # the words so far, though the store has none yet
    gate.allow(2)  # and it keeps streaming in
    qtbot.waitUntil(lambda: "A reply that keeps going" in chat_text(window), timeout=WAIT_MS)
    assert "writing…" in chat_text(window)

    with qtbot.waitSignal(window.controller.replyFinished, timeout=WAIT_MS):
        gate.set()
    wait_idle(qtbot, window)
    text = chat_text(window)
    assert text.count("A reply that keeps going while you look elsewhere.") == 1
    assert text.count("second conversation") == 1 and "writing…" not in text and "Earlier" not in text
    assert stored(window)[-1].status == "complete"
