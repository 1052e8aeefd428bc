"""Every control has a name a screen reader can say, and the keyboard reaches every part."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QAccessible
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QLineEdit,
    QListWidget,
    QPlainTextEdit,
    QProgressBar,
    QTextEdit,
    QWidget,
)
from pytestqt.qtbot import QtBot

from app.ui.main_window import MainWindow
from app.ui.settings_dialog import SettingsDialog
from tests.fakes import FakeEngine
from tests.gui.window_kit import OFFSCREEN_NOISE, WAIT_MS, WindowFactory, send_and_finish

pytestmark = pytest.mark.qt_log_ignore(OFFSCREEN_NOISE)

INTERACTIVE = (
    QAbstractButton,
    QLineEdit,
    QPlainTextEdit,
    QTextEdit,
    QListWidget,
    QComboBox,
    QAbstractSpinBox,
    QProgressBar,
)


def _spoken_name(widget: QWidget) -> str:
    """The name assistive technology hears: the accessible name, else what Qt derives (a button's text)."""
    if widget.accessibleName():
        return widget.accessibleName()
    interface = QAccessible.queryAccessibleInterface(widget)
    return interface.text(QAccessible.Text.Name) if interface is not None else ""


def _unnamed(root: QWidget) -> list[str]:
    missing = []
    for widget in root.findChildren(QWidget):
        # Qt's own parts (a spin box's inner line edit, the menu bar's overflow button) are
        # spoken through their owner, which Qt names itself.
        if widget.objectName().startswith("qt_"):
            continue
        if isinstance(widget, INTERACTIVE) and not _spoken_name(widget).strip():
            missing.append(f"{type(widget).__name__} in {type(widget.parent()).__name__}")
    return missing


def test_every_control_has_an_accessible_name(qtbot: QtBot, windows: WindowFactory) -> None:
    window = windows()
    send_and_finish(qtbot, window, "hello")  # a conversation, so every state's widgets exist
    assert _unnamed(window) == []
    profile = window.controller.profile
    assert profile is not None
    dialog = SettingsDialog(profile.settings, [("smollm2-135m-instruct", "SmolLM2")], "CPU", window)
    qtbot.addWidget(dialog)
    assert _unnamed(dialog) == []
    clear = window.sidebar.search.findChild(QAbstractButton)
    assert clear is not None and _spoken_name(clear) == "Clear search"


def _tab_through(qtbot: QtBot, window: MainWindow, presses: int, key: Qt.Key = Qt.Key.Key_Tab) -> list[QWidget]:
    seen: list[QWidget] = []
    for _ in range(presses):
        focus = QApplication.focusWidget()
        assert focus is not None
        qtbot.keyClick(focus, key)
        now = QApplication.focusWidget()
        assert now is not None and now.window() is window
        seen.append(now)
    return seen


def test_tab_reaches_composer_chat_and_sidebar(qtbot: QtBot, windows: WindowFactory) -> None:
    window = windows(FakeEngine(["Here is a [link](https://example.com) and some `code`."]))
    send_and_finish(qtbot, window, "hello")
    qtbot.waitUntil(window.isActiveWindow, timeout=WAIT_MS)
    window.composer.editor.setFocus()
    assert window.composer.editor.hasFocus()

    visited = _tab_through(qtbot, window, 14)
    for target in (
        window.chat,
        window.sidebar.search,
        window.sidebar.list,
        window.composer.send_button,
        window.composer.attach_button,
    ):
        assert target in visited, f"Tab never reached {target.accessibleName()}"
    assert window.composer.editor in visited  # and it comes round again
    backwards = _tab_through(qtbot, window, 12, Qt.Key.Key_Backtab)
    assert {window.chat, window.sidebar.search, window.sidebar.list} <= set(backwards)


def test_keyboard_shortcuts_move_focus(qtbot: QtBot, windows: WindowFactory) -> None:
    window = windows()
    qtbot.waitUntil(window.isActiveWindow, timeout=WAIT_MS)
    window.sidebar.list.setFocus()
    qtbot.keyClick(window.sidebar.list, Qt.Key.Key_L, Qt.KeyboardModifier.ControlModifier)
    assert window.composer.editor.hasFocus()
    qtbot.keyClick(window.composer.editor, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert window.sidebar.search.hasFocus()
