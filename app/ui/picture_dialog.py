"""A stored picture, enlarged: as large as fits the screen, with the text Hearth read from it.

The picture is decoded (and scaled to the screen) on the runner's ``images`` lane; the dialog
opens at once, saying "Loading…" until it arrives. Esc or Close ends it.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QGuiApplication, QImage, QImageReader, QPixmap, QResizeEvent
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.core.attachments import Attachment
from app.core.images import ImageStore
from app.errors import ImageError
from app.ui.tasks import Runner

SCREEN_SHARE = 0.8  # the largest part of the screen the dialog takes
MIN_VIEW = QSize(240, 160)


def load_fitted(store: ImageStore, sha256: str, bound: QSize) -> QImage:
    """The stored picture, scaled down (smoothly, while decoding) to fit `bound` device pixels."""
    path = store.get(sha256)
    reader = QImageReader(str(path))
    size = reader.size()
    if size.isValid() and (size.width() > bound.width() or size.height() > bound.height()):
        reader.setScaledSize(size.scaled(bound, Qt.AspectRatioMode.KeepAspectRatio))
    image = reader.read()
    if image.isNull():
        raise ImageError(
            f"The picture could not be opened ({reader.errorString()}).",
            "It may be damaged in Hearth's data folder; attach the picture again.",
        )
    return image


class PictureDialog(QDialog):
    loaded = Signal()  # the picture is on screen
    failed = Signal(str)

    def __init__(
        self, attachment: Attachment, store: ImageStore, runner: Runner, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.attachment = attachment
        self.image: QImage | None = None
        self._pixmap: QPixmap | None = None
        self.setWindowTitle(attachment.name)
        self.setAccessibleName(f"Picture {attachment.name}")
        self.view = QLabel("Loading…", self)
        self.view.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.view.setMinimumSize(MIN_VIEW)
        self.view.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.view.setAccessibleName(f"The picture {attachment.name}")
        facts = QLabel(f"{attachment.name} · {attachment.width}×{attachment.height} · {attachment.format}", self)
        facts.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.read_toggle = QToolButton(self)
        self.read_toggle.setText("What was read")
        self.read_toggle.setCheckable(True)
        self.read_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.read_toggle.setAutoRaise(True)
        self.read_toggle.setAccessibleName("Show the text read from the picture")
        self.read_text = QPlainTextEdit(self)
        self.read_text.setReadOnly(True)
        self.read_text.setAccessibleName("Text read from the picture")
        self.read_text.setPlainText(attachment.ocr_text.strip() or "No text was found in this picture.")
        self.read_text.setMaximumHeight(120)
        self.read_toggle.toggled.connect(self._show_reading)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        column = QVBoxLayout(self)
        column.addWidget(self.view, 1)
        column.addWidget(facts)
        column.addWidget(self.read_toggle, 0, Qt.AlignmentFlag.AlignLeft)
        column.addWidget(self.read_text)
        column.addWidget(buttons)
        self.read_toggle.setChecked(bool(attachment.ocr_text.strip()))
        self._show_reading(self.read_toggle.isChecked())
        bound = self._size_to_screen()
        job = runner.submit("images", load_fitted, store, attachment.sha256, bound)
        job.then(self._on_loaded).fail(self._on_failed)

    def _size_to_screen(self) -> QSize:
        """Open as large as the picture, within `SCREEN_SHARE` of the screen; returns that in device pixels."""
        screen = self.screen() or QGuiApplication.primaryScreen()
        available = screen.availableGeometry().size() * SCREEN_SHARE
        wanted = QSize(max(self.attachment.width, MIN_VIEW.width()), max(self.attachment.height, MIN_VIEW.height()))
        view = wanted.boundedTo(available) if wanted.isValid() else available
        if self.attachment.width > 0 and self.attachment.height > 0:
            view = QSize(self.attachment.width, self.attachment.height).scaled(view, Qt.AspectRatioMode.KeepAspectRatio)
            view = view.expandedTo(MIN_VIEW)
        extra = 140 if self.read_text.isVisibleTo(self) else 80
        self.resize(view.width() + 24, view.height() + extra)
        return available * screen.devicePixelRatio()

    def _show_reading(self, shown: bool) -> None:
        self.read_toggle.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)
        self.read_text.setVisible(shown)

    def _on_loaded(self, image: QImage) -> None:
        self.image = image
        self._pixmap = QPixmap.fromImage(image)
        self._fit()
        self.loaded.emit()

    def _on_failed(self, error: BaseException) -> None:
        message = error.message if isinstance(error, ImageError) else str(error)
        self.view.setText(message)
        self.failed.emit(message)

    def _fit(self) -> None:
        pixmap = self._pixmap
        if pixmap is None:
            return
        ratio = self.devicePixelRatioF()
        room = self.view.size() * ratio
        if pixmap.width() > room.width() or pixmap.height() > room.height():
            pixmap = pixmap.scaled(room, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
        pixmap.setDevicePixelRatio(ratio)
        self.view.setPixmap(pixmap)

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._fit()
