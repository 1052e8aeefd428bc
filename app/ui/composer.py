"""Where the user types: Enter sends, Shift+Enter starts a new line, Esc stops a reply.

Pictures join the message through the paper clip, by pasting (image data or copied files) or by
dropping them on the box; they wait in a strip of removable previews above it. Each preview is
made on the runner's ``images`` lane, which also turns away anything that is not a picture
Hearth can read, with a notice, before it is ever sent.

A failed send loses nothing: the window puts the text and the pictures back.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QEvent, QMimeData, QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QKeyEvent, QPalette, QPixmap
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.ui.chat_controller import describe
from app.ui.picture_strip import PictureStrip
from app.ui.pictures import FILE_FILTER, Picture, make_preview, offers_pictures, pictures_from_mime
from app.ui.tasks import Runner

# A paper clip on a 24-unit grid: two nested loops, turned 45°; drawn in the theme's text colour.
_CLIP_SVG = (
    "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 24 24' width='{size}' height='{size}'>"
    "<path transform='rotate(45 12 12)' d='M16 7v10a4 4 0 0 1-8 0V6a2.5 2.5 0 0 1 5 0v10a1 1 0 0 1-2 0V8' "
    "fill='none' stroke='{colour}' stroke-width='1.7' stroke-linecap='round' stroke-linejoin='round'/></svg>"
)


def paper_clip_icon(colour: str, size: int = 40) -> QIcon:
    pixmap = QPixmap()
    pixmap.loadFromData(_CLIP_SVG.format(size=size, colour=colour).encode(), "SVG")
    return QIcon(pixmap)


class _Editor(QPlainTextEdit):
    submit = Signal()
    escape = Signal()
    picturesOffered = Signal(list)  # [Picture], pasted or dropped on the box

    def sizeHint(self) -> QSize:
        return QSize(400, 76)

    # Paste and drop both come through these two: files and image data become pictures,
    # anything else is typed as usual.
    def canInsertFromMimeData(self, source: QMimeData) -> bool:  # noqa: N802 - Qt override
        # Asked on every move of a drag: look at what is offered, without reading image bytes.
        return offers_pictures(source, text_first=True) or super().canInsertFromMimeData(source)

    def insertFromMimeData(self, source: QMimeData) -> None:  # noqa: N802 - Qt override
        pictures = pictures_from_mime(source, text_first=True)
        if pictures:
            self.picturesOffered.emit(pictures)
        else:
            super().insertFromMimeData(source)

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
    sendRequested = Signal(str)  # the text; `take_pictures()` gives the pictures that go with it
    stopRequested = Signal()
    editCancelled = Signal()
    picturesChanged = Signal()  # a picture was added, removed, or its preview arrived
    notice = Signal(str, str)  # a picture was turned away: what is wrong, what to do

    def __init__(self, runner: Runner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.editing_id: int | None = None
        self._busy = False
        self._folder = ""  # where the last pictures were picked from
        self.editor = _Editor(self)
        self.editor.setPlaceholderText("Message Hearth — Enter to send, Shift+Enter for a new line")
        self.editor.setAccessibleName("Message")
        self.editor.setAccessibleDescription(
            "Type a message. Enter sends, Shift+Enter adds a line, Escape stops a reply."
        )
        self.editor.setTabChangesFocus(True)
        self.editor.setMaximumHeight(140)
        self.editor.submit.connect(self._submit)
        self.editor.escape.connect(self._escape)
        self.editor.picturesOffered.connect(self.add_pictures)

        self.strip = PictureStrip(self)
        self.strip.changed.connect(self._order_tabs)
        self.strip.changed.connect(self.picturesChanged)
        self.strip.removed.connect(self._on_removed)
        # Said plainly while pictures wait to be sent to a model that cannot see them.
        self.sight_note = QLabel("This model cannot see pictures: it gets the text Hearth reads in them.", self)
        self.sight_note.setAccessibleName("What the model gets of the pictures")
        self.sight_note.setWordWrap(True)
        self.sight_note.hide()
        self._model_sees = True
        self.strip.changed.connect(self._show_sight_note)
        self.attach_button = self._make_attach_button()
        self._tint_icons()

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
        self._lay_out()

    def _lay_out(self) -> None:
        """Banner, previews and the note on them above the row: clip, box, Send/Stop."""
        row = QHBoxLayout()
        row.addWidget(self.attach_button, 0, Qt.AlignmentFlag.AlignTop)
        row.addWidget(self.editor, 1)
        buttons = QVBoxLayout()
        buttons.addWidget(self.send_button)
        buttons.addWidget(self.stop_button)
        buttons.addStretch(1)
        row.addLayout(buttons)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 8)
        layout.addWidget(self._banner_row)
        layout.addWidget(self.strip)
        layout.addWidget(self.sight_note)
        layout.addLayout(row)
        QWidget.setTabOrder(self.attach_button, self.editor)  # Tab follows the row: clip, box, Send

    def text(self) -> str:
        return self.editor.toPlainText()

    def set_model_sees(self, sees: bool) -> None:
        """Whether the model now loaded sees pictures (a vision projector), or only the text read from them."""
        self._model_sees = sees
        self._show_sight_note()

    def _show_sight_note(self) -> None:
        self.sight_note.setVisible(not self._model_sees and bool(self.strip.pictures()))

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
        if text.strip() or (self.pictures() and self.editing_id is None):
            self.sendRequested.emit(text)

    def _escape(self) -> None:
        if self._busy:
            self.stopRequested.emit()
        elif self.editing_id is not None:
            self.leave_edit_mode()

    # -- pictures -------------------------------------------------------------------------

    def _make_attach_button(self) -> QToolButton:
        button = QToolButton(self)
        button.setAutoRaise(True)
        button.setIconSize(QSize(20, 20))
        button.setToolTip("Attach pictures (or drop or paste them here)")
        button.setAccessibleName("Attach pictures")
        button.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        button.clicked.connect(self.choose_files)
        return button

    def pictures(self) -> list[Picture]:
        return self.strip.pictures()

    def pictures_ready(self) -> bool:
        """Whether every picture's preview has arrived (and so it was checked)."""
        return all(card.ready for card in self.strip.cards())

    def add_pictures(self, pictures: list[Picture]) -> None:
        """Show each picture at once, and make its preview (checking it) on a worker."""
        for picture in pictures:
            if picture.preview is None:
                self._make_preview(picture)  # first, so it is not queued behind work the new card sets off
            self.strip.add(picture)

    def take_pictures(self) -> list[Picture]:
        """The pictures to send, taken off the strip."""
        return self.strip.take_all()

    def put_back(self, pictures: Sequence[object]) -> None:
        """Pictures of a message that was not sent return in front of any added since."""
        returning = [picture for picture in pictures if isinstance(picture, Picture)]
        for index, picture in enumerate(returning):
            self.strip.add(picture, at=index)
            if picture.preview is None:  # sent before its preview arrived
                self._make_preview(picture)

    def choose_files(self) -> None:
        dialog = QFileDialog(self, "Attach pictures", self._folder, FILE_FILTER)
        dialog.setObjectName("attachDialog")
        dialog.setFileMode(QFileDialog.FileMode.ExistingFiles)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.filesSelected.connect(self._on_files_chosen)
        dialog.open()

    def _on_files_chosen(self, names: list[str]) -> None:
        paths = [Path(name) for name in names]
        if paths:
            self._folder = str(paths[0].parent)
            self.add_pictures([Picture(path, path.name) for path in paths])
            self.editor.setFocus()

    def _make_preview(self, picture: Picture) -> None:
        job = self.runner.submit("images", make_preview, picture.source, picture.name)
        job.then(lambda image: self._preview_made(picture, image)).fail(lambda e: self._turned_away(picture, e))

    def _preview_made(self, picture: Picture, image: QImage) -> None:
        picture.preview = image  # kept even if it was sent meanwhile: a failed send brings it back
        self.strip.set_preview(picture, image)

    def _turned_away(self, picture: Picture, error: BaseException) -> None:
        if self.strip.card(picture) is None:
            return  # removed before its check finished: nothing to say
        self.strip.remove(picture)
        self.notice.emit(*describe(error))

    def _order_tabs(self) -> None:
        """Each picture's remove button takes its turn right after Send (cards are made last)."""
        previous: QWidget = self.send_button
        for card in self.strip.cards():
            QWidget.setTabOrder(previous, card.remove_button)
            previous = card.remove_button

    def _on_removed(self, _: Picture) -> None:
        if not self.pictures():
            self.editor.setFocus()

    # -- theme ----------------------------------------------------------------------------

    def _tint_icons(self) -> None:
        colour = self.palette().color(QPalette.ColorRole.ButtonText).name()
        self.attach_button.setIcon(paper_clip_icon(colour))
        self.strip.restyle(self.palette())

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt override
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange:
            self._tint_icons()
