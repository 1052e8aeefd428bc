"""Pictures on their way into a message: what a drop or the clipboard offers, and their previews.

On the GUI thread Hearth only looks at what is offered — file names, or the bytes of an image
another program put on the clipboard. Reading, decoding and scaling run on the runner's
``images`` lane (`make_preview`), and the PNG bytes of raw pasted image data are made off the
GUI thread too (`encoded`), so dropping a 50-megapixel photo never freezes the window.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QMimeData
from PySide6.QtGui import QImage

from app.core.attachments import ImageSource
from app.core.images import normalise
from app.engines.ocr import RapidOcrReader, TextReader
from app.errors import ImageError

PictureSource = Path | bytes | QImage
PREVIEW_SIDE = 144  # pixels of a composer preview: twice what it shows, for high-DPI screens
PASTED_NAME = "Pasted picture"
# Encoded image types other programs offer, best first; taking their bytes decodes nothing.
RAW_IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp", "image/tiff")
FILE_FILTER = "Pictures (*.png *.jpg *.jpeg *.webp *.gif *.bmp *.tif *.tiff);;All files (*)"


@dataclass(eq=False)
class Picture:
    """One picture in the composer: where it comes from, and its preview once made."""

    source: PictureSource
    name: str
    preview: QImage | None = None


def local_files(mime: QMimeData) -> list[Path]:
    if not mime.hasUrls():
        return []
    return [Path(url.toLocalFile()) for url in mime.urls() if url.isLocalFile() and url.toLocalFile()]


def _raw_image(mime: QMimeData) -> bytes | None:
    for kind in RAW_IMAGE_TYPES:
        if mime.hasFormat(kind):
            data = bytes(mime.data(kind).data())
            if data:
                return data
    return None


def offers_pictures(mime: QMimeData, text_first: bool = False) -> bool:
    """Whether `mime` carries files or image data to attach.

    With `text_first` (the message box), plain text wins over image data: a spreadsheet or a
    word processor puts both on the clipboard, and then the words are what was meant.
    """
    if local_files(mime):
        return True
    if text_first and mime.hasText() and mime.text().strip():
        return False
    return mime.hasImage() or any(mime.hasFormat(kind) for kind in RAW_IMAGE_TYPES)


def pictures_from_mime(mime: QMimeData, text_first: bool = False) -> list[Picture]:
    """The pictures `mime` offers: its local files, else its image bytes, else its image."""
    if not offers_pictures(mime, text_first):
        return []
    files = local_files(mime)
    if files:
        return [Picture(path, path.name) for path in files]
    raw = _raw_image(mime)
    if raw is not None:
        return [Picture(raw, PASTED_NAME)]
    image = mime.imageData()
    if isinstance(image, QImage) and not image.isNull():
        return [Picture(image, PASTED_NAME)]
    return []


def encoded(source: PictureSource | Picture) -> ImageSource:
    """What the core can read: a file or encoded bytes. Encoding a QImage is slow: not on the GUI thread."""
    if isinstance(source, Picture):
        source = source.source
    if not isinstance(source, QImage):
        return source
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not source.save(buffer, "PNG"):  # type: ignore[call-overload]  # the stubs say bytes; Qt takes str
        raise ImageError(
            "The pasted picture could not be read.", "Copy it again, or save it as a file and attach that."
        )
    buffer.close()
    return bytes(data.data())


def make_preview(source: PictureSource, name: str, side: int = PREVIEW_SIDE) -> QImage:
    """A small upright preview, checked as the message will check it: ImageError for anything unreadable."""
    small = normalise(encoded(source), max_side=side, name=name)
    preview = QImage.fromData(small.data)
    if preview.isNull():
        raise ImageError(f"'{name}' could not be shown.", "Attach it again, or save it in another format.")
    return preview


@functools.cache
def text_reader() -> TextReader:
    """One reader for the whole process: its models load on first use, on a worker thread."""
    return RapidOcrReader()


def warm_up(reader: TextReader) -> None:
    """Load the reader's models by reading a blank picture, so the first message need not wait."""
    from PIL import Image

    blank = io.BytesIO()
    Image.new("RGB", (32, 32), (255, 255, 255)).save(blank, format="PNG")
    reader.read(normalise(blank.getvalue()))
