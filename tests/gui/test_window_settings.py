"""Settings: the dialog validates, the controller saves, and the theme follows."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QAbstractSpinBox, QApplication, QDialog
from pytestqt.qtbot import QtBot

from app.runtime import Profile
from app.settings import GenerationSettings, Settings
from app.ui.chat_view import is_dark
from app.ui.main_window import NOTICE_BACKGROUND, MainWindow
from app.ui.settings_dialog import SettingsDialog
from app.ui.theme import apply_theme
from tests.fakes import FakeEngine
from tests.gui.window_kit import OFFSCREEN_NOISE, WAIT_MS, WindowFactory, notice_background, send_and_finish

pytestmark = pytest.mark.qt_log_ignore(OFFSCREEN_NOISE)

CODE_REPLY = "Try this:\n\n```python\nprint('hi')\n```\n"
DARK_CODE_BG, LIGHT_CODE_BG = "#161b22", "#f6f8fa"


def _dialog(qtbot: QtBot, window: MainWindow) -> SettingsDialog:
    profile = window.controller.profile
    assert profile is not None
    models = [(e.id, e.name) for e in profile.library.entries() if e.kind == "chat"]
    dialog = SettingsDialog(profile.settings, models, "CPU", window)
    qtbot.addWidget(dialog)
    return dialog


def _saved_settings() -> Settings:
    profile = Profile.open()
    try:
        return profile.settings
    finally:
        profile.close()


def test_dialog_collects_the_edited_values(qtbot: QtBot, windows: WindowFactory) -> None:
    window = windows()
    dialog = _dialog(qtbot, window)
    dialog.temperature.setValue(1.25)
    dialog.max_tokens.setValue(300)
    dialog.instructions.setPlainText("Answer in one sentence.")
    dialog.theme.setCurrentIndex(dialog.theme.findData("dark"))
    dialog.accept()
    assert dialog.result() == QDialog.DialogCode.Accepted
    new = dialog.result_settings
    assert new is not None
    assert (new.generation.temperature, new.generation.max_tokens) == (1.25, 300)
    assert (new.default_instructions, new.theme) == ("Answer in one sentence.", "dark")


def _type_into(qtbot: QtBot, box: QAbstractSpinBox, text: str) -> None:
    box.setFocus()
    box.selectAll()
    qtbot.keyClicks(box, text)
    qtbot.keyClick(box, Qt.Key.Key_Tab)


def test_dialog_refuses_values_out_of_range(qtbot: QtBot, windows: WindowFactory) -> None:
    window = windows()
    dialog = _dialog(qtbot, window)
    dialog.show()
    before = dialog.threads.value()
    temperature = dialog.temperature.value()
    _type_into(qtbot, dialog.threads, "0")  # no model runs on zero threads
    _type_into(qtbot, dialog.temperature, "9")  # above the 0–2 the schema allows
    _type_into(qtbot, dialog.n_ctx, "-5")
    dialog.top_p.setValue(0.0)  # the schema needs more than 0; the box stops at its floor
    dialog.accept()
    new = dialog.result_settings
    assert new is not None
    assert new.n_threads == before
    assert new.generation.temperature == temperature
    assert new.n_ctx >= 256 and new.generation.top_p == 0.01


def test_apply_settings_saves_and_survives_a_reopen(qtbot: QtBot, windows: WindowFactory) -> None:
    window = windows()
    profile = window.controller.profile
    assert profile is not None
    generation = GenerationSettings(temperature=0.2, top_p=0.9, max_tokens=128, seed=7)
    new = profile.settings.replace(default_instructions="Be brief.", n_ctx=2048, generation=generation)
    with qtbot.waitSignal(window.controller.engineReady, timeout=WAIT_MS):  # n_ctx reloads the model
        window.controller.apply_settings(new)
    qtbot.waitUntil(lambda: profile.paths.settings.exists() and _saved_settings() == new, timeout=WAIT_MS)
    assert profile.settings == new


def test_dialog_sets_up_the_remote_engine(qtbot: QtBot, windows: WindowFactory) -> None:
    window = windows()
    dialog = _dialog(qtbot, window)
    assert dialog.engine.currentData() == "local" and not dialog.remote_url.isEnabled()
    dialog.engine.setCurrentIndex(dialog.engine.findData("remote"))
    assert dialog.remote_url.isEnabled() and dialog.remote_model.isEnabled()
    with pytest.raises(ValueError, match="needs a server URL"):
        dialog.collect()
    dialog.remote_url.setText("ftp://127.0.0.1/v1")
    with pytest.raises(ValueError, match="remote_url"):
        dialog.collect()
    dialog.remote_url.setText(" http://127.0.0.1:8080/v1 ")
    dialog.remote_model.setText("qwen2.5")
    assert dialog.remote_vision.isEnabled() and not dialog.remote_vision.isChecked()
    dialog.remote_vision.setChecked(True)
    dialog.accept()
    new = dialog.result_settings
    assert new is not None
    assert (new.engine, new.remote_url, new.remote_model, new.remote_vision) == (
        "remote",
        "http://127.0.0.1:8080/v1",
        "qwen2.5",
        True,
    )
    with qtbot.waitSignal(window.controller.engineReady, timeout=WAIT_MS):  # a new engine choice reloads
        window.controller.apply_settings(new)


def _answer_settings(theme: str) -> None:
    """Answer the modal Settings dialog from inside its own event loop."""
    dialog = QApplication.activeModalWidget()
    try:
        assert isinstance(dialog, SettingsDialog)
        dialog.theme.setCurrentIndex(dialog.theme.findData(theme))
        dialog.accept()
    finally:
        if isinstance(dialog, QDialog) and dialog.isVisible():
            dialog.reject()


def test_preferences_switch_to_dark_and_back(
    qtbot: QtBot, qapp: QApplication, windows: WindowFactory, light_theme: None
) -> None:
    window = windows(FakeEngine([CODE_REPLY]))
    send_and_finish(qtbot, window, "show me code")
    html = window.chat.toHtml().lower()
    assert LIGHT_CODE_BG in html and DARK_CODE_BG not in html

    QTimer.singleShot(0, lambda: _answer_settings("dark"))
    with qtbot.waitSignal(window.controller.conversationOpened, timeout=WAIT_MS):
        window.open_settings()
    assert QApplication.palette().color(QPalette.ColorRole.Window).lightness() < 128
    assert is_dark(window.chat)
    html = window.chat.toHtml().lower()
    assert DARK_CODE_BG in html and LIGHT_CODE_BG not in html
    qtbot.waitUntil(lambda: _saved_settings().theme == "dark", timeout=WAIT_MS)
    window.message_bar.show_notice("Readable on dark too.", "The bar keeps its own colours.")
    assert notice_background(window) == NOTICE_BACKGROUND

    apply_theme(qapp, "light")
    with qtbot.waitSignal(window.controller.conversationOpened, timeout=WAIT_MS):
        window.controller.open_conversation(window.controller.current)
    assert not is_dark(window.chat) and LIGHT_CODE_BG in window.chat.toHtml().lower()
