"""URL downloads against a real HTTP server on 127.0.0.1: full, resumed, damaged, cut short, cancelled."""

from __future__ import annotations

import errno
import os
import socket
import threading
from pathlib import Path

import pytest

from app.catalog.fetch import fetch_entry
from app.catalog.transfer import disk_errors, partial_path, sha256_file
from app.errors import Cancelled, FetchError
from tests.catalog.helpers import Served, serve, sha256, url_entry

DATA = os.urandom(3 * 1024 * 1024 + 123)


@pytest.fixture
def models(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    return folder


def test_full_download_is_verified_and_moved_into_place(models: Path) -> None:
    served = Served(DATA)
    seen: list[tuple[int, int, str]] = []
    with serve(served) as url:
        entry = url_entry(DATA, url)
        dest = fetch_entry(entry, models / entry.file, models / ".partial", lambda *a: seen.append(a))
    assert dest.read_bytes() == DATA
    assert served.ranges == [None]
    assert not partial_path(models / ".partial", entry).exists()
    assert seen[-1][0] == seen[-1][1] == len(DATA)
    assert any(stage.startswith("Downloading") for _, _, stage in seen)


def test_cut_connection_is_resumed_with_range(models: Path) -> None:
    served = Served(DATA, cut_first_at=1_000_000)
    with serve(served) as url:
        entry = url_entry(DATA, url)
        dest = fetch_entry(entry, models / entry.file, models / ".partial")
    assert served.ranges == [None, "bytes=1000000-"]
    assert sha256_file(dest) == entry.sha256


def test_server_ignoring_range_starts_over(models: Path) -> None:
    served = Served(DATA, cut_first_at=500_000, honour_range=False)
    with serve(served) as url:
        entry = url_entry(DATA, url)
        dest = fetch_entry(entry, models / entry.file, models / ".partial")
    assert served.ranges == [None, "bytes=500000-"]
    assert dest.read_bytes() == DATA


def test_wrong_checksum_leaves_nothing(models: Path) -> None:
    with serve(Served(DATA)) as url:
        entry = url_entry(DATA, url, sha256=sha256(b"something else"))
        with pytest.raises(FetchError, match="sha256"):
            fetch_entry(entry, models / entry.file, models / ".partial")
    assert not (models / entry.file).exists()
    assert not partial_path(models / ".partial", entry).exists()


def test_server_with_a_shorter_file_is_rejected(models: Path) -> None:
    served = Served(DATA[:-1000])
    with serve(served) as url:
        entry = url_entry(DATA, url)
        with pytest.raises(FetchError, match="bytes"):
            fetch_entry(entry, models / entry.file, models / ".partial")
    assert not (models / entry.file).exists()
    assert not partial_path(models / ".partial", entry).exists()


def test_server_that_always_stops_early_is_rejected(models: Path) -> None:
    served = Served(DATA, always_cut_at=0)
    with serve(served) as url:
        entry = url_entry(DATA, url)
        with pytest.raises(FetchError, match="keeps stopping"):
            fetch_entry(entry, models / entry.file, models / ".partial")
    assert not (models / entry.file).exists()


def test_cancel_keeps_a_partial_that_the_next_fetch_resumes(models: Path) -> None:
    cancel = threading.Event()

    def stop_after_a_while(done: int, total: int, stage: str) -> None:
        if done >= 200_000:
            cancel.set()

    served = Served(DATA)
    with serve(served) as url:
        entry = url_entry(DATA, url)
        partial = partial_path(models / ".partial", entry)
        with pytest.raises(Cancelled):
            fetch_entry(entry, models / entry.file, models / ".partial", stop_after_a_while, cancel)
        kept = partial.stat().st_size
        assert 0 < kept < len(DATA)
        assert not (models / entry.file).exists()
        dest = fetch_entry(entry, models / entry.file, models / ".partial")
    assert served.ranges[-1] == f"bytes={kept}-"
    assert dest.read_bytes() == DATA


def test_a_damaged_partial_left_by_an_earlier_fetch_is_caught_after_the_resume(models: Path) -> None:
    """The sha256 is computed as bytes arrive; a resumed partial's earlier bytes are read, not trusted."""
    served = Served(DATA)
    with serve(served) as url:
        entry = url_entry(DATA, url)
        partial = partial_path(models / ".partial", entry)
        partial.parent.mkdir()
        partial.write_bytes(b"\0" * 1000 + DATA[1000:600_000])
        with pytest.raises(FetchError, match="sha256"):
            fetch_entry(entry, models / entry.file, models / ".partial")
    assert served.ranges == ["bytes=600000-"]
    assert not (models / entry.file).exists() and not partial.exists()


def test_complete_partial_is_only_verified(models: Path) -> None:
    served = Served(DATA)
    with serve(served) as url:
        entry = url_entry(DATA, url)
        partial = partial_path(models / ".partial", entry)
        partial.parent.mkdir()
        partial.write_bytes(DATA)
        fetch_entry(entry, models / entry.file, models / ".partial")
    assert served.ranges == []
    assert (models / entry.file).read_bytes() == DATA


def test_http_error_is_a_fetch_error(models: Path) -> None:
    with serve(Served(DATA, status=404)) as url:
        entry = url_entry(DATA, url)
        with pytest.raises(FetchError, match="404"):
            fetch_entry(entry, models / entry.file, models / ".partial")


def test_unreachable_host_is_a_fetch_error(models: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    entry = url_entry(DATA, f"http://127.0.0.1:{port}/model.gguf")
    with pytest.raises(FetchError, match="Cannot reach") as caught:
        fetch_entry(entry, models / entry.file, models / ".partial")
    assert "resumes" in caught.value.hint


def test_full_disk_becomes_a_fetch_error_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="full") as caught, disk_errors(tmp_path):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert "Free up space" in caught.value.hint
