"""The voice bar: what each state looks like (light and dark), the level meter, the buttons and the
held talk key. The panel only shows and asks, so these tests drive it directly; the spoken turns
themselves are in test_voice_controller.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtCore import QEvent, QPoint, Qt
from PySide6.QtGui import QColor, QKeyEvent
from PySide6.QtWidgets import QApplication, QLineEdit, QVBoxLayout, QWidget
from pytestqt.qtbot import QtBot

from app.ui.theme import apply_theme
from app.ui.voice_panel import STATE_COLOUR, STATE_TEXT, LevelMeter, TalkKey, VoicePanel
from tests.gui.window_kit import OFFSCREEN_NOISE

pytestmark = pytest.mark.qt_log_ignore(OFFSCREEN_NOISE)

LIVE = ("listening", "hearing", "thinking", "speaking")


@pytest.fixture
def panel(qtbot: QtBot, light_theme: None) -> Iterator[VoicePanel]:
    host = QWidget()
    host.resize(760, 60)
    widget = VoicePanel(host)
    QVBoxLayout(host).addWidget(widget)
    qtbot.addWidget(host)
    host.show()
    qtbot.waitExposed(host)
    yield widget
    host.close()


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_every_state_says_what_it_is_in_words_and_colour(
    qtbot: QtBot, panel: VoicePanel, qapp: QApplication, theme: str
) -> None:
    apply_theme(qapp, theme)
    for state in ("off", "loading", *LIVE):
        panel.set_state(state)
        qtbot.wait(1)
        assert panel.state_label.text() == STATE_TEXT[state]
        assert panel.accessibleDescription() == f"Voice: {STATE_TEXT[state]}"
        image = panel.grab().toImage()
        dot = panel.dot.mapTo(panel, panel.dot.rect().center())
        assert _close(image.pixelColor(dot), QColor(STATE_COLOUR[state])), (state, image.pixelColor(dot).name())
        # The words stand out from the bar in this theme.
        background = image.pixelColor(QPoint(panel.width() - 3, 2))
        text = panel.state_label.palette().color(panel.state_label.foregroundRole())
        assert abs(text.lightness() - background.lightness()) > 100, (theme, state)
        live = state in LIVE
        assert panel.meter.isVisible() == live and panel.talk.isVisible() == live
        assert panel.stop.isVisible() == (state in ("thinking", "speaking")), state
        assert panel.toggle.text() == ("Voice" if state == "off" else "Voice off")
        assert panel.toggle.accessibleName() == ("Turn voice on" if state == "off" else "Turn voice off")
    # The hints are drawn in the theme's placeholder colour, the user's words in its text colour.
    panel.set_state("listening")
    assert "Speak any time" in panel.heard.full_text
    panel.set_partial("what is the capital")
    assert panel.heard.full_text == "“what is the capital”"
    assert "italic" in panel.heard.styleSheet()
    panel.set_state("listening")  # a new turn: the last one's words go
    assert "Speak any time" in panel.heard.full_text


def test_push_to_talk_mode_says_how_to_talk(panel: VoicePanel) -> None:
    panel.set_mode("push-to-talk")
    panel.set_state("listening")
    assert panel.state_label.text() == "Ready"
    assert "Hold Ctrl+Space" in panel.heard.full_text
    panel.set_state("hearing")
    assert panel.state_label.text() == "Hearing you…"


def test_long_words_keep_their_end_in_view(qtbot: QtBot, panel: VoicePanel) -> None:
    panel.set_state("hearing")
    words = " ".join(f"word{n}" for n in range(80)) + " the latest words"
    panel.set_partial(words)
    shown = panel.heard.text()
    assert shown.endswith("the latest words”") and shown.startswith("…")
    assert panel.heard.toolTip() == f"“{words}”"


def test_level_meter_rises_at_once_and_falls_slowly(qtbot: QtBot, light_theme: None) -> None:
    meter = LevelMeter()
    qtbot.addWidget(meter)
    meter.set_level(-20.0)
    assert meter.fraction == pytest.approx(40 / 60)
    meter.set_level(-100.0)
    assert meter.fraction == pytest.approx(36 / 60), "it falls 4 dB per report, not to the floor at once"
    for _ in range(30):
        meter.set_level(-100.0)
    assert meter.fraction == 0.0
    meter.set_level(5.0)
    assert meter.fraction == 1.0
    meter.set_level(-0.2)
    assert meter.fraction == 1.0, "changes too small to see are not redrawn"


def test_level_is_shown_only_while_voice_is_live(panel: VoicePanel) -> None:
    panel.set_state("off")
    panel.set_level(-10.0)
    assert panel.meter.fraction == 0.0
    panel.set_state("listening")
    panel.set_level(-10.0)
    assert panel.meter.fraction > 0.8
    panel.set_state("off")
    assert panel.meter.fraction == 0.0


def test_buttons_ask_and_work_from_the_keyboard(qtbot: QtBot, panel: VoicePanel) -> None:
    asked: list[bool] = []
    panel.enableRequested.connect(asked.append)
    qtbot.mouseClick(panel.toggle, Qt.MouseButton.LeftButton)
    assert asked == [True]
    panel.set_state("listening")
    panel.toggle.setFocus()
    qtbot.keyClick(panel.toggle, Qt.Key.Key_Space)
    assert asked == [True, False]

    talk: list[bool] = []
    panel.talkRequested.connect(talk.append)
    qtbot.mousePress(panel.talk, Qt.MouseButton.LeftButton)
    assert talk == [True]
    qtbot.mouseRelease(panel.talk, Qt.MouseButton.LeftButton)
    assert talk == [True, False]
    # Holding Space on the focused button is holding the button; auto-repeat does not restart it.
    panel.talk.setFocus()
    qtbot.keyPress(panel.talk, Qt.Key.Key_Space)
    QApplication.sendEvent(
        panel.talk, QKeyEvent(QEvent.Type.KeyPress, Qt.Key.Key_Space, Qt.KeyboardModifier.NoModifier, " ", True)
    )
    qtbot.keyRelease(panel.talk, Qt.Key.Key_Space)
    assert talk == [True, False, True, False]

    stops: list[bool] = []
    panel.stopRequested.connect(lambda: stops.append(True))
    panel.set_state("speaking")
    panel.stop.setFocus()
    qtbot.keyClick(panel.stop, Qt.Key.Key_Space)
    assert stops == [True]
    for button in (panel.toggle, panel.talk, panel.stop):
        assert button.focusPolicy() & Qt.FocusPolicy.TabFocus and button.accessibleName()
    assert panel.meter.accessibleName() == "Microphone level"
    assert panel.heard.accessibleName() == "What Hearth hears"


@pytest.fixture
def scoped_key(qtbot: QtBot, qapp: QApplication) -> Iterator[tuple[TalkKey, QLineEdit, list[bool]]]:
    scope = QWidget()
    field = QLineEdit(scope)
    QVBoxLayout(scope).addWidget(field)
    qtbot.addWidget(scope)
    scope.show()
    qtbot.waitExposed(scope)
    key = TalkKey(scope)
    key.enabled = True
    held: list[bool] = []
    key.held.connect(held.append)
    qapp.installEventFilter(key)
    yield key, field, held
    qapp.removeEventFilter(key)
    scope.close()


def test_holding_ctrl_space_is_push_to_talk(qtbot: QtBot, scoped_key: tuple[TalkKey, QLineEdit, list[bool]]) -> None:
    key, field, held = scoped_key
    ctrl = Qt.KeyboardModifier.ControlModifier
    field.setFocus()
    qtbot.keyPress(field, Qt.Key.Key_Space, ctrl)
    for _ in range(3):  # the keyboard repeats a held key: release/press pairs marked auto-repeat
        QApplication.sendEvent(field, QKeyEvent(QEvent.Type.KeyRelease, Qt.Key.Key_Space, ctrl, " ", True))
        QApplication.sendEvent(field, QKeyEvent(QEvent.Type.KeyPress, Qt.Key.Key_Space, ctrl, " ", True))
    assert held == [True]
    qtbot.keyRelease(field, Qt.Key.Key_Space, ctrl)
    assert held == [True, False]
    assert field.text() == "", "the talk key never types into the box it was pressed in"

    # Letting go of Ctrl first ends the turn too; plain Space still types.
    qtbot.keyPress(field, Qt.Key.Key_Space, ctrl)
    qtbot.keyRelease(field, Qt.Key.Key_Control, Qt.KeyboardModifier.NoModifier)
    qtbot.keyRelease(field, Qt.Key.Key_Space, Qt.KeyboardModifier.NoModifier)
    assert held == [True, False, True, False]
    qtbot.keyClick(field, Qt.Key.Key_Space)
    assert field.text() == " "


def test_the_talk_key_rests_while_voice_is_off(qtbot: QtBot, scoped_key: tuple[TalkKey, QLineEdit, list[bool]]) -> None:
    key, field, held = scoped_key
    key.enabled = False
    qtbot.keyPress(field, Qt.Key.Key_Space, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyRelease(field, Qt.Key.Key_Space, Qt.KeyboardModifier.ControlModifier)
    assert held == []


def test_a_held_talk_key_is_let_go_when_the_window_loses_focus(
    qtbot: QtBot, scoped_key: tuple[TalkKey, QLineEdit, list[bool]]
) -> None:
    key, field, held = scoped_key
    qtbot.keyPress(field, Qt.Key.Key_Space, Qt.KeyboardModifier.ControlModifier)
    QApplication.sendEvent(field.window(), QEvent(QEvent.Type.WindowDeactivate))
    assert held == [True, False]


def _close(a: QColor, b: QColor, tolerance: int = 24) -> bool:
    pairs = ((a.red(), b.red()), (a.green(), b.green()), (a.blue(), b.blue()))
    return all(abs(x - y) <= tolerance for x, y in pairs)
