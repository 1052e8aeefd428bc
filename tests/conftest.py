"""Shared test set-up: a private data folder per test, Qt with no screen, and no silent skips.

Under HEARTH_STRICT=1 (CI sets it), a test that would skip because a component is missing
fails instead: a missing model file or library is a broken install, not a reason to pass.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from tests.keyrings import MemoryKeyring

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# The engine's start-up check (app.engines.probe) keeps its verdict in a machine-wide cache: one
# folder for the whole run, so it runs once, and never in the real one.
os.environ.setdefault("HEARTH_CACHE", tempfile.mkdtemp(prefix="hearth-test-cache-"))

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


@pytest.fixture(autouse=True)
def keyring_backend(monkeypatch: pytest.MonkeyPatch) -> MemoryKeyring:
    """A private keyring per test, as HEARTH_HOME is a private data folder: no test reads or writes
    the real system keyring. Subprocesses get keyring's failing backend (a headless machine's)."""
    import app.secrets

    backend = MemoryKeyring()
    monkeypatch.setattr(app.secrets, "DEFAULT", app.secrets.KeyStore(backend))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    monkeypatch.delenv(app.secrets.API_KEY_ENV, raising=False)
    return backend


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if STRICT:
        for item in items:
            for mark in item.iter_markers("skip"):
                raise pytest.UsageError(
                    f"{item.nodeid} is marked skip ({mark.kwargs.get('reason', '')}); nothing may skip in CI"
                )


@pytest.fixture(scope="session")
def model_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder holding the verified embedded default model, shared by the session."""
    from app.catalog.catalog import load_catalog
    from app.catalog.library import ModelLibrary
    from app.errors import HearthError
    from app.paths import DataPaths

    home = tmp_path_factory.mktemp("model-home")
    library = ModelLibrary(DataPaths(home).ensure(), load_catalog())
    try:
        library.ensure(library.get("smollm2-135m-instruct"))
    except HearthError as exc:
        require(False, f"embedded default model unavailable: {exc}")
    return home


@pytest.fixture(scope="session")
def smollm2_path(model_home: Path) -> Path:
    from app.catalog.catalog import load_catalog
    from app.catalog.library import ModelLibrary
    from app.paths import DataPaths

    library = ModelLibrary(DataPaths(model_home), load_catalog())
    return library.path_for(library.get("smollm2-135m-instruct"))


@pytest.fixture
def home_with_model(hearth_home: Path, model_home: Path) -> Path:
    """This test's own data folder, with the default model already in place (hard-linked)."""
    import shutil

    shutil.copytree(model_home / "models", hearth_home / "models", copy_function=_link_or_copy)
    return hearth_home


def _link_or_copy(src: str, dst: str) -> None:
    import shutil

    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


@pytest.fixture(scope="session")
def speech_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder holding the verified speech models (whisper-tiny-en, piper-joe-medium), shared by the session.

    `tests.speech_models.speech_model_paths()` gives the Whisper folder and the Piper voice in it.
    """
    from tests.speech_models import prepare_speech_home

    return prepare_speech_home(tmp_path_factory.mktemp("speech-home"), session=True)


# The private PulseAudio server is one per test process (QtMultimedia connects to the first server
# it sees), so its session fixture is defined here, once, for every folder.
from tests.pulse import pulse  # noqa: E402, F401
