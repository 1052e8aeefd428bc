"""SafeTextBrowser: untrusted content must not fetch, read outside files, or open links by itself.

A real HTTP server counts connections, and inotify sees reads made by Qt's C++ code too.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QByteArray, QObject, QPoint, Qt, QTimer, QUrl, Slot
from PySide6.QtGui import QDesktopServices, QGuiApplication, QImage, QTextCursor, QTextDocument
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QMessageBox, QWidget
from pytestqt.qtbot import QtBot

from app.ui.safe_browser import GuardedDocument, SafeTextBrowser, build_confirm_box, confirm_and_open, is_openable_link
from tests.conftest import require

IN_ACCESS, IN_OPEN, IN_NONBLOCK, IN_CLOEXEC = 0x1, 0x20, 0o4000, 0o2000000  # <sys/inotify.h>
_EVENT = struct.Struct("iIII")


def _png_bytes(rgb: tuple[int, int, int] = (255, 0, 0)) -> bytes:
    """A valid 4x4 PNG, built by hand so the server thread needs no Qt."""
    raw = b"".join(b"\x00" + bytes(rgb) * 4 for _ in range(4))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


class OpenWatcher:
    """Names of files opened or read in one directory, seen by the kernel (inotify)."""

    def __init__(self, directory: Path) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self.fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        if libc.inotify_add_watch(self.fd, os.fsencode(directory), IN_OPEN | IN_ACCESS) < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch failed for {directory}")

    def drain(self) -> list[str]:
        names: list[str] = []
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return names
            offset = 0
            while offset < len(data):
                _wd, _mask, _cookie, length = _EVENT.unpack_from(data, offset)
                start = offset + _EVENT.size
                names.append(data[start : start + length].rstrip(b"\0").decode())
                offset = start + length

    def close(self) -> None:
        os.close(self.fd)


class CountingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _CountingHandler)
        self.connections = 0
        self.paths: list[str] = []
        self.lock = threading.Lock()


class _CountingHandler(BaseHTTPRequestHandler):
    server: CountingServer

    def setup(self) -> None:
        # Counted per connection, before parsing, so even a malformed request is seen.
        with self.server.lock:
            self.server.connections += 1
        super().setup()

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.server.paths.append(self.path)
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


class Recorder:
    """Stands in for the opener or the dialog's answer: records each call, returns a fixed value."""

    def __init__(self, answer: object = True) -> None:
        self.calls: list[Any] = []
        self.answer = answer

    def __call__(self, arg: Any) -> object:
        self.calls.append(arg)
        return self.answer


class UrlSink(QObject):
    """Registered with QDesktopServices, so even an open from Qt's C++ side lands here."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[QUrl] = []

    @Slot(QUrl)
    def handle(self, url: QUrl) -> None:
        self.urls.append(QUrl(url))


@pytest.fixture
def url_sink() -> Iterator[UrlSink]:
    sink = UrlSink()
    for scheme in ("http", "https", "mailto"):
        # The 6.12 stubs say bytes, but the binding only accepts the method name as str.
        QDesktopServices.setUrlHandler(scheme, sink, "handle")  # type: ignore[arg-type]
    yield sink
    for scheme in ("http", "https", "mailto"):
        QDesktopServices.unsetUrlHandler(scheme)


@pytest.fixture
def server() -> Iterator[CountingServer]:
    srv = CountingServer()
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def folders(tmp_path: Path) -> dict[str, Path]:
    require(sys.platform.startswith("linux"), "inotify is Linux-only")
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    (allowed / "inside.png").write_bytes(_png_bytes((0, 255, 0)))
    (outside / "secret.png").write_bytes(_png_bytes())
    (outside / "secret.css").write_text("p { color: red }")
    (allowed / "escape.png").symlink_to(outside / "secret.png")
    return {"allowed": allowed, "outside": outside}


@pytest.fixture
def watchers(folders: dict[str, Path]) -> Iterator[dict[str, OpenWatcher]]:
    made = {name: OpenWatcher(path) for name, path in folders.items()}
    yield made
    for watcher in made.values():
        watcher.close()


def _browser(qtbot: QtBot, allowed: Path, *, base: bool = True) -> SafeTextBrowser:
    browser = SafeTextBrowser(allowed_roots=[allowed])
    qtbot.addWidget(browser)
    browser.resize(500, 700)
    if base:
        browser.document().setBaseUrl(QUrl.fromLocalFile(str(allowed) + "/"))
    browser.show()
    qtbot.waitExposed(browser)
    return browser


def _settle(qtbot: QtBot, browser: SafeTextBrowser) -> None:
    qtbot.wait(200)
    browser.grab()  # paints every image, which is when Qt's image handler asks for it
    qtbot.wait(50)


def _hostile_html(port: int, outside: Path) -> str:
    remote = f"http://127.0.0.1:{port}"
    secret = outside / "secret.png"
    return f"""
    <html><head>
    <link rel="stylesheet" type="text/css" href="{remote}/link.css">
    <link rel="stylesheet" type="text/css" href="../outside/secret.css">
    <style>@import url({remote}/import.css); p.bg {{ background-image: url({remote}/css-bg.png); }}</style>
    </head><body background="{remote}/body-bg.png">
    <img src="{remote}/a.png"> <img src="//127.0.0.1:{port}/b"> <img src="https://127.0.0.1:{port}/c.png">
    <img src="ftp://127.0.0.1:{port}/d.png">
    <p style="background-image:url({remote}/inline-bg.png)">inline background</p>
    <p class="bg">class background</p>
    <table background="{remote}/table-bg.png"><tr><td background="{remote}/td-bg.png">cell</td></tr></table>
    <img src="{QUrl.fromLocalFile(str(secret)).toString()}"> <img src="{secret}">
    <img src="../outside/secret.png"> <img src="escape.png">
    <p style="background-image:url(../outside/secret.png)">outside background</p>
    <img src="inside.png">
    </body></html>
    """


def test_no_fetch_and_no_outside_read(
    qtbot: QtBot, server: CountingServer, folders: dict[str, Path], watchers: dict[str, OpenWatcher]
) -> None:
    port = server.server_address[1]
    browser = _browser(qtbot, folders["allowed"])
    browser.set_markdown(
        f"![x](http://127.0.0.1:{port}/md.png)\n\n![y][ref]\n\n[ref]: http://127.0.0.1:{port}/ref.png\n\n"
        f'<img src="http://127.0.0.1:{port}/raw-in-md.png">\n'
    )
    _settle(qtbot, browser)
    assert "[image: x]" in browser.toPlainText()
    browser.setHtml(_hostile_html(port, folders["outside"]))
    _settle(qtbot, browser)

    assert server.connections == 0, server.paths
    opened_outside = watchers["outside"].drain()
    assert not [name for name in opened_outside if name.startswith("secret")], opened_outside
    # Positive control: the allowed image was read, and the watcher saw it happen.
    assert "inside.png" in watchers["allowed"].drain()
    assert not any("inside.png" in url for url in browser.blocked)

    blocked = " ".join(browser.blocked)
    for name in ("link.css", "import.css", "a.png", "/b", "c.png", "d.png", "inline-bg.png", "td-bg.png"):
        assert name in blocked, (name, browser.blocked)
    # Every spelling of the outside file resolves to one URL, refused once and then cached.
    assert QUrl.fromLocalFile(str(folders["outside"] / "secret.png")).toString() in browser.blocked
    assert "allowed/escape.png" in blocked and "outside/secret.css" in blocked

    # Positive control for the watcher itself: an open from here (direct and via the link) shows.
    (folders["outside"] / "secret.png").read_bytes()
    (folders["allowed"] / "escape.png").read_bytes()
    assert watchers["outside"].drain().count("secret.png") >= 2


def test_relative_names_without_base_are_not_read_from_cwd(
    qtbot: QtBot, folders: dict[str, Path], watchers: dict[str, OpenWatcher], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Qt's image handler falls back to QImage::load(src), i.e. relative to the process cwd.
    monkeypatch.chdir(folders["allowed"])
    browser = _browser(qtbot, folders["allowed"], base=False)
    secret = folders["outside"] / "secret.png"
    browser.setHtml(f'<img src="../outside/secret.png"><img src="{secret}"><img src="inside.png">')
    _settle(qtbot, browser)
    assert watchers["outside"].drain() == []
    assert len(browser.blocked) == 3


def test_document_path_cannot_bypass_policy(
    qtbot: QtBot, folders: dict[str, Path], watchers: dict[str, OpenWatcher]
) -> None:
    browser = _browser(qtbot, folders["allowed"])
    doc = browser.document()
    assert isinstance(doc, GuardedDocument)
    secret = QUrl.fromLocalFile(str(folders["outside"] / "secret.png"))
    image_type = int(QTextDocument.ResourceType.ImageResource.value)
    for result in (doc.loadResource(image_type, secret), doc.resource(image_type, secret)):
        assert isinstance(result, QImage) and result.size().width() == 1  # blank placeholder
    css_type = int(QTextDocument.ResourceType.StyleSheetResource.value)
    assert doc.loadResource(css_type, QUrl.fromLocalFile(str(folders["outside"] / "secret.css"))) is None
    assert watchers["outside"].drain() == []
    inside = doc.resource(image_type, QUrl("inside.png"))
    assert isinstance(inside, QImage) and inside.width() == 4


def test_changing_roots_drops_cached_decisions(qtbot: QtBot, folders: dict[str, Path]) -> None:
    browser = _browser(qtbot, folders["allowed"])
    image_type = int(QTextDocument.ResourceType.ImageResource.value)
    assert browser.document().resource(image_type, QUrl("inside.png")).width() == 4
    browser.set_allowed_roots([folders["outside"]])
    assert browser.document().resource(image_type, QUrl("inside.png")).width() == 1
    assert browser.allowed_roots == [folders["outside"].resolve()]


def test_search_paths_and_documents_stay_locked(qtbot: QtBot, tmp_path: Path) -> None:
    browser = SafeTextBrowser(allowed_roots=[tmp_path])
    qtbot.addWidget(browser)
    assert browser.searchPaths() == []
    with pytest.raises(ValueError):
        browser.setSearchPaths([str(tmp_path)])
    with pytest.raises(TypeError):
        browser.setDocument(QTextDocument())
    assert not browser.openLinks() and not browser.openExternalLinks()


def test_data_images_are_inline_and_allowed(qtbot: QtBot, tmp_path: Path) -> None:
    browser = _browser(qtbot, tmp_path)
    encoded = bytes(QByteArray(_png_bytes()).toBase64().data()).decode()
    svg = "data:image/svg+xml;utf8,<svg xmlns='http://www.w3.org/2000/svg'/>"
    browser.setHtml(f'<img src="data:image/png;base64,{encoded}"><img src="{svg}">')
    _settle(qtbot, browser)
    assert len(browser.blocked) == 1 and browser.blocked[0].startswith("data:image/svg")


def _anchor_point(browser: SafeTextBrowser, prefix: str, nth: int = 0) -> QPoint:
    """Where on screen the nth distinct link whose href starts with prefix is drawn."""
    cursor = QTextCursor(browser.document())
    starts: dict[str, int] = {}
    for pos in range(1, browser.document().characterCount()):
        cursor.setPosition(pos)  # the character before pos (after it, at a block's start)
        href = cursor.charFormat().anchorHref()
        if href.startswith(prefix):
            starts.setdefault(href, pos)
    cursor.setPosition(list(starts.values())[nth] + 1)  # one more, to land inside the anchor
    return browser.cursorRect(cursor).center()


def test_click_on_link_only_emits(qtbot: QtBot, tmp_path: Path, url_sink: UrlSink) -> None:
    browser = _browser(qtbot, tmp_path)
    browser.set_markdown("See [the site](https://example.com/path?q=1).")
    with qtbot.waitSignal(browser.linkRequested) as clicked:
        qtbot.mouseClick(browser.viewport(), Qt.MouseButton.LeftButton, pos=_anchor_point(browser, "https:"))
    assert clicked.args == [QUrl("https://example.com/path?q=1")]
    with qtbot.waitSignal(browser.linkRequested) as emitted:
        browser.anchorClicked.emit(QUrl("https://example.org/x"))
    assert emitted.args == [QUrl("https://example.org/x")]
    qtbot.wait(50)
    assert url_sink.urls == [] and browser.source().isEmpty()
    assert "the site" in browser.toPlainText()


def test_copy_link_puts_code_on_clipboard(qtbot: QtBot, tmp_path: Path) -> None:
    browser = _browser(qtbot, tmp_path)
    browser.set_markdown("```python\nfirst = 1\n```\n\ntext\n\n```sh\necho second\n```\n")
    QGuiApplication.clipboard().setText("before")
    with qtbot.waitSignal(browser.copyRequested) as copied:
        qtbot.mouseClick(browser.viewport(), Qt.MouseButton.LeftButton, pos=_anchor_point(browser, "hearth-copy:", 1))
    assert copied.args == ["1"]
    assert QGuiApplication.clipboard().text() == "echo second\n"
    with qtbot.assertNotEmitted(browser.linkRequested):
        browser.anchorClicked.emit(QUrl("hearth-copy:0"))
    assert QGuiApplication.clipboard().text() == "first = 1\n"


URL = "https://user@example.com:8443/some/path?query=a%20b&x=1#frag"


def test_confirm_shows_full_url_and_no_opens_nothing(qtbot: QtBot) -> None:
    boxes: list[QMessageBox] = []
    opener = Recorder()

    def answer_no(box: QMessageBox) -> object:
        boxes.append(box)
        assert box.defaultButton() is box.button(QMessageBox.StandardButton.No)
        assert URL in box.text() and "Open this link in your browser?" in box.text()
        assert box.textFormat() == Qt.TextFormat.PlainText
        return QMessageBox.StandardButton.No

    assert confirm_and_open(None, QUrl(URL), ask=answer_no, opener=opener) is False
    assert len(boxes) == 1 and opener.calls == []


def test_confirm_yes_opens_exact_url(qtbot: QtBot) -> None:
    opener = Recorder()
    ask = Recorder(QMessageBox.StandardButton.Yes)
    assert confirm_and_open(None, QUrl(URL), ask=ask, opener=opener) is True
    assert [u.toString(QUrl.ComponentFormattingOption.FullyEncoded) for u in opener.calls] == [URL]
    assert len(ask.calls) == 1 and isinstance(ask.calls[0], QMessageBox)


def _answering(action: str) -> Callable[[QWidget | None, QUrl], QMessageBox]:
    """A box factory whose real dialog is answered from inside its own event loop."""

    def make_box(parent: QWidget | None, url: QUrl) -> QMessageBox:
        box = build_confirm_box(parent, url)
        yes = box.button(QMessageBox.StandardButton.Yes)
        # Enter takes the default button, which must be No.
        QTimer.singleShot(0, yes.click if action == "yes" else lambda: QTest.keyClick(box, Qt.Key.Key_Return))
        return box

    return make_box


@pytest.mark.qt_log_ignore("does not support propagateSizeHints")  # offscreen platform, showing a dialog
@pytest.mark.parametrize(("action", "opens"), [("yes", True), ("enter", False)])
def test_real_dialog_answered(qtbot: QtBot, url_sink: UrlSink, action: str, opens: bool) -> None:
    # With the default opener, QDesktopServices.openUrl reaches the registered sink.
    assert confirm_and_open(None, QUrl(URL), make_box=_answering(action)) is opens
    assert url_sink.urls == ([QUrl(URL)] if opens else [])


@pytest.mark.parametrize(
    "link", ["javascript:alert(1)", "file:///etc/passwd", "data:text/html,x", "hearth-copy:0", "https://"]
)
def test_unopenable_links_never_ask(link: str) -> None:
    assert not is_openable_link(QUrl(link))
    ask = Recorder(QMessageBox.StandardButton.Yes)
    assert confirm_and_open(None, QUrl(link), ask=ask, opener=Recorder()) is False
    assert ask.calls == []


def test_spoofed_userinfo_shows_real_host(qtbot: QtBot) -> None:
    box = build_confirm_box(None, QUrl("https://bank.example@evil.test/login"))
    assert "Site: evil.test" in box.text()
    box.deleteLater()
