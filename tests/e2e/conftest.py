"""Fixtures for the end-to-end tests that run `hearth` in subprocesses."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.hearth_cli import write_settings


@pytest.fixture
def cli_home(home_with_model: Path) -> Path:
    """This test's data folder with the model in place and settings for short runs on a shared machine."""
    write_settings(home_with_model)
    return home_with_model
