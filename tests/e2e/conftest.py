"""Fixtures for the end-to-end tests that run `hearth` in subprocesses."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require
from tests.e2e.hearth_cli import write_settings
from tests.e2e.remote_kit import LlamaServer


@pytest.fixture
def cli_home(home_with_model: Path) -> Path:
    """This test's data folder with the model in place and settings for short runs on a shared machine."""
    write_settings(home_with_model)
    return home_with_model


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """A real `llama_cpp.server` on 127.0.0.1 serving the tiny chatml model, shared by the session."""
    require(
        importlib.util.find_spec("uvicorn") is not None,
        "llama-cpp-python[server] is not installed (pip install -e '.[test]')",
    )
    server = LlamaServer(tmp_path_factory.mktemp("llama-server"))
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
