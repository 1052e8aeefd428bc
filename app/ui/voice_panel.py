"""The voice bar above the composer: turn hands-free voice on and off, talk, see what Hearth hears.

A mic toggle (Ctrl+Shift+V), the state in words and colour (Voice off / Loading voice… /
Listening… / Hearing you… / Thinking… / Speaking…), a live microphone level, the words heard so
far, a push-to-talk button that acts while held (Space on the focused button works too; holding
Ctrl+Space anywhere in the window does the same through `TalkKey`), and a Stop button whenever
Hearth is thinking or speaking. The panel only shows state and asks: `VoiceController` acts.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QIcon,
    QKeyEvent,
    QPainter,
    QPainterPath,
    QPaintEvent,
    QPalette,
    QPen,
    QPixmap,
    QResizeEvent,
)
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSizePolicy, QToolButton, QWidget

TOGGLE_KEYS = "Ctrl+Shift+V"
TALK_KEYS = "Ctrl+Space"

STATE_TEXT = {
    "off": "Voice off",
    "loading": "Loading voice…",
    "listening": "Listening…",
    "hearing": "Hearing you…",
    "thinking": "Thinking…",
    "speaking": "Speaking…",
}
# Mid-tone colours that read on the light and the dark palette alike.
STATE_COLOUR = {
    "off": "#8a8f98",
    "loading": "#8a8f98",
    "listening": "#2e9d5b",
    "hearing": "#2f7de1",
    "thinking": "#d08a1c",
    "speaking": "#8b5cf6",
}
LIVE_STATES = ("listening", "hearing", "thinking", "speaking")
METER_FLOOR_DB = -60.0  # the level meter's empty end; 0 dBFS fills it
METER_FALL_DB = 4.0  # how far the bar may fall per report, so it decays rather than flickers


def mic_icon(colour: QColor, size: int = 32) -> QIcon:
    """A microphone drawn in `colour` (so it follows the theme's text colour)."""
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    p = QPainter(pixmap)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    s = size / 32.0
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(colour)
    p.drawRoundedRect(QRectF(11 * s, 3 * s, 10 * s, 17 * s), 5 * s, 5 * s)
    pen = QPen(colour, 2.4 * s)
    pen.setCapStyle(Qt.PenCapStyle.RoundCap)
    p.setPen(pen)
    p.setBrush(Qt.BrushStyle.NoBrush)
    cup = QPainterPath()
    cup.moveTo(7 * s, 14 * s)
    cup.cubicTo(7 * s, 27 * s, 25 * s, 27 * s, 25 * s, 14 * s)
    p.drawPath(cup)
    p.drawLine(QPointF(16 * s, 24 * s), QPointF(16 * s, 29 * s))
    p.drawLine(QPointF(11 * s, 29 * s), QPointF(21 * s, 29 * s))
    p.end()
    return QIcon(pixmap)


class StateDot(QWidget):
    """A small filled circle in the colour of the voice state."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._colour = QColor(STATE_COLOUR["off"])
        self.setFixedSize(12, 12)

    def set_colour(self, colour: str) -> None:
        self._colour = QColor(colour)
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(self._colour)
        p.drawEllipse(QRectF(1, 1, 10, 10))
        p.end()


class LevelMeter(QWidget):
    """How loud the microphone is (after echo cancellation): a bar that rises at once and falls slowly."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Microphone level")
        self.setToolTip("How loud Hearth hears you")
        self.setFixedSize(QSize(72, 10))
        self._fraction = 0.0
        self._colour = QColor(STATE_COLOUR["listening"])

    @property
    def fraction(self) -> float:
        return self._fraction

    def set_level(self, db: float) -> None:
        shown = METER_FLOOR_DB + self._fraction * -METER_FLOOR_DB
        target = max(METER_FLOOR_DB, min(0.0, db))
        target = max(target, shown - METER_FALL_DB)
        fraction = (target - METER_FLOOR_DB) / -METER_FLOOR_DB
        if abs(fraction - self._fraction) >= 0.01:  # repaint only what can be seen
            self._fraction = fraction
            self.update()

    def set_colour(self, colour: str) -> None:
        self._colour = QColor(colour)
        self.update()

    def reset(self) -> None:
        self._fraction = 0.0
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        rect = QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5)
        radius = rect.height() / 2
        track = self.palette().color(QPalette.ColorRole.WindowText)
        track.setAlpha(40)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(track)
        p.drawRoundedRect(rect, radius, radius)
        if self._fraction > 0:
            filled = QRectF(rect.left(), rect.top(), max(rect.height(), rect.width() * self._fraction), rect.height())
            p.setBrush(self._colour)
            p.drawRoundedRect(filled, radius, radius)
        p.end()


class ElidedLabel(QLabel):
    """A one-line label that shortens its text to fit whatever width the layout gives it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._full = ""
        self._mode = Qt.TextElideMode.ElideRight
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setMinimumWidth(40)

    @property
    def full_text(self) -> str:
        return self._full

    def set_full_text(self, text: str, mode: Qt.TextElideMode = Qt.TextElideMode.ElideRight) -> None:
        self._full, self._mode = text, mode
        self._elide()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        self.setText(self.fontMetrics().elidedText(self._full, self._mode, max(self.width(), 40)))


class TalkKey(QObject):
    """Holding Ctrl+Space anywhere in `scope` is push-to-talk: `held(True)` on press, `held(False)` on release.

    A shortcut cannot see a key being let go, so this filters the application's key events: the
    first press of Space with Ctrl starts, auto-repeats are swallowed, and letting go of Space (or of
    Ctrl, or the window losing focus) ends the turn.
    """

    held = Signal(bool)

    def __init__(self, scope: QWidget) -> None:
        super().__init__(scope)
        self._scope = scope
        self._down = False
        self.enabled = False

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        kind = event.type()
        if kind == QEvent.Type.WindowDeactivate and watched is self._scope:
            self._release()
            return False
        if kind not in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease) or not self._inside(watched):
            return False
        assert isinstance(event, QKeyEvent)
        key = event.key()
        if kind == QEvent.Type.KeyPress:
            if key == Qt.Key.Key_Space and event.modifiers() & Qt.KeyboardModifier.ControlModifier and self.enabled:
                if not event.isAutoRepeat() and not self._down:
                    self._down = True
                    self.held.emit(True)
                return True
            return False
        if self._down and key in (Qt.Key.Key_Space, Qt.Key.Key_Control):
            if not event.isAutoRepeat():
                self._release()
            return True
        return False

    def _inside(self, watched: QObject) -> bool:
        return isinstance(watched, QWidget) and (watched is self._scope or self._scope.isAncestorOf(watched))

    def _release(self) -> None:
        if self._down:
            self._down = False
            self.held.emit(False)


class VoicePanel(QWidget):
    """Signals `enableRequested(bool)`, `talkRequested(bool)` (held / let go) and `stopRequested()`."""

    enableRequested = Signal(bool)
    talkRequested = Signal(bool)
    stopRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Voice")
        self._state = "off"
        self._mode = "hands-free"
        self._heard = ""

        # The button names what it does ("Voice" / "Voice off"); the dot and the words beside it
        # say what state voice is in.
        self.toggle = QToolButton(self)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setIconSize(QSize(18, 18))
        self.toggle.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.toggle.clicked.connect(lambda: self.enableRequested.emit(self._state == "off"))

        self.dot = StateDot(self)
        self.state_label = QLabel(self)
        self.state_label.setAccessibleName("Voice state")
        self.state_label.setMinimumWidth(self.state_label.fontMetrics().horizontalAdvance("Loading voice…") + 4)
        self.meter = LevelMeter(self)

        self.heard = ElidedLabel(self)
        self.heard.setAccessibleName("What Hearth hears")

        self.talk = QPushButton("Hold to talk", self)
        self.talk.setAccessibleName("Push to talk")
        self.talk.setAccessibleDescription(
            f"Hold this button, or hold {TALK_KEYS}, while you speak; let go when you are done."
        )
        self.talk.setToolTip(f"Hold while you speak (or hold {TALK_KEYS})")
        self.talk.pressed.connect(lambda: self.talkRequested.emit(True))
        self.talk.released.connect(lambda: self.talkRequested.emit(False))

        self.stop = QPushButton("Stop", self)
        self.stop.setAccessibleName("Stop speaking")
        self.stop.setToolTip("Stop the spoken reply (Esc)")
        self.stop.clicked.connect(self.stopRequested)

        row = QHBoxLayout(self)
        row.setContentsMargins(8, 4, 8, 0)
        row.setSpacing(8)
        row.addWidget(self.toggle)
        row.addWidget(self.dot)
        row.addWidget(self.state_label)
        row.addWidget(self.meter)
        row.addWidget(self.heard, 1)
        row.addWidget(self.talk)
        row.addWidget(self.stop)
        self.setFixedHeight(max(self.toggle.sizeHint().height(), self.talk.sizeHint().height()) + 6)
        self._refresh()

    # -- what the controller says ------------------------------------------------------------

    @property
    def state(self) -> str:
        return self._state

    def set_state(self, state: str) -> None:
        self._state = state if state in STATE_TEXT else "off"
        if self._state not in LIVE_STATES:
            self.meter.reset()
            self._heard = ""
        if self._state == "listening":
            self._heard = ""
        self._refresh()

    def set_mode(self, mode: str) -> None:
        self._mode = mode
        self._refresh()

    def set_level(self, db: float) -> None:
        if self._state in LIVE_STATES:
            self.meter.set_level(db)

    def set_partial(self, text: str) -> None:
        self._heard = text
        self._show_heard()

    # -- drawing ----------------------------------------------------------------------------

    def _refresh(self) -> None:
        state, live = self._state, self._state in LIVE_STATES
        self._refresh_toggle()
        colour = STATE_COLOUR[state]
        self.dot.set_colour(colour)
        self.meter.set_colour(colour)
        text = STATE_TEXT[state]
        if state == "listening" and self._mode == "push-to-talk":
            text = "Ready"
        self.state_label.setText(text)
        self.setAccessibleDescription(f"Voice: {text}")
        self.meter.setVisible(live)
        self.talk.setVisible(live)
        self.stop.setVisible(state in ("thinking", "speaking"))
        self._show_heard()

    def _refresh_toggle(self) -> None:
        on = self._state != "off"
        self.toggle.setIcon(mic_icon(self.palette().color(QPalette.ColorRole.ButtonText)))
        self.toggle.setText("Voice off" if on else "Voice")
        self.toggle.setAccessibleName("Turn voice off" if on else "Turn voice on")
        action = "Stop listening and speaking" if on else "Talk to Hearth hands-free"
        self.toggle.setToolTip(f"{action} ({TOGGLE_KEYS})")
        self.toggle.setAccessibleDescription(f"{action}. Shortcut {TOGGLE_KEYS}.")

    def _show_heard(self) -> None:
        state = self._state
        if self._heard and state in LIVE_STATES:
            text, hint = f"“{self._heard}”", False
        elif state == "off":
            text, hint = f"{TOGGLE_KEYS} to talk instead of typing", True
        elif state == "loading":
            text, hint = "Getting the speech models ready", True
        elif state == "listening":
            text = (
                f"Hold {TALK_KEYS} or the button to talk"
                if self._mode == "push-to-talk"
                else "Speak any time — you can interrupt Hearth"
            )
            hint = True
        else:
            text, hint = "", False
        # Of the user's words the latest matter most: those are cut from the left when they do not fit.
        self.heard.set_full_text(text, Qt.TextElideMode.ElideRight if hint else Qt.TextElideMode.ElideLeft)
        self.heard.setToolTip(text if self._heard else "")
        colour = self.palette().color(QPalette.ColorRole.PlaceholderText if hint else QPalette.ColorRole.WindowText)
        rgba = f"rgba({colour.red()}, {colour.green()}, {colour.blue()}, {colour.alpha()})"
        self.heard.setStyleSheet(f"color: {rgba};" + (" font-style: italic;" if not hint and text else ""))

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange:
            self._refresh()
