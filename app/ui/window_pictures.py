"""Pictures in the main window: drops anywhere on it, the enlarged view, what the chat needs to show them.

Drops on the message box are the composer's own (its editor takes files and image data, and
pasting goes the same way); a drop anywhere else in the window — the conversation, the sidebar,
the bars — lands here and joins the composer's pictures just the same.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent

from app.core.images import ImageStore
from app.runtime import Profile
from app.ui.picture_dialog import PictureDialog
from app.ui.pictures import offers_pictures, pictures_from_mime

if TYPE_CHECKING:
    from app.ui.main_window import MainWindow


class WindowPictures(QObject):
    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.dialog: PictureDialog | None = None  # the picture open now, if any
        window.setAcceptDrops(True)
        window.installEventFilter(self)
        window.composer.notice.connect(window.message_bar.show_notice)
        window.composer.picturesChanged.connect(self._on_pictures_changed)
        window.chat.pictureRequested.connect(self.open_picture)
        window.controller.profileReady.connect(self._on_profile)

    def _on_profile(self, profile: Profile) -> None:
        self.window.chat.set_picture_folder(profile.paths.images)

    def _on_pictures_changed(self) -> None:
        if self.window.composer.pictures():
            self.window.controller.prepare_reading()

    def open_picture(self, message_id: int, index: int) -> None:
        """The enlarged picture, in a dialog of its own (Esc closes it)."""
        attachment = self.window.chat.attachment(message_id, index)
        profile = self.window.controller.profile
        if attachment is None or profile is None:
            return
        dialog = PictureDialog(attachment, ImageStore(profile.paths.images), self.window.controller.runner, self.window)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.destroyed.connect(lambda: self._forget(dialog))
        self.dialog = dialog
        dialog.open()

    def _forget(self, dialog: PictureDialog) -> None:
        if self.dialog is dialog:
            self.dialog = None

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        if watched is not self.window:
            return False
        if isinstance(event, QDragEnterEvent | QDragMoveEvent) and event.type() in (
            QEvent.Type.DragEnter,
            QEvent.Type.DragMove,
        ):
            if offers_pictures(event.mimeData()):
                event.acceptProposedAction()
                return True
        elif isinstance(event, QDropEvent) and event.type() == QEvent.Type.Drop:
            pictures = pictures_from_mime(event.mimeData())
            if pictures:
                self.window.composer.add_pictures(pictures)
                event.acceptProposedAction()
                return True
        return False
