"""The row of pictures waiting above the message box, each with its own remove button.

A card appears the moment a picture is added, showing "…" until its preview (made on a worker)
arrives. The × on each card is a real button: Tab reaches it, Space or Enter removes the picture.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QFontMetrics, QImage, QPalette, QPixmap, QResizeEvent
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QScrollArea, QToolButton, QVBoxLayout, QWidget

from app.ui.pictures import Picture

PREVIEW_BOX = 72  # the preview's square, in device-independent pixels
CARD_WIDTH = PREVIEW_BOX + 12


class PictureCard(QFrame):
    removeRequested = Signal(object)  # the Picture

    def __init__(self, picture: Picture, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.picture = picture
        self.setObjectName("pictureCard")
        self.setFixedWidth(CARD_WIDTH)
        self.setToolTip(picture.name)
        self.setAccessibleName(f"Attached picture {picture.name}")
        self.preview = QLabel("…", self)
        self.preview.setObjectName("picturePreview")
        self.preview.setFixedSize(PREVIEW_BOX, PREVIEW_BOX)
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setAccessibleName(f"Preview of {picture.name}")
        self.caption = QLabel(self)
        self.caption.setAlignment(Qt.AlignmentFlag.AlignHCenter)
        font = self.caption.font()
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.85))
        self.caption.setFont(font)
        self.caption.setText(QFontMetrics(font).elidedText(picture.name, Qt.TextElideMode.ElideMiddle, CARD_WIDTH - 14))
        self.remove_button = QToolButton(self)
        self.remove_button.setObjectName("removePicture")
        self.remove_button.setText("×")
        self.remove_button.setAutoRaise(True)
        self.remove_button.setFixedSize(QSize(20, 20))
        self.remove_button.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.remove_button.setToolTip(f"Remove {picture.name}")
        self.remove_button.setAccessibleName(f"Remove picture {picture.name}")
        self.remove_button.clicked.connect(lambda: self.removeRequested.emit(self.picture))
        column = QVBoxLayout(self)
        column.setContentsMargins(6, 6, 6, 4)
        column.setSpacing(2)
        column.addWidget(self.preview, 0, Qt.AlignmentFlag.AlignHCenter)
        column.addWidget(self.caption)
        if picture.preview is not None:
            self.show_preview(picture.preview)

    def show_preview(self, image: QImage) -> None:
        """Fit the (already small) preview into the box at this screen's pixel density."""
        self.picture.preview = image
        ratio = self.devicePixelRatioF()
        side = round(PREVIEW_BOX * ratio)
        pixmap = QPixmap.fromImage(image)
        if max(pixmap.width(), pixmap.height()) > side:
            pixmap = pixmap.scaled(
                side, side, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
            )
        pixmap.setDevicePixelRatio(ratio)
        self.preview.setText("")
        self.preview.setPixmap(pixmap)

    @property
    def ready(self) -> bool:
        return self.picture.preview is not None

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self.remove_button.move(self.width() - self.remove_button.width() - 2, 2)
        self.remove_button.raise_()


class PictureStrip(QScrollArea):
    """Cards in a row that scrolls sideways when there are many; hidden while empty."""

    changed = Signal()
    removed = Signal(object)  # the Picture the user took off

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Attached pictures")
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # its cards' buttons take the focus, not the row
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        inner = QWidget(self)
        inner.setObjectName("pictureStripInner")
        self._row = QHBoxLayout(inner)
        self._row.setContentsMargins(0, 0, 0, 0)
        self._row.setSpacing(8)
        self._row.addStretch(1)
        self.setWidget(inner)
        self._cards: list[PictureCard] = []
        self.restyle(self.palette())
        self.hide()

    def restyle(self, p: QPalette) -> None:
        """Colours of the theme `p`, written out: a style sheet's palette() would keep the old theme's.

        The caller passes its own palette, since this style sheet changes this widget's.
        """
        role = QPalette.ColorRole
        sheet = (
            "QScrollArea, #pictureStripInner { background: transparent; }"
            f"#pictureCard {{ border: 1px solid {p.color(role.Mid).name()}; border-radius: 6px;"
            f" background: {p.color(role.Base).name()}; }}"
            f"#pictureCard QLabel {{ color: {p.color(role.Text).name()}; }}"
            f"#removePicture {{ border-radius: 10px; font-weight: bold; color: {p.color(role.ButtonText).name()};"
            f" background: {p.color(role.Window).name()}; }}"
            f"#removePicture:hover, #removePicture:focus {{ background: {p.color(role.Highlight).name()};"
            f" color: {p.color(role.HighlightedText).name()}; }}"
        )
        if sheet != self.styleSheet():
            self.setStyleSheet(sheet)

    def sizeHint(self) -> QSize:
        card = self._cards[0].sizeHint().height() if self._cards else PREVIEW_BOX + 30
        bar = self.horizontalScrollBar().sizeHint().height()
        return QSize(super().sizeHint().width(), card + bar + 2)

    def pictures(self) -> list[Picture]:
        return [card.picture for card in self._cards]

    def cards(self) -> list[PictureCard]:
        return list(self._cards)

    def card(self, picture: Picture) -> PictureCard | None:
        return next((card for card in self._cards if card.picture is picture), None)

    def add(self, picture: Picture, at: int | None = None) -> PictureCard:
        card = PictureCard(picture, self.widget())
        card.removeRequested.connect(self._remove_by_user)
        index = len(self._cards) if at is None else at
        self._cards.insert(index, card)
        self._row.insertWidget(index, card)
        self._relayout()
        return card

    def remove(self, picture: Picture) -> None:
        card = self.card(picture)
        if card is None:
            return
        self._cards.remove(card)
        self._row.removeWidget(card)
        card.hide()
        card.deleteLater()
        self._relayout()

    def set_preview(self, picture: Picture, image: QImage) -> bool:
        """Show a preview that arrived; False if the picture was removed meanwhile."""
        card = self.card(picture)
        if card is None:
            return False
        card.show_preview(image)
        self.changed.emit()
        return True

    def take_all(self) -> list[Picture]:
        taken = self.pictures()
        for picture in taken:
            self.remove(picture)
        return taken

    def _remove_by_user(self, picture: Picture) -> None:
        card = self.card(picture)
        index = self._cards.index(card) if card is not None else -1
        had_focus = card is not None and card.remove_button.hasFocus()
        self.remove(picture)
        self.removed.emit(picture)
        if had_focus and self._cards:  # keep the keyboard on the strip, on the next card along
            self._cards[min(index, len(self._cards) - 1)].remove_button.setFocus()

    def _relayout(self) -> None:
        self.setVisible(bool(self._cards))
        self.setFixedHeight(self.sizeHint().height())
        self.changed.emit()
