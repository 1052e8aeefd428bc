"""Building the real main window around a FakeEngine, and small steps tests share.

Everything here is the real thing — MainWindow, ChatController, Runner, Profile and its SQLite
store in the test's HEARTH_HOME — except the engine, which is `tests.fakes.FakeEngine`.
"""

from __future__ import annotations

import threading

from PySide6.QtCore import QEvent, QPoint, Qt
from PySide6.QtWidgets import QApplication, QListWidgetItem
from pytestqt.qtbot import QtBot

from app.core.conversation import Message
from app.runtime import Profile
from app.ui.chat_controller import ChatController, EngineFactory
from app.ui.main_window import MainWindow
from app.ui.tasks import Runner
from tests.fakes import FakeEngine

WAIT_MS = 5000
# Showing a window on the offscreen platform warns once; it says nothing about Hearth.
OFFSCREEN_NOISE = "does not support propagateSizeHints"


class StepGate(threading.Event):
    """An Event, as FakeEngine's `gate`, that lets the reply's words through one at a time.

    FakeEngine waits on its gate before each word; `allow(n)` lets n more through and `set()`
    opens the gate for good, so a test can hold a reply at an exact point part-way.
    """

    OPEN = 1_000_000

    def __init__(self) -> None:
        super().__init__()
        self._tokens = threading.Semaphore(0)

    def allow(self, n: int = 1) -> None:
        self._tokens.release(n)

    def set(self) -> None:
        super().set()
        self._tokens.release(self.OPEN)

    def wait(self, timeout: float | None = None) -> bool:
        return self._tokens.acquire(timeout=timeout)


class WindowFactory:
    """Builds windows the way app/ui/app.py does, and closes whatever is left at teardown."""

    def __init__(self, qtbot: QtBot) -> None:
        self.qtbot = qtbot
        self.open: list[MainWindow] = []
        self.engines: list[FakeEngine] = []

    def __call__(self, engine: FakeEngine | None = None, factory: EngineFactory | None = None) -> MainWindow:
        """A window around `engine` (a FakeEngine by default), or around what `factory` loads."""
        if factory is None:
            fake = engine if engine is not None else FakeEngine()
            self.engines.append(fake)
            factory = lambda profile, progress: fake  # noqa: E731
        controller = ChatController(Runner(), Profile.open, factory)
        window = MainWindow(controller)
        self.open.append(window)
        window.show()
        self.qtbot.waitExposed(window)
        window.activateWindow()
        with self.qtbot.waitSignal(controller.engineReady, timeout=WAIT_MS):
            controller.start()
        self.qtbot.waitUntil(lambda: window.sidebar.list.count() > 0 or _listed_nothing(window), timeout=WAIT_MS)
        return window

    def close(self, window: MainWindow) -> None:
        """Close like the user would; the runner drains, then queued results are delivered."""
        for engine in self.engines:
            if isinstance(engine.gate, StepGate):
                engine.gate.set()  # a held reply would otherwise keep shutdown waiting
        window.close()
        self.open.remove(window)
        QApplication.processEvents()
        window.deleteLater()
        QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)

    def close_all(self) -> None:
        for window in list(self.open):
            self.close(window)


def _listed_nothing(window: MainWindow) -> bool:
    profile = window.controller.profile
    return profile is not None and not profile.store.list_conversations()


def type_and_send(qtbot: QtBot, window: MainWindow, text: str) -> None:
    """Type `text` in the composer and press Enter (Shift+Enter for each newline)."""
    editor = window.composer.editor
    editor.setFocus()
    for n, line in enumerate(text.split("\n")):
        if n:
            qtbot.keyClick(editor, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
        qtbot.keyClicks(editor, line)
    qtbot.keyClick(editor, Qt.Key.Key_Return)


def send_and_finish(qtbot: QtBot, window: MainWindow, text: str) -> Message:
    """Send `text` and wait until the reply is finished and the window idle again."""
    with qtbot.waitSignal(window.controller.replyFinished, timeout=WAIT_MS) as finished:
        type_and_send(qtbot, window, text)
    wait_idle(qtbot, window)
    message = finished.args[0]
    assert isinstance(message, Message)
    return message


def wait_idle(qtbot: QtBot, window: MainWindow) -> None:
    qtbot.waitUntil(lambda: not window.controller.busy and window.composer.send_button.isVisible(), timeout=WAIT_MS)


def stored(window: MainWindow, conversation_id: int | None = None) -> list[Message]:
    """The messages the store holds for a conversation (the open one by default)."""
    profile = window.controller.profile
    cid = conversation_id if conversation_id is not None else window.controller.current
    assert profile is not None and cid is not None
    return profile.store.messages(cid)


def listed_titles(window: MainWindow) -> list[str]:
    items: list[QListWidgetItem] = [window.sidebar.list.item(row) for row in range(window.sidebar.list.count())]
    return [item.text() for item in items]


def click_row(qtbot: QtBot, window: MainWindow, row: int) -> None:
    """Click a row of the sidebar's conversation list, as the user would."""
    listing = window.sidebar.list
    qtbot.mouseClick(
        listing.viewport(), Qt.MouseButton.LeftButton, pos=listing.visualItemRect(listing.item(row)).center()
    )


def chat_text(window: MainWindow) -> str:
    return window.chat.toPlainText()


def notice_background(window: MainWindow) -> str:
    """The colour the message bar is drawn in as part of the window (grabbing the bar alone
    fills its background even when the window would not)."""
    inside = window.message_bar.mapTo(window, QPoint(2, 2))
    return window.grab().toImage().pixelColor(inside).name()
