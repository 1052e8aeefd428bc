"""Models made of several files: one folder per model, every file fetched, checked and stamped."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from app.catalog import packages
from app.catalog.catalog import Catalog, ModelEntry, ModelFile, ModelSource, PackagePart
from app.catalog.library import STAMP_DIR, ModelLibrary
from app.catalog.transfer import Progress, sha256_file
from app.errors import Cancelled, ModelError
from app.paths import DataPaths, default_paths
from tests.catalog.helpers import build_wheel, sha256, url_entry

WEIGHTS = os.urandom(300_000)
HALF = len(WEIGHTS) // 2
COMPANIONS = {"config.json": b'{"layers": 4}\n', "tokenizer.json": os.urandom(40_000), "vocabulary.txt": b"a\nb\nc\n"}
PART1 = PackagePart("hearth-speech-part1", "1.0.0", "hearth_speech_part1/data/model.bin.part1")
PART2 = PackagePart("hearth-speech-part2", "1.0.0", "hearth_speech_part2/data/model.bin.part2")


class CountingHasher:
    """The real hash, counted, so a test can tell which files a check hashed."""

    def __init__(self) -> None:
        self.hashed: list[str] = []

    def __call__(self, path: Path, progress: Progress | None = None, cancel: threading.Event | None = None) -> str:
        self.hashed.append(path.name)
        return sha256_file(path, progress, cancel)


class PipCounter:
    """Counts the wheels pip downloads (the real download still runs)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.packages: list[str] = []
        real = packages._pip_download

        def counted(part: PackagePart, work_dir: Path, cancel: threading.Event | None) -> Path:
            self.packages.append(part.package)
            return real(part, work_dir, cancel)

        monkeypatch.setattr(packages, "_pip_download", counted)


def companion_file(name: str, data: bytes) -> ModelFile:
    part = PackagePart(PART1.package, PART1.version, f"hearth_speech_part1/data/{name}")
    return ModelFile(name, sha256(data), len(data), ModelSource("pypi-file", parts=(part,)))


def speech_entry(model_id: str = "speech-model") -> ModelEntry:
    """An stt model: weights in two chunks over two wheels, its small files inside the first wheel."""
    return url_entry(
        WEIGHTS,
        "",
        model_id,
        kind="stt",
        format="ctranslate2-dir",
        file="model.bin",
        source=ModelSource("pypi-chunks", parts=(PART1, PART2)),
        companions=tuple(companion_file(name, data) for name, data in COMPANIONS.items()),
    )


@pytest.fixture
def wheels(offline_pip: Path) -> Path:
    """The two carrier wheels, offered to pip from a local folder."""
    extra = {f"hearth_speech_part1/data/{name}": data for name, data in COMPANIONS.items()}
    build_wheel(offline_pip, PART1.package, PART1.version, PART1.path, WEIGHTS[:HALF], extra)
    build_wheel(offline_pip, PART2.package, PART2.version, PART2.path, WEIGHTS[HALF:])
    return offline_pip


@pytest.fixture
def paths() -> DataPaths:
    return default_paths().ensure()  # under the per-test HEARTH_HOME


@pytest.fixture
def hasher() -> CountingHasher:
    return CountingHasher()


@pytest.fixture
def library(paths: DataPaths, hasher: CountingHasher) -> ModelLibrary:
    return ModelLibrary(paths, Catalog((speech_entry(),)), hasher=hasher)


def touch_later(path: Path) -> None:
    """Move the modification time on, as an edit would, so stamps no longer vouch for the file."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))


def test_paths_of_single_and_multi_file_models(paths: DataPaths) -> None:
    single = url_entry(WEIGHTS, "https://example.org/m.gguf")
    multi = speech_entry()
    library = ModelLibrary(paths, Catalog((single, multi)))
    assert library.path_for(single) == paths.models / "test-model.gguf"
    assert library.folder_for(single) == paths.models
    assert library.path_for(multi) == paths.models / "speech-model" / "model.bin"
    assert library.folder_for(multi) == paths.models / "speech-model"


def test_fetch_puts_every_file_in_the_model_folder(
    library: ModelLibrary, wheels: Path, monkeypatch: pytest.MonkeyPatch, hasher: CountingHasher
) -> None:
    pip = PipCounter(monkeypatch)
    entry = library.get("speech-model")
    assert library.status(entry) == "missing"
    assert library.missing_files(entry) == ["model.bin", *COMPANIONS]
    stages: list[str] = []
    path = library.ensure(entry, progress=lambda done, total, stage: stages.append(stage))
    folder = library.folder_for(entry)
    assert path == folder / "model.bin" and path.read_bytes() == WEIGHTS
    assert sorted(p.name for p in folder.iterdir()) == sorted(["model.bin", *COMPANIONS])
    for name, data in COMPANIONS.items():
        assert (folder / name).read_bytes() == data
    assert library.status(entry) == "verified" and library.is_present(entry) and library.is_verified(entry)
    assert hasher.hashed == []  # every file was checked while it was copied
    assert pip.packages == [PART1.package, PART2.package]  # the first wheel served all four files
    assert not (library.paths.downloads / entry.id).exists()  # wheels and partials are gone
    for name in ("model.bin", *COMPANIONS):
        assert any(name in stage for stage in stages), name
    stamps = library.paths.models / STAMP_DIR
    assert (stamps / f"{entry.id}.json").is_file()
    assert sorted(p.name for p in (stamps / entry.id).iterdir()) == sorted(f"{name}.json" for name in COMPANIONS)


def test_a_missing_companion_makes_the_model_missing(
    library: ModelLibrary, wheels: Path, monkeypatch: pytest.MonkeyPatch, hasher: CountingHasher
) -> None:
    entry = library.get("speech-model")
    library.fetch(entry)
    (library.folder_for(entry) / "vocabulary.txt").unlink()
    assert library.status(entry) == "missing" and not library.is_present(entry)
    assert library.missing_files(entry) == ["vocabulary.txt"]
    assert library.verify(entry) is False
    pip = PipCounter(monkeypatch)
    main_mtime = library.path_for(entry).stat().st_mtime_ns
    library.ensure(entry)
    assert pip.packages == [PART1.package]  # only the wheel holding the missing file
    assert library.path_for(entry).stat().st_mtime_ns == main_mtime  # the weights were kept
    assert library.status(entry) == "verified"
    assert hasher.hashed == []


def test_a_damaged_companion_is_named_refused_and_repaired(
    library: ModelLibrary, wheels: Path, hasher: CountingHasher
) -> None:
    entry = library.get("speech-model")
    library.fetch(entry)
    config = library.folder_for(entry) / "config.json"
    config.write_bytes(b'{"layers": 5}\n')  # same size, other bytes
    touch_later(config)
    assert library.status(entry) == "present"
    with pytest.raises(ModelError) as caught:
        library.verify(entry)
    assert "config.json" in caught.value.message and "damaged" in caught.value.message
    assert "hearth models fetch speech-model" in caught.value.hint
    assert hasher.hashed == ["config.json"]  # the other files' stamps still vouch for them
    with pytest.raises(ModelError, match="config.json"):
        library.ensure(entry)  # never handed to the engine
    assert config.read_bytes() == b'{"layers": 5}\n'  # left alone for the user
    main_mtime = library.path_for(entry).stat().st_mtime_ns
    library.fetch(entry)
    assert config.read_bytes() == COMPANIONS["config.json"]
    assert library.path_for(entry).stat().st_mtime_ns == main_mtime
    assert library.verify(entry, full=True) and library.status(entry) == "verified"


def test_a_companion_of_the_wrong_size_is_refused_without_hashing(
    library: ModelLibrary, wheels: Path, hasher: CountingHasher
) -> None:
    entry = library.get("speech-model")
    library.fetch(entry)
    (library.folder_for(entry) / "tokenizer.json").write_bytes(b"short")
    with pytest.raises(ModelError, match="tokenizer.json.*5 bytes instead of 40,000"):
        library.verify(entry)
    assert hasher.hashed == []


def test_damage_is_reported_even_when_another_file_is_missing(library: ModelLibrary, wheels: Path) -> None:
    entry = library.get("speech-model")
    library.fetch(entry)
    (library.folder_for(entry) / "vocabulary.txt").unlink()
    library.path_for(entry).write_bytes(WEIGHTS[::-1])
    with pytest.raises(ModelError, match="model.bin"):
        library.ensure(entry)


def test_a_cancelled_fetch_keeps_what_it_finished(
    library: ModelLibrary, wheels: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = library.get("speech-model")
    pip = PipCounter(monkeypatch)
    cancel = threading.Event()

    def stop_after_the_weights(done: int, total: int, stage: str) -> None:
        if stage.startswith("Assembling model.bin") and done == total:
            cancel.set()

    with pytest.raises(Cancelled):
        library.fetch(entry, stop_after_the_weights, cancel)
    assert library.path_for(entry).read_bytes() == WEIGHTS
    assert library.status(entry) == "missing"
    library.fetch(entry)
    assert pip.packages == [PART1.package, PART2.package]  # the retry used the wheels already downloaded
    assert library.status(entry) == "verified"
    assert not (library.paths.downloads / entry.id).exists()


def test_remove_deletes_the_folder_and_its_stamps(library: ModelLibrary, wheels: Path) -> None:
    entry = library.get("speech-model")
    library.fetch(entry)
    library.remove(entry)
    assert not library.folder_for(entry).exists()
    assert not (library.paths.models / STAMP_DIR / entry.id).exists()
    assert not (library.paths.models / STAMP_DIR / f"{entry.id}.json").exists()
    assert library.status(entry) == "missing"
    library.remove(entry)  # removing a model that is not here is fine


def test_two_models_with_the_same_file_names_live_side_by_side(paths: DataPaths, wheels: Path) -> None:
    first, second = speech_entry("speech-one"), speech_entry("speech-two")
    library = ModelLibrary(paths, Catalog((first, second)))
    library.fetch(first)
    library.fetch(second)
    assert library.path_for(first) != library.path_for(second)
    library.remove(first)
    assert library.status(first) == "missing" and library.status(second) == "verified"


def test_an_import_does_not_take_a_model_folder_name(paths: DataPaths, tmp_path: Path) -> None:
    from tests.catalog.helpers import write_gguf

    library = ModelLibrary(paths, Catalog((speech_entry(),)))
    entry = library.import_gguf(write_gguf(tmp_path / "speech-model"))
    assert entry.file != "speech-model"
    assert library.path_for(entry).parent == paths.models
