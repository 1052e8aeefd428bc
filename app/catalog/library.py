"""The user's model files: which are present, whether they are intact, and getting the missing ones.

A file is trusted only after its sha256 matched. Hashing 500 MB on every start would be slow, so a
successful check leaves a small stamp (path, size, mtime, sha256) under `models/.verified/`; while the
file's size and mtime are unchanged the stamp stands in for the hash. A file that fails the check is
left where it is, for the user to look at, but `ensure` refuses it, so it is never loaded.

Models the user imports are entries too, kept in `models/imported.json`.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.catalog.catalog import Catalog, ModelEntry, ModelSource, entry_to_dict, parse_entry
from app.catalog.fetch import fetch_entry
from app.catalog.gguf_check import inspect_gguf
from app.catalog.transfer import Progress, copy_hashed, sha256_file
from app.errors import CatalogError, ModelError
from app.paths import DataPaths

Hasher = Callable[[Path, Progress | None, threading.Event | None], str]

IMPORTED_FILE = "imported.json"
STAMP_DIR = ".verified"


class ModelLibrary:
    def __init__(self, paths: DataPaths, catalog: Catalog, hasher: Hasher = sha256_file) -> None:
        self.paths = paths
        self.catalog = catalog
        self._hasher = hasher  # replaceable so tests can count full hashes

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
        _write_json(self.imported_path, payload)

    # ------------------------------------------------------------ files

    def path_for(self, entry: ModelEntry) -> Path:
        if entry.source.type == "imported" and entry.source.path:
            return Path(entry.source.path)
        return self.paths.models / entry.file

    def is_present(self, entry: ModelEntry) -> bool:
        return self.path_for(entry).is_file()

    def is_verified(self, entry: ModelEntry) -> bool:
        """True when a stamp vouches for the file as it is now; never hashes."""
        path = self.path_for(entry)
        try:
            stat = path.stat()
        except OSError:
            return False
        return self._stamp_matches(entry, path, stat)

    def status(self, entry: ModelEntry) -> str:
        """One of "verified", "present" (not checked since it last changed) or "missing"."""
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
        """True when the file is intact, False when it is missing; ModelError when it is damaged.

        The stamp answers when the file is unchanged since its last check, unless `full` asks for a hash.
        """
        path = self.path_for(entry)
        try:
            stat = path.stat()
        except FileNotFoundError:
            return False
        if not full and self._stamp_matches(entry, path, stat):
            return True
        self._drop_stamp(entry)
        if entry.size is not None and stat.st_size != entry.size:
            raise self._damaged(entry, path, f"it has {stat.st_size:,} bytes instead of {entry.size:,}")
        digest = self._hasher(path, progress, cancel)
        if entry.sha256 is not None and digest != entry.sha256:
            raise self._damaged(entry, path, "its sha256 checksum does not match")
        self._write_stamp(entry, path, digest, stat)
        return True

    def ensure(
        self, entry: ModelEntry, progress: Progress | None = None, cancel: threading.Event | None = None
    ) -> Path:
        """The path of an intact copy of the model, fetching it when it is missing.

        A damaged file raises instead of being replaced behind the user's back: they decide to fetch again.
        """
        if self.verify(entry, progress, cancel):
            return self.path_for(entry)
        return self.fetch(entry, progress, cancel)

    def fetch(self, entry: ModelEntry, progress: Progress | None = None, cancel: threading.Event | None = None) -> Path:
        """Get the model from its source, replacing whatever file is at its path once the new one checks out."""
        if entry.source.type == "imported":
            raise ModelError(
                f"The imported model '{entry.id}' is missing from {self.path_for(entry)}.",
                f"Import the file again, or forget it with `hearth models remove {entry.id}`.",
            )
        dest = self.path_for(entry)
        self._drop_stamp(entry)
        fetch_entry(entry, dest, self.paths.downloads, progress, cancel)
        if entry.sha256 is not None:
            self._write_stamp(entry, dest, entry.sha256, dest.stat())  # fetch_entry has just checked it
        return dest

    def remove(self, entry: ModelEntry) -> None:
        """Delete Hearth's copy of a model; a file imported by reference belongs to the user and stays."""
        path = self.path_for(entry)
        if entry.source.type == "imported":
            self._save_imported([other for other in self.imported() if other.id != entry.id])
            if not entry.source.path:
                path.unlink(missing_ok=True)
        else:
            path.unlink(missing_ok=True)
            (self.paths.downloads / f"{entry.file}.part").unlink(missing_ok=True)
        self._drop_stamp(entry)

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
        target = self.path_for(entry)
        self._write_stamp(entry, target, digest, target.stat())
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
        taken = {entry.file for entry in self.entries()}
        candidate, number = safe, 2
        while candidate in taken or (self.paths.models / candidate).exists():
            candidate, number = f"{stem}-{number}{suffix}", number + 1
        return candidate

    # ------------------------------------------------------------ stamps

    def _stamp_path(self, entry: ModelEntry) -> Path:
        return self.paths.models / STAMP_DIR / f"{entry.id}.json"

    def _stamp_matches(self, entry: ModelEntry, path: Path, stat: os.stat_result) -> bool:
        try:
            stamp = json.loads(self._stamp_path(entry).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        if not isinstance(stamp, dict):
            return False
        unchanged = stamp.get("path") == str(path) and stamp.get("size") == stat.st_size
        unchanged = unchanged and stamp.get("mtime_ns") == stat.st_mtime_ns
        return unchanged and (entry.sha256 is None or stamp.get("sha256") == entry.sha256)

    def _write_stamp(self, entry: ModelEntry, path: Path, digest: str, stat: os.stat_result) -> None:
        stamp = {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
        try:
            _write_json(self._stamp_path(entry), stamp)
        except OSError:
            pass  # the stamp only saves time: without it the next check hashes again

    def _drop_stamp(self, entry: ModelEntry) -> None:
        self._stamp_path(entry).unlink(missing_ok=True)

    def _damaged(self, entry: ModelEntry, path: Path, detail: str) -> ModelError:
        if entry.source.type == "imported":
            hint = "Import a good copy of the file again."
        else:
            hint = f"Fetch it again with `hearth models fetch {entry.id}`; the damaged file is not used."
        return ModelError(f"The model file {path} for '{entry.id}' is damaged: {detail}.", hint)


def _safe_file_name(name: str) -> str:
    """A name that is a plain file name in the models folder (the catalog refuses anything else)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name).lstrip(".-") or "model.gguf"
    return cleaned


def _write_json(path: Path, payload: Any) -> None:
    """Write through a temporary file so a crash never leaves half a JSON file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)
