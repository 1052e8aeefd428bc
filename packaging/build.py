"""Build Hearth's one-folder bundle with PyInstaller (`packaging/hearth.spec`).

    .venv/bin/python packaging/build.py              build into build/bundle/hearth/ (and Hearth.app on macOS)
    .venv/bin/python packaging/build.py --if-stale   only when the sources or installed packages changed
    .venv/bin/python packaging/build.py --clean      drop PyInstaller's cache first

PyInstaller comes with the `bundle` extra: `pip install -e ".[bundle]"`. On Linux the bundle folder also
gets the desktop entry, the icon and `install-desktop-entry.sh`. Prints the bundle's size and the time taken.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "packaging" / "hearth.spec"
DIST = ROOT / "build" / "bundle"
WORK = ROOT / "build" / "pyinstaller"
BUNDLE = DIST / "hearth"
STAMP = DIST / "inputs.sha256"  # what the bundle was built from; beside it, not inside it
LINUX = ROOT / "packaging" / "linux"
INPUTS = ("app/**/*.py", "models/catalog.toml", "assets/*", "packaging/hearth.spec", "packaging/build.py", "packaging/icons.py", "packaging/linux/*", "pyproject.toml")  # fmt: skip


def executable(bundle: Path = BUNDLE) -> Path:
    """The program inside the bundle folder."""
    return bundle / ("hearth.exe" if sys.platform == "win32" else "hearth")


def inputs_digest() -> str:
    """One hash of every file the bundle is made from, and of the installed packages' versions."""
    digest = hashlib.sha256()
    for pattern in INPUTS:
        for path in sorted(ROOT.glob(pattern)):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    site = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})  # not a checkout's egg-info
    packages = sorted(f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions(path=site))
    digest.update("\n".join(packages).encode())
    return digest.hexdigest()


def is_current() -> bool:
    """True when the bundle exists and was built from exactly these sources and packages."""
    try:
        return executable().is_file() and STAMP.read_text().strip() == inputs_digest()
    except OSError:
        return False


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def add_desktop_entry(bundle: Path) -> None:
    """The desktop entry and icon beside the program, and the script that puts them in the menu."""
    shutil.copy2(LINUX / "hearth.desktop", bundle / "hearth.desktop")
    shutil.copy2(LINUX / "install-desktop-entry.sh", bundle / "install-desktop-entry.sh")
    shutil.copy2(ROOT / "assets" / "hearth.svg", bundle / "hearth.svg")
    shutil.copy2(WORK / "hearth" / "icons" / "hearth.png", bundle / "hearth.png")


def build(clean: bool = False) -> int:
    if importlib.util.find_spec("PyInstaller") is None:
        print("error: PyInstaller is not installed in this environment.", file=sys.stderr)
        print('hint: install the bundle extra: .venv/bin/python -m pip install -e ".[bundle]"', file=sys.stderr)
        return 1
    started = time.perf_counter()
    command = [
        sys.executable, "-m", "PyInstaller", str(SPEC), "--noconfirm", "--log-level", "WARN",
        "--distpath", str(DIST), "--workpath", str(WORK),
    ]  # fmt: skip
    if clean:
        command.append("--clean")
    STAMP.unlink(missing_ok=True)
    digest = inputs_digest()  # before building: a file changed meanwhile makes the next check rebuild
    result = subprocess.run(command, cwd=ROOT)
    if result.returncode != 0:
        print(f"error: PyInstaller failed (exit status {result.returncode}); see its messages above.", file=sys.stderr)
        return 1
    if sys.platform.startswith("linux"):
        add_desktop_entry(BUNDLE)
    STAMP.write_text(digest + "\n")
    elapsed = time.perf_counter() - started
    print(f"bundle: {BUNDLE} ({folder_size(BUNDLE) / 1e6:.0f} MB), built in {elapsed:.0f} s")
    if sys.platform == "darwin":
        app = DIST / "Hearth.app"
        print(f"app: {app} ({folder_size(app) / 1e6:.0f} MB)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build Hearth's one-folder bundle with PyInstaller.")
    parser.add_argument("--if-stale", action="store_true", help="build only when the bundle is missing or out of date")
    parser.add_argument("--clean", action="store_true", help="drop PyInstaller's cache before building")
    args = parser.parse_args(argv)
    if args.if_stale and is_current():
        print(f"bundle: {BUNDLE} is up to date ({folder_size(BUNDLE) / 1e6:.0f} MB)")
        return 0
    return build(clean=args.clean)


if __name__ == "__main__":
    sys.exit(main())
