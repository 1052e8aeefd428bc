"""`hearth models`: list, fetch, verify, import and remove model files from a terminal.

Results go to stdout, progress and errors to stderr, so `hearth models list --json` can be piped.
Every failure prints `error: …` and `hint: …` and exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from app.catalog.catalog import KINDS, ModelEntry, load_catalog
from app.catalog.library import ModelLibrary
from app.errors import Cancelled, HearthError, ModelError
from app.paths import default_paths


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("models", help="list, fetch, verify and import model files")
    commands = parser.add_subparsers(dest="models_command", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="show every model and whether its file is here")
    listing.add_argument("--json", action="store_true", help="print a JSON list instead of a table")

    fetch = commands.add_parser("fetch", help="download or copy a model's files and check them")
    fetch.add_argument("id", help="model id from `hearth models list`")

    verify = commands.add_parser("verify", help="check model files against their sha256")
    verify.add_argument("id", nargs="?", help="one model (default: every model that has any file here)")
    verify.add_argument(
        "--full", action="store_true", help="hash again even if the file is unchanged since its last check"
    )

    imports = commands.add_parser("import", help="add your own GGUF file as a model")
    imports.add_argument("path", type=Path)
    imports.add_argument("--reference", action="store_true", help="use the file where it is instead of copying it")

    remove = commands.add_parser("remove", help="delete Hearth's copy of a model (imported files are only forgotten)")
    remove.add_argument("id")

    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    progress = ProgressLine(sys.stderr)
    try:
        library = ModelLibrary(default_paths().ensure(), load_catalog())
        return _COMMANDS[args.models_command](library, args, progress)
    except HearthError as exc:
        progress.finish()
        return _fail(exc.message, exc.hint)
    except (Cancelled, KeyboardInterrupt):
        progress.finish()
        return _fail("Stopped before the model was complete.", "Run the same command again; a download resumes.")


def _fail(message: str, hint: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    if hint:
        print(f"hint: {hint}", file=sys.stderr)
    return 1


class ProgressLine:
    """One self-overwriting line on a terminal; one line per stage when the output is a file or pipe."""

    def __init__(self, stream: TextIO, interval_s: float = 0.1) -> None:
        self.stream = stream
        self.interval_s = interval_s
        self.interactive = stream.isatty()
        self._stage = ""
        self._last = 0.0
        self._width = 0

    def __call__(self, done: int, total: int, stage: str) -> None:
        now = time.monotonic()
        new_stage = stage != self._stage
        if not new_stage and now - self._last < self.interval_s and done < total:
            return
        self._last = now
        if not self.interactive:
            if new_stage:
                self.stream.write(f"{stage}\n")
                self.stream.flush()
            self._stage = stage
            return
        if new_stage and self._stage:
            self.stream.write("\n")
            self._width = 0
        self._stage = stage
        self._show(f"{stage}: {_amount(done, total)}")

    def _show(self, text: str) -> None:
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()
        self._width = len(text)

    def finish(self) -> None:
        if self.interactive and self._stage:
            self.stream.write("\n")
            self.stream.flush()
        self._stage = ""
        self._width = 0


def _amount(done: int, total: int) -> str:
    if total <= 0:
        return "…"
    return f"{100 * done / total:5.1f}% ({done / 1e6:,.1f} of {total / 1e6:,.1f} MB)"


def _list(library: ModelLibrary, args: argparse.Namespace, progress: ProgressLine) -> int:
    # Grouped by kind (chat models first), keeping catalog order within a kind.
    entries = sorted(library.entries(), key=lambda entry: KINDS.index(entry.kind))
    rows = [_describe(library, entry) for entry in entries]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"   {'ID':<32} {'KIND':<17} {'SIZE MB':>8}  {'STATUS':<9} LICENCE")
    for row in rows:
        marker = "*" if row["default"] else " "
        size = f"{row['size'] / 1e6:,.1f}" if row["size"] else "?"
        print(f"{marker}  {row['id']:<32} {row['kind']:<17} {size:>8}  {row['status']:<9} {row['licence']}")
    print(
        "\n* default model of its kind. Kinds: chat, stt = speech recognition, tts = voice for reading aloud."
        "\nStatus: verified = checksum matched, present = not checked yet, installed = in a package on this"
        "\ncomputer (ready: copied and checked the first time it is used), missing = needs a download."
    )
    return 0


def _describe(library: ModelLibrary, entry: ModelEntry) -> dict[str, Any]:
    """One model for `list`: `size` counts all its files; `files` names them, the main file first."""
    return {
        "id": entry.id,
        "name": entry.name,
        "kind": entry.kind,
        "format": entry.format,
        "size": entry.total_size,
        "licence": entry.licence,
        "capabilities": list(entry.capabilities),
        "default": entry.default,
        "source": entry.source.type,
        "status": _status(library, entry),
        "path": str(library.path_for(entry)),
        "files": list(entry.file_names),
    }


def _status(library: ModelLibrary, entry: ModelEntry) -> str:
    """The library's status, except that a model an installed package carries is "installed", not
    "missing": it works without a download (the default models, on a fresh data folder)."""
    from app.catalog.overview import in_installed_packages

    status = library.status(entry)
    return "installed" if status == "missing" and in_installed_packages(entry) else status


def _location(library: ModelLibrary, entry: ModelEntry) -> Path:
    """What to show the user: the model's folder when it has several files, else its file."""
    return library.folder_for(entry) if entry.companions else library.path_for(entry)


def _fetch(library: ModelLibrary, args: argparse.Namespace, progress: ProgressLine) -> int:
    entry = library.get(args.id)
    try:
        if library.verify(entry, progress):
            progress.finish()
            print(f"{entry.id} is already here and intact: {_location(library, entry)}")
            return 0
    except ModelError:
        pass  # damaged: fetching replaces it once the new copy checks out
    library.fetch(entry, progress)
    progress.finish()
    print(f"{entry.id} fetched and verified: {_location(library, entry)}")
    return 0


def _verify(library: ModelLibrary, args: argparse.Namespace, progress: ProgressLine) -> int:
    if args.id:
        entries = [library.get(args.id)]
    else:  # every model with at least one file here, so a half-present model is reported too
        entries = [e for e in library.entries() if len(library.missing_files(e)) < len(e.file_names)]
    if not entries:
        print("No model files are present yet; fetch one with `hearth models fetch ID`.")
        return 0
    failures = 0
    for entry in entries:
        try:
            intact = library.verify(entry, progress, full=args.full)
        except ModelError as exc:
            progress.finish()
            failures += _fail(exc.message, exc.hint)
            continue
        progress.finish()
        if not intact:
            missing = library.missing_files(entry)
            problem = "is not here" if len(missing) == len(entry.file_names) else f"lacks {', '.join(missing)}"
            failures += _fail(f"The model '{entry.id}' {problem}.", f"Fetch it with `hearth models fetch {entry.id}`.")
            continue
        print(f"{entry.id}: ok")
    return 1 if failures else 0


def _import(library: ModelLibrary, args: argparse.Namespace, progress: ProgressLine) -> int:
    entry = library.import_gguf(args.path, copy=not args.reference, progress=progress)
    progress.finish()
    print(f"imported {entry.id} ({entry.name}): {library.path_for(entry)}")
    return 0


def _remove(library: ModelLibrary, args: argparse.Namespace, progress: ProgressLine) -> int:
    entry = library.get(args.id)
    library.remove(entry)
    kept = entry.source.type == "imported" and entry.source.path
    print(f"forgot {entry.id}; your file {library.path_for(entry)} is kept" if kept else f"removed {entry.id}")
    return 0


_COMMANDS: dict[str, Callable[[ModelLibrary, argparse.Namespace, ProgressLine], int]] = {
    "list": _list,
    "fetch": _fetch,
    "verify": _verify,
    "import": _import,
    "remove": _remove,
}
