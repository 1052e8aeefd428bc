"""Real files and a real HTTP server for the catalog tests: GGUF files, fake distributions, wheels."""

from __future__ import annotations

import hashlib
import re
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from app.catalog.catalog import ModelEntry, ModelSource, PackagePart


def write_gguf(path: Path, architecture: str = "llama", name: str = "tiny", chat_template: str | None = None) -> Path:
    """A small valid GGUF: a few metadata keys and two tiny f32 tensors."""
    import gguf

    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name(name)
    writer.add_context_length(256)
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    writer.add_tensor("token_embd.weight", np.arange(64, dtype=np.float32).reshape(8, 8))
    writer.add_tensor("output_norm.weight", np.ones(8, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def url_entry(data: bytes, url: str, model_id: str = "test-model", **changes: Any) -> ModelEntry:
    fields: dict[str, Any] = {
        "id": model_id,
        "name": "Test model",
        "kind": "chat",
        "format": "gguf",
        "file": f"{model_id}.gguf",
        "sha256": sha256(data),
        "size": len(data),
        "licence": "MIT",
        "capabilities": ("chat",),
        "source": ModelSource("url", url=url),
    }
    fields.update(changes)
    return ModelEntry(**fields)


def package_entry(data: bytes, parts: list[PackagePart], model_id: str = "packaged") -> ModelEntry:
    kind = "pypi-file" if len(parts) == 1 else "pypi-chunks"
    return url_entry(data, "", model_id, source=ModelSource(kind, parts=tuple(parts)))


def normalized(package: str) -> str:
    return re.sub(r"[-_.]+", "_", package).lower()


def install_fake_distribution(
    site: Path, package: str, version: str, member: str, data: bytes, extra: dict[str, bytes] | None = None
) -> PackagePart:
    """An installed distribution as pip leaves it: a dist-info folder and the data file (plus `extra` files)."""
    dist_info = site / f"{normalized(package)}-{version}.dist-info"
    dist_info.mkdir(parents=True)
    members = {member: data, **(extra or {})}
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n")
    record = "".join(f"{path},sha256={sha256(content)},{len(content)}\n" for path, content in members.items())
    (dist_info / "RECORD").write_text(f"{record}{dist_info.name}/METADATA,,\n")
    for path, content in members.items():
        target = site / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return PackagePart(package, version, member)


def build_wheel(
    folder: Path, package: str, version: str, member: str, data: bytes, extra: dict[str, bytes] | None = None
) -> Path:
    """A minimal wheel holding one data file (plus `extra` files), good enough for pip to download from a
    local folder."""
    name = normalized(package)
    dist_info = f"{name}-{version}.dist-info"
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        member: data,
        **(extra or {}),
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n".encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: hearth-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{path},,\n" for path in files) + f"{dist_info}/RECORD,,\n"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, content in files.items():
            archive.writestr(path, content)
        archive.writestr(f"{dist_info}/RECORD", record)
    return wheel


@dataclass
class Served:
    """What the loopback server serves, and what it was asked."""

    data: bytes
    honour_range: bool = True
    cut_first_at: int | None = None  # close the first response after this many bytes
    always_cut_at: int | None = None  # close every response after this many body bytes
    stall_at: int | None = None  # the first response sends this many body bytes, then waits for `release`
    hang_up: bool = False  # once released, a stalled response hangs up instead of sending the rest
    release: threading.Event = field(default_factory=threading.Event)
    status: int = 200
    ranges: list[str | None] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        served = self.server.served
        requested = self.headers.get("Range")
        served.ranges.append(requested)
        if served.status != 200:
            self.send_error(served.status)
            return
        start = self._start(served, requested)
        if start is None:
            return
        body = served.data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = served.always_cut_at
        if served.cut_first_at is not None and len(served.ranges) == 1:
            cut = served.cut_first_at
        if cut is None and served.stall_at is not None and len(served.ranges) == 1:
            self._stall(served, body)
            return
        try:
            self.wfile.write(body if cut is None else body[:cut])
            self.wfile.flush()
        except OSError:
            pass  # the client hung up (a cancelled download)

    def _stall(self, served: Served, body: bytes) -> None:
        """Send the start of the body, wait until the test releases it, then the rest (or hang up)."""
        at = served.stall_at or 0
        try:
            self.wfile.write(body[:at])
            self.wfile.flush()
            served.release.wait(timeout=30)
            if not served.hang_up:
                self.wfile.write(body[at:])
                self.wfile.flush()
        except OSError:
            pass  # the client hung up (a cancelled download)

    def _start(self, served: Served, requested: str | None) -> int | None:
        match = re.fullmatch(r"bytes=(\d+)-", requested or "")
        if match is None or not served.honour_range:
            self.send_response(200)
            return 0
        start = int(match.group(1))
        total = len(served.data)
        if start >= total:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{total}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{total - 1}/{total}")
        return start

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    served: Served
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # dropped connections are part of the tests


@contextmanager
def serve(served: Served, port: int = 0) -> Iterator[str]:
    """Serve `served.data` at http://127.0.0.1:PORT/model.gguf until the block ends (any free port
    unless `port` names one: a server started again where an earlier one was)."""
    server = _Server(("127.0.0.1", port), _Handler)
    server.served = served
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/model.gguf"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
