"""Where the user types: Enter sends, Shift+Enter starts a new line, Esc stops a reply.

The text stays in the box until the store has committed it, so a failed send loses nothing.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QToolButton, QVBoxLayout, QWidget


class _Editor(QPlainTextEdit):
    submit = Signal()
    escape = Signal()

    def sizeHint(self) -> QSize:
        return QSize(400, 76)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        enter = event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
        if enter and not event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            self.submit.emit()
            return
        if event.key() == Qt.Key.Key_Escape:
            self.escape.emit()
            return
        super().keyPressEvent(event)


class Composer(QWidget):
    sendRequested = Signal(str)
    stopRequested = Signal()
    editCancelled = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.editing_id: int | None = None
        self._busy = False
        self.editor = _Editor(self)
        self.editor.setPlaceholderText("Message Hearth — Enter to send, Shift+Enter for a new line")
        self.editor.setAccessibleName("Message")
        self.editor.setAccessibleDescription("Type a message. Enter sends, Shift+Enter adds a line, Escape stops a reply.")
        self.editor.setTabChangesFocus(True)
        self.editor.setMaximumHeight(140)
        self.editor.submit.connect(self._submit)
        self.editor.escape.connect(self._escape)

        self.send_button = QPushButton("Send", self)
        self.send_button.setAccessibleName("Send message")
        self.send_button.clicked.connect(self._submit)
        self.stop_button = QPushButton("Stop", self)
        self.stop_button.setAccessibleName("Stop the reply")
        self.stop_button.setToolTip("Stop the reply (Esc)")
        self.stop_button.clicked.connect(self.stopRequested)
        self.stop_button.hide()

        self.edit_banner = QLabel(self)
        self.edit_banner.setAccessibleName("Editing notice")
        self.cancel_edit = QToolButton(self)
        self.cancel_edit.setText("Cancel edit")
        self.cancel_edit.setAccessibleName("Cancel editing")
        self.cancel_edit.clicked.connect(self.leave_edit_mode)
        banner = QHBoxLayout()
        banner.addWidget(self.edit_banner, 1)
        banner.addWidget(self.cancel_edit)
        self._banner_row = QWidget(self)
        self._banner_row.setLayout(banner)
        self._banner_row.hide()

        row = QHBoxLayout()
        row.addWidget(self.editor, 1)
        buttons = QVBoxLayout()
        buttons.addWidget(self.send_button)
        buttons.addWidget(self.stop_button)
        buttons.addStretch(1)
        row.addLayout(buttons)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 8)
        layout.addWidget(self._banner_row)
        layout.addLayout(row)

    def text(self) -> str:
        return self.editor.toPlainText()

    def clear(self) -> None:
        self.editor.clear()

    def set_busy(self, busy: bool) -> None:
        """While a reply streams, Stop replaces Send (Esc works too)."""
        self._busy = busy
        self.send_button.setVisible(not busy)
        self.stop_button.setVisible(busy)

    def enter_edit_mode(self, message_id: int, text: str) -> None:
        self.editing_id = message_id
        self.editor.setPlainText(text)
        self.edit_banner.setText("Editing your message — Enter resends it and replaces everything after it.")
        self._banner_row.show()
        self.editor.setFocus()

    def leave_edit_mode(self) -> None:
        if self.editing_id is None:
            return
        self.editing_id = None
        self._banner_row.hide()
        self.editor.clear()
        self.editCancelled.emit()

    def _submit(self) -> None:
        if self._busy:
            return
        text = self.text()
        if text.strip():
            self.sendRequested.emit(text)

    def _escape(self) -> None:
        if self._busy:
            self.stopRequested.emit()
        elif self.editing_id is not None:
            self.leave_edit_mode()

