"""Models bundled with a frozen build: used in place after the data folder, never copied or written to."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from app.catalog.catalog import Catalog, ModelEntry, ModelFile, ModelSource
from app.catalog.library import STAMP_DIR, ModelLibrary, bundled_models
from app.errors import ModelError
from app.paths import DataPaths, default_paths
from tests.catalog.helpers import Served, serve, sha256, url_entry

DATA = os.urandom(256 * 1024)
NOWHERE = "https://example.invalid/model.gguf"  # a fetch would fail: these tests must not need one


@pytest.fixture
def paths() -> DataPaths:
    return default_paths().ensure()  # under the per-test HEARTH_HOME


@pytest.fixture
def bundled(tmp_path: Path) -> Path:
    folder = tmp_path / "bundle" / "models"
    folder.mkdir(parents=True)
    return folder


def library_with(paths: DataPaths, bundled: Path, *entries: ModelEntry) -> ModelLibrary:
    return ModelLibrary(paths, Catalog(entries), bundled=bundled)


def test_a_model_only_in_the_bundle_is_used_in_place(paths: DataPaths, bundled: Path) -> None:
    entry = url_entry(DATA, NOWHERE)
    shipped = bundled / entry.file
    shipped.write_bytes(DATA)
    library = library_with(paths, bundled, entry)
    assert library.status(entry) == "present"
    assert library.ensure(entry) == shipped
    assert library.status(entry) == "verified"
    assert not (paths.models / entry.file).exists()  # not copied into the data folder
    assert (paths.models / STAMP_DIR / f"{entry.id}.json").is_file()  # the check is remembered there


def test_the_data_folder_comes_first(paths: DataPaths, bundled: Path) -> None:
    entry = url_entry(DATA, NOWHERE)
    (bundled / entry.file).write_bytes(DATA)
    own = paths.models / entry.file
    own.write_bytes(DATA)
    library = library_with(paths, bundled, entry)
    assert library.path_for(entry) == own
    assert library.ensure(entry) == own


def test_a_damaged_bundled_copy_is_refused(paths: DataPaths, bundled: Path) -> None:
    entry = url_entry(DATA, NOWHERE)
    (bundled / entry.file).write_bytes(DATA[::-1])
    library = library_with(paths, bundled, entry)
    with pytest.raises(ModelError, match="damaged"):
        library.ensure(entry)


def test_fetching_writes_to_the_data_folder_never_the_bundle(paths: DataPaths, bundled: Path) -> None:
    with serve(Served(DATA)) as url:
        entry = url_entry(DATA, url)
        shipped = bundled / entry.file
        shipped.write_bytes(DATA[::-1])  # damaged: the user fetches a good copy
        library = library_with(paths, bundled, entry)
        fetched = library.fetch(entry)
    assert fetched == paths.models / entry.file and fetched.read_bytes() == DATA
    assert shipped.read_bytes() == DATA[::-1]
    assert library.path_for(entry) == fetched and library.verify(entry)


def test_removing_keeps_the_bundled_copy(paths: DataPaths, bundled: Path) -> None:
    entry = url_entry(DATA, NOWHERE)
    shipped = bundled / entry.file
    shipped.write_bytes(DATA)
    (paths.models / entry.file).write_bytes(DATA)
    library = library_with(paths, bundled, entry)
    library.remove(entry)
    assert not (paths.models / entry.file).exists()
    assert shipped.read_bytes() == DATA
    assert library.path_for(entry) == shipped and library.verify(entry)


def test_a_model_of_several_files_is_used_from_the_bundle_only_when_whole(paths: DataPaths, bundled: Path) -> None:
    config = b'{"layers": 2}\n'
    companion = ModelFile("config.json", sha256(config), len(config), ModelSource("url", url=NOWHERE))
    entry = url_entry(DATA, NOWHERE, "speech", kind="stt", file="model.bin", companions=(companion,))
    folder = bundled / entry.id
    folder.mkdir()
    (folder / "model.bin").write_bytes(DATA)
    library = library_with(paths, bundled, entry)
    assert library.path_for(entry) == paths.models / "speech" / "model.bin"  # the config is missing
    assert not library.is_present(entry)
    (folder / "config.json").write_bytes(config)
    assert library.folder_for(entry) == folder
    assert library.verify(entry) and library.status(entry) == "verified"


def test_the_bundled_folder_exists_only_in_a_frozen_build(
    paths: DataPaths, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert bundled_models() is None
    assert ModelLibrary(paths, Catalog(())).bundled is None
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert bundled_models() == tmp_path / "models"
    assert ModelLibrary(paths, Catalog(())).bundled == tmp_path / "models"
