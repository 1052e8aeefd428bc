"""Pictures in the real window: dropped, pasted or picked, previewed, sent, shown, enlarged, kept.

Everything is real — the window, the controller and its lanes, the SQLite store, the picture
store in HEARTH_HOME, Pillow-made files and the OCR reader — except the chat engine (FakeEngine).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QEvent, QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QGuiApplication, QHelpEvent, QImage, QTextDocument
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox, QToolTip, QWidget
from pytestqt.qtbot import QtBot

from app.core.attachments import IMAGE_ONLY_TEXT, attachments_of
from app.core.conversation import Message
from app.core.images import ImageStore
from app.core.thumbnails import Thumbnails
from app.ui.main_window import MainWindow
from app.ui.picture_dialog import PictureDialog
from app.ui.pictures import PASTED_NAME
from tests.fakes import FakeEngine
from tests.gui.window_kit import (
    OFFSCREEN_NOISE,
    WAIT_MS,
    WindowFactory,
    chat_text,
    click_row,
    stored,
    type_and_send,
    wait_idle,
)
from tests.pictures import bomb_png, noise_jpeg, plain_png, text_png, truncated_jpeg

pytestmark = pytest.mark.qt_log_ignore(OFFSCREEN_NOISE)

OCR_MS = 30_000  # the first picture sent loads the OCR models (about a second; more on a busy machine)


# -- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def files(tmp_path: Path) -> Path:
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "invoice.png").write_bytes(text_png("Invoice 42"))
    (folder / "red.png").write_bytes(plain_png(120, 80))
    (folder / "photo.jpg").write_bytes(noise_jpeg(300, 200))
    return folder


def file_mime(*paths: Path) -> QMimeData:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path)) for path in paths])
    return mime


def drop(target: QWidget, mime: QMimeData) -> bool:
    """A drag entering `target` and dropping there, as Qt delivers one; True if the drop was taken."""
    centre = target.rect().center()
    buttons, keys = Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    enter = QDragEnterEvent(centre, Qt.DropAction.CopyAction, mime, buttons, keys)
    QApplication.sendEvent(target, enter)
    if not enter.isAccepted():
        return False
    dropped = QDropEvent(QPointF(centre), Qt.DropAction.CopyAction, mime, buttons, keys)
    QApplication.sendEvent(target, dropped)
    return dropped.isAccepted()


def composer_target(window: MainWindow) -> QWidget:
    """Where a drop on the message box lands: its editor's viewport."""
    return window.composer.editor.viewport()


def wait_pictures(qtbot: QtBot, window: MainWindow, count: int) -> None:
    composer = window.composer
    qtbot.waitUntil(lambda: len(composer.pictures()) == count and composer.pictures_ready(), timeout=WAIT_MS)


def names_in_composer(window: MainWindow) -> list[str]:
    return [picture.name for picture in window.composer.pictures()]


def send_and_wait(qtbot: QtBot, window: MainWindow, text: str) -> Message:
    """Send what the composer holds (with `text` typed), and wait for the reply to finish."""
    with qtbot.waitSignal(window.controller.replyFinished, timeout=OCR_MS):
        type_and_send(qtbot, window, text)
    wait_idle(qtbot, window)
    user = next(m for m in reversed(stored(window)) if m.role == "user")
    return user


def notice(window: MainWindow) -> str:
    return window.message_bar.label.text() if window.message_bar.isVisible() else ""


def thumbnail_images(window: MainWindow) -> list[QImage]:
    """The thumbnails the chat actually drew, as its document loaded them."""
    found = []
    document = window.chat.document()
    block = document.begin()
    while block.isValid():
        fragments = block.begin()
        while not fragments.atEnd():
            fmt = fragments.fragment().charFormat()
            if fmt.isImageFormat():
                name = fmt.toImageFormat().name()
                image = document.loadResource(int(QTextDocument.ResourceType.ImageResource.value), QUrl(name))
                if isinstance(image, QImage):
                    found.append(image)
            fragments += 1
        block = block.next()
    return found


def point_on_anchor(qtbot: QtBot, window: MainWindow, prefix: str) -> QPoint:
    """A point of the chat's viewport over a link whose address starts with `prefix`."""
    viewport = window.chat.viewport()
    for y in range(2, viewport.height(), 6):
        for x in range(2, viewport.width(), 6):
            if window.chat.anchorAt(QPoint(x, y)).startswith(prefix):
                return QPoint(x + 3, y + 3)
    raise AssertionError(f"no link starting {prefix!r} is on screen")


def click_anchor(qtbot: QtBot, window: MainWindow, prefix: str) -> None:
    qtbot.mouseClick(window.chat.viewport(), Qt.MouseButton.LeftButton, pos=point_on_anchor(qtbot, window, prefix))


class LaneGate:
    """Holds one of the runner's lanes busy until released, to see the window work meanwhile."""

    def __init__(self, window: MainWindow, lane: str) -> None:
        self.release = threading.Event()
        self.started = threading.Event()

        def hold() -> None:
            self.started.set()
            self.release.wait(10)

        window.controller.runner.submit(lane, hold)
        assert self.started.wait(5)


@pytest.fixture
def window(windows: WindowFactory) -> Iterator[MainWindow]:
    yield windows(FakeEngine())


# -- ways in ---------------------------------------------------------------------------------


def test_files_dropped_on_the_window_wait_as_removable_previews(qtbot: QtBot, window: MainWindow, files: Path) -> None:
    assert not window.composer.strip.isVisible()
    assert drop(window, file_mime(files / "invoice.png", files / "red.png", files / "photo.jpg"))
    assert names_in_composer(window) == ["invoice.png", "red.png", "photo.jpg"]
    wait_pictures(qtbot, window, 3)
    assert window.composer.strip.isVisible()
    for card in window.composer.strip.cards():
        shown = card.preview.pixmap()
        assert not shown.isNull() and 0 < shown.width() <= 72 * shown.devicePixelRatio() + 1

    red = window.composer.strip.cards()[1]
    qtbot.mouseClick(red.remove_button, Qt.MouseButton.LeftButton)
    assert names_in_composer(window) == ["invoice.png", "photo.jpg"]


def test_a_drop_anywhere_in_the_window_reaches_the_composer(qtbot: QtBot, window: MainWindow, files: Path) -> None:
    # Drag events climb from the widget under the pointer to the first that takes them.
    mime = file_mime(files / "red.png")
    for under_pointer in (window.chat.viewport(), window.sidebar.list.viewport(), window.statusBar()):
        enter = QDragEnterEvent(
            QPoint(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
        )
        QApplication.sendEvent(under_pointer, enter)
        assert enter.isAccepted(), under_pointer
    assert drop(window, mime)  # and the drop then goes to the window that took the drag
    wait_pictures(qtbot, window, 1)


def test_files_dropped_on_the_message_box_are_attached_not_typed(qtbot: QtBot, window: MainWindow, files: Path) -> None:
    qtbot.keyClicks(window.composer.editor, "Look at this")
    assert drop(composer_target(window), file_mime(files / "invoice.png"))
    wait_pictures(qtbot, window, 1)
    assert window.composer.text() == "Look at this"  # no file address was typed into the box


def test_image_data_dropped_on_the_window_and_on_the_message_box(qtbot: QtBot, window: MainWindow) -> None:
    encoded = QMimeData()  # what another program offers: the picture's own bytes
    encoded.setData("image/png", plain_png(50, 40, (10, 200, 10)))
    assert drop(window, encoded)
    wait_pictures(qtbot, window, 1)

    raw = QMimeData()  # what Qt programs offer: an image object
    image = QImage(64, 32, QImage.Format.Format_RGB32)
    image.fill(Qt.GlobalColor.blue)
    raw.setImageData(image)
    assert raw.hasImage()
    assert drop(composer_target(window), raw)
    wait_pictures(qtbot, window, 2)
    assert names_in_composer(window) == [PASTED_NAME, PASTED_NAME]
    assert window.composer.text() == ""


def test_paste_image_data_and_copied_files(qtbot: QtBot, window: MainWindow, files: Path) -> None:
    editor = window.composer.editor
    editor.setFocus()
    clipboard = QGuiApplication.clipboard()

    image = QImage(40, 40, QImage.Format.Format_RGB32)
    image.fill(Qt.GlobalColor.darkYellow)
    clipboard.setImage(image)
    qtbot.keyClick(editor, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)
    wait_pictures(qtbot, window, 1)

    clipboard.setMimeData(file_mime(files / "invoice.png", files / "photo.jpg"))
    qtbot.keyClick(editor, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)
    wait_pictures(qtbot, window, 3)
    assert names_in_composer(window) == [PASTED_NAME, "invoice.png", "photo.jpg"]

    clipboard.setText("plain words")  # text still pastes as text
    qtbot.keyClick(editor, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)
    assert window.composer.text() == "plain words" and len(window.composer.pictures()) == 3


def test_attach_button_picks_several_files(qtbot: QtBot, window: MainWindow, files: Path) -> None:
    qtbot.mouseClick(window.composer.attach_button, Qt.MouseButton.LeftButton)
    dialog = window.composer.findChild(QFileDialog, "attachDialog")
    assert isinstance(dialog, QFileDialog) and dialog.isVisible()
    assert dialog.fileMode() == QFileDialog.FileMode.ExistingFiles
    dialog.setDirectory(str(files))
    dialog.selectFile('"invoice.png" "red.png"')
    dialog.accept()
    wait_pictures(qtbot, window, 2)
    assert names_in_composer(window) == ["invoice.png", "red.png"]


def test_previews_can_be_removed_with_the_keyboard(qtbot: QtBot, window: MainWindow, files: Path) -> None:
    drop(window, file_mime(files / "invoice.png", files / "red.png"))
    wait_pictures(qtbot, window, 2)
    first = window.composer.strip.cards()[0].remove_button
    assert first.accessibleName() == "Remove picture invoice.png"
    qtbot.waitUntil(window.isActiveWindow, timeout=WAIT_MS)
    window.composer.editor.setFocus()
    qtbot.keyClick(window.composer.editor, Qt.Key.Key_Tab)
    assert window.composer.send_button.hasFocus()
    qtbot.keyClick(window.composer.send_button, Qt.Key.Key_Tab)
    assert first.hasFocus()  # the pictures' buttons come right after Send
    qtbot.keyClick(first, Qt.Key.Key_Space)
    assert names_in_composer(window) == ["red.png"]
    focused = QApplication.focusWidget()
    assert focused is window.composer.strip.cards()[0].remove_button  # the keyboard stays on the strip
    qtbot.keyClick(focused, Qt.Key.Key_Space)
    assert names_in_composer(window) == [] and not window.composer.strip.isVisible()
    assert window.composer.editor.hasFocus()


# -- sending and history ---------------------------------------------------------------------


def test_send_stores_the_pictures_and_shows_their_thumbnails(qtbot: QtBot, windows: WindowFactory, files: Path) -> None:
    engine = FakeEngine(["It is invoice 42."])
    window = windows(engine)
    drop(window, file_mime(files / "invoice.png", files / "red.png"))
    wait_pictures(qtbot, window, 2)

    user = send_and_wait(qtbot, window, "What does it say?")
    assert window.composer.pictures() == [] and window.composer.text() == ""
    pictures = attachments_of(user)
    assert [a.name for a in pictures] == ["invoice.png", "red.png"]
    assert "Invoice" in pictures[0].ocr_text and pictures[1].ocr_text == ""
    profile = window.controller.profile
    assert profile is not None and all(a.sha256 in ImageStore(profile.paths.images) for a in pictures)
    # The model was given what was read, marked as the picture's content.
    assert "Invoice" in engine.prompts[-1][-1].content and "invoice.png" in engine.prompts[-1][-1].content

    text = chat_text(window)
    assert "What does it say?" in text and "invoice.png" in text and "red.png" in text
    drawn = thumbnail_images(window)
    assert len(drawn) == 2 and all(image.width() > 1 for image in drawn)
    assert window.chat.blocked == []


def test_pictures_alone_can_be_sent(qtbot: QtBot, window: MainWindow, files: Path) -> None:
    drop(window, file_mime(files / "red.png"))
    wait_pictures(qtbot, window, 1)
    with qtbot.waitSignal(window.controller.replyFinished, timeout=OCR_MS):
        qtbot.mouseClick(window.composer.send_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, window)
    user = stored(window)[0]
    assert user.content == IMAGE_ONLY_TEXT and [a.name for a in attachments_of(user)] == ["red.png"]
    assert IMAGE_ONLY_TEXT not in chat_text(window)
    assert len(thumbnail_images(window)) == 1


def test_clicking_a_thumbnail_enlarges_the_picture(qtbot: QtBot, window: MainWindow, files: Path) -> None:
    drop(window, file_mime(files / "photo.jpg"))
    wait_pictures(qtbot, window, 1)
    user = send_and_wait(qtbot, window, "A photo")

    click_anchor(qtbot, window, f"hearth-action:picture:{user.id}:0")
    dialog = window.pictures.dialog
    assert isinstance(dialog, PictureDialog) and dialog.isVisible()
    qtbot.waitUntil(lambda: dialog.image is not None, timeout=WAIT_MS)
    assert dialog.image is not None and (dialog.image.width(), dialog.image.height()) == (300, 200)
    assert not dialog.view.pixmap().isNull()
    assert "photo.jpg" in dialog.windowTitle()

    qtbot.keyClick(dialog, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: window.pictures.dialog is None, timeout=WAIT_MS)


@pytest.mark.qt_log_ignore(OFFSCREEN_NOISE, "does not support raise")  # a tooltip, on the offscreen platform
def test_what_was_read_is_shown_on_request(qtbot: QtBot, window: MainWindow, files: Path) -> None:
    drop(window, file_mime(files / "invoice.png"))
    wait_pictures(qtbot, window, 1)
    user = send_and_wait(qtbot, window, "Read this")
    read = attachments_of(user)[0].ocr_text
    assert "Invoice" in read
    assert read not in chat_text(window)
    over_thumbnail = point_on_anchor(qtbot, window, f"hearth-action:picture:{user.id}:0")
    viewport = window.chat.viewport()
    QApplication.sendEvent(
        viewport, QHelpEvent(QEvent.Type.ToolTip, over_thumbnail, viewport.mapToGlobal(over_thumbnail))
    )
    assert read in QToolTip.text() and "invoice.png" in QToolTip.text()  # the thumbnail's tooltip
    QToolTip.hideText()

    click_anchor(qtbot, window, f"hearth-action:read:{user.id}")
    qtbot.waitUntil(lambda: read in chat_text(window), timeout=WAIT_MS)
    assert "Fake reply." in chat_text(window)  # the rest of the conversation is still there
    click_anchor(qtbot, window, f"hearth-action:read:{user.id}")
    qtbot.waitUntil(lambda: read not in chat_text(window), timeout=WAIT_MS)


def test_pictures_survive_a_restart_after_the_original_is_deleted(
    qtbot: QtBot, windows: WindowFactory, files: Path, hearth_home: Path
) -> None:
    original = files / "invoice.png"
    window = windows()
    drop(window, file_mime(original))
    wait_pictures(qtbot, window, 1)
    send_and_wait(qtbot, window, "Keep this")
    windows.close(window)

    original.unlink()
    shutil.rmtree(hearth_home / "images" / "thumbs")  # thumbnails are made again from the stored copy
    again = windows()
    click_row(qtbot, again, 0)
    qtbot.waitUntil(lambda: "Keep this" in chat_text(again), timeout=WAIT_MS)
    assert "invoice.png" in chat_text(again)
    drawn = thumbnail_images(again)
    assert len(drawn) == 1 and drawn[0].width() > 1 and again.chat.blocked == []

    user = stored(again)[0]
    store = ImageStore(hearth_home / "images")
    assert Thumbnails(store).path_for(attachments_of(user)[0].sha256).is_file()
    click_anchor(qtbot, again, f"hearth-action:picture:{user.id}:0")
    dialog = again.pictures.dialog
    assert dialog is not None
    qtbot.waitUntil(lambda: dialog.image is not None, timeout=WAIT_MS)


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "said"),
    [
        ("notes.png", b"These are my notes, not a picture.\n", "not a picture Hearth can read"),
        ("empty.png", b"", "empty (0 bytes)"),
        ("holiday.jpg", None, "damaged or cut off"),
        ("huge.png", None, "too large"),
    ],
)
def test_a_bad_file_is_turned_away_with_a_notice_and_nothing_is_lost(
    qtbot: QtBot, window: MainWindow, files: Path, name: str, content: bytes | None, said: str
) -> None:
    bad = files / name
    bad.write_bytes(content if content is not None else (truncated_jpeg() if name.endswith(".jpg") else bomb_png()))
    qtbot.keyClicks(window.composer.editor, "My words stay")
    drop(window, file_mime(files / "red.png"))
    wait_pictures(qtbot, window, 1)

    drop(window, file_mime(bad))
    qtbot.waitUntil(lambda: said in notice(window), timeout=WAIT_MS)
    assert name in notice(window)
    hint = window.message_bar.label.text().split("<br>", 1)
    assert len(hint) == 2 and hint[1].strip()  # what to do about it
    assert names_in_composer(window) == ["red.png"]
    assert window.composer.text() == "My words stay"
    assert window.controller.current is None  # nothing was sent or stored


def test_a_picture_that_breaks_before_sending_comes_back_with_the_text(
    qtbot: QtBot, window: MainWindow, files: Path
) -> None:
    picture = files / "photo.jpg"
    drop(window, file_mime(files / "red.png", picture))
    wait_pictures(qtbot, window, 2)
    picture.write_bytes(truncated_jpeg())  # changed on disk after it was attached

    with qtbot.waitSignal(window.controller.sendFailed, timeout=OCR_MS):
        type_and_send(qtbot, window, "Both of these")
    wait_idle(qtbot, window)
    assert "damaged or cut off" in notice(window) and "photo.jpg" in notice(window)
    assert window.composer.text() == "Both of these"
    assert names_in_composer(window) == ["red.png", "photo.jpg"]
    profile = window.controller.profile
    assert profile is not None and profile.store.list_conversations() == []

    window.composer.strip.cards()[1].remove_button.click()  # take the broken one off and send again
    window.composer.editor.setFocus()
    with qtbot.waitSignal(window.controller.replyFinished, timeout=OCR_MS):
        qtbot.keyClick(window.composer.editor, Qt.Key.Key_Return)
    assert [a.name for a in attachments_of(stored(window)[0])] == ["red.png"]


# -- the GUI thread --------------------------------------------------------------------------


def test_the_window_stays_responsive_while_pictures_are_checked_and_sent(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    big = tmp_path / "big.jpg"
    big.write_bytes(noise_jpeg(3000, 2000))

    # While the worker that checks pictures is busy, a drop returns at once and typing goes on.
    busy = LaneGate(window, "images")
    assert drop(window, file_mime(big))
    assert names_in_composer(window) == ["big.jpg"] and not window.composer.pictures_ready()
    qtbot.keyClicks(window.composer.editor, "typed meanwhile")
    assert window.composer.text() == "typed meanwhile"
    busy.release.set()
    wait_pictures(qtbot, window, 1)

    # Reading and storing the picture happens on the io lane: the window answers meanwhile.
    busy = LaneGate(window, "io")
    qtbot.keyClick(window.composer.editor, Qt.Key.Key_Return)
    assert window.composer.pictures() == [] and window.composer.stop_button.isVisible()
    qtbot.keyClicks(window.composer.editor, "next")
    assert window.composer.text() == "next"
    with qtbot.waitSignal(window.controller.replyFinished, timeout=OCR_MS):
        busy.release.set()
    picture = attachments_of(stored(window)[0])[0]
    assert (picture.width, picture.height) == (2048, 1365)  # normalised on the way in


@pytest.mark.parametrize("sees", [False, True])
def test_it_says_plainly_when_the_model_cannot_see_the_pictures(
    qtbot: QtBot, windows: WindowFactory, files: Path, sees: bool
) -> None:
    window = windows(FakeEngine(vision=sees))
    qtbot.waitUntil(lambda: window.model_label.text().endswith("ready"), timeout=WAIT_MS)
    note = window.composer.sight_note
    assert not note.isVisible(), "nothing to say while no picture waits"
    assert drop(window, file_mime(files / "invoice.png"))
    wait_pictures(qtbot, window, 1)
    assert note.isVisible() is not sees
    if not sees:
        assert "cannot see pictures" in note.text() and "text Hearth reads" in note.text()
    qtbot.mouseClick(window.composer.strip.cards()[0].remove_button, Qt.MouseButton.LeftButton)
    assert not note.isVisible()


def test_deleting_a_conversation_deletes_the_pictures_only_it_held(
    qtbot: QtBot, window: MainWindow, files: Path, hearth_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drop(window, file_mime(files / "invoice.png"))
    wait_pictures(qtbot, window, 1)
    shared = attachments_of(send_and_wait(qtbot, window, "Kept"))[0].sha256
    kept_id = window.controller.current
    qtbot.mouseClick(window.sidebar.new_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.controller.current is None, timeout=WAIT_MS)
    drop(window, file_mime(files / "invoice.png", files / "red.png"))
    wait_pictures(qtbot, window, 2)
    doomed = send_and_wait(qtbot, window, "Doomed")
    own = next(a.sha256 for a in attachments_of(doomed) if a.sha256 != shared)
    store = ImageStore(hearth_home / "images")
    thumbnails = Thumbnails(store)
    for sha in (shared, own):
        then = time.time() - 3600  # stored a while ago, not a moment before a message
        os.utime(store.get(sha), (then, then))
    assert thumbnails.path_for(own).is_file()

    monkeypatch.setattr(QMessageBox, "question", lambda *args: QMessageBox.StandardButton.Yes)
    window.sidebar.deleteRequested.emit(doomed.conversation_id)
    qtbot.waitUntil(lambda: own not in store, timeout=WAIT_MS)
    assert not thumbnails.path_for(own).exists()
    assert shared in store and thumbnails.path_for(shared).is_file()  # the other conversation holds it
    qtbot.waitUntil(lambda: window.sidebar.list.count() == 1, timeout=WAIT_MS)
    click_row(qtbot, window, 0)
    qtbot.waitUntil(lambda: window.controller.current == kept_id and "Kept" in chat_text(window), timeout=WAIT_MS)
    assert len(thumbnail_images(window)) == 1 and window.chat.blocked == []
