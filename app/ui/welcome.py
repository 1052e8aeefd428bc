"""The first-run panel: no chat model is usable yet. It says so, and opens the Models page."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QFrame, QLabel, QPushButton, QVBoxLayout, QWidget


class WelcomePanel(QFrame):
    """First run: no chat model is usable yet. Says so, and opens the Models page."""

    openModels = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Welcome")
        title = QLabel("Welcome to Hearth", self)
        font = QFont(title.font())
        font.setPointSizeF(font.pointSizeF() * 1.6)
        font.setBold(True)
        title.setFont(font)
        text = QLabel(
            "Hearth answers with a language model that runs on this computer, and none is here yet. "
            "Pick one to download from the catalog, or import a GGUF file you already have. "
            "Downloads are checked before use, and what you type never leaves this computer.",
            self,
        )
        text.setWordWrap(True)
        text.setAlignment(Qt.AlignmentFlag.AlignCenter)
        text.setFixedWidth(520)
        text.setMinimumHeight(text.heightForWidth(520))  # centred, a wrapped label is not given its height
        self.button = QPushButton("Choose a model…", self)
        self.button.setDefault(True)
        self.button.clicked.connect(self.openModels.emit)
        column = QVBoxLayout(self)
        column.setSpacing(14)
        column.addStretch(1)
        for widget in (title, text, self.button):
            column.addWidget(widget, 0, Qt.AlignmentFlag.AlignHCenter)
        column.addStretch(2)
        self.hide()
