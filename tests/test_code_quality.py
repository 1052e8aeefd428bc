"""The code stays lint-clean, formatted and fully typed: ruff and mypy run as part of the suite."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import require

ROOT = Path(__file__).resolve().parent.parent


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    require(found is not None, f"{name} is not installed (pip install -e '.[dev]')")
    return str(found)


def test_ruff_finds_nothing() -> None:
    result = subprocess.run(
        [_tool("ruff"), "check", "app", "tests", "packaging"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_code_is_formatted() -> None:
    result = subprocess.run(
        [_tool("ruff"), "format", "--check", "app", "tests", "packaging"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, "run `ruff format app tests packaging`:\n" + result.stdout + result.stderr


def test_mypy_finds_nothing() -> None:
    result = subprocess.run([_tool("mypy")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_core_never_imports_qt() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "app").rglob("*.py")
        if "ui" not in path.relative_to(ROOT / "app").parts and "PySide6" in path.read_text(encoding="utf-8")
    ]
    assert offenders == [], f"Qt belongs in app/ui only: {offenders}"
