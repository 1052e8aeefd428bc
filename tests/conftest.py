"""Shared test set-up: a private data folder per test, Qt with no screen, and no silent skips.

Under HEARTH_STRICT=1 (CI sets it), a test that would skip because a component is missing
fails instead: a missing model file or library is a broken install, not a reason to pass.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

STRICT = os.environ.get("HEARTH_STRICT") == "1"


def require(condition: bool, reason: str) -> None:
    """Skip locally when a component is missing; fail under HEARTH_STRICT."""
    if condition:
        return
    if STRICT:
        pytest.fail(f"required component missing (HEARTH_STRICT=1): {reason}")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def hearth_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "hearth-home"
    monkeypatch.setenv("HEARTH_HOME", str(home))
    return home


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if STRICT:
        for item in items:
            for mark in item.iter_markers("skip"):
                raise pytest.UsageError(f"{item.nodeid} is marked skip ({mark.kwargs.get('reason', '')}); nothing may skip in CI")
