"""Running the real `hearth` command in a subprocess, the way a terminal would, and reading what it left."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.catalog.catalog import ModelEntry, load_catalog
from app.catalog.library import ModelLibrary
from app.core.store import Store
from app.paths import DataPaths

REPO = Path(__file__).resolve().parents[2]
HEARTH = (sys.executable, "-m", "app")
MODEL_ID = "smollm2-135m-instruct"
# Greedy and short: each answer takes about a second on two cores, and the same every time.
FAST = ("--temperature", "0", "--seed", "1", "--max-tokens", "24")
TIMEOUT_S = 120
# One llama.cpp thread: the 135M model is quick on one core, and llama.cpp's threads spin-wait on
# each other, so on a two-core machine that is busy with anything else two threads run many times slower.
BASE_SETTINGS: dict[str, object] = {"n_threads": 1}


def write_settings(home: Path, **values: object) -> None:
    """The data folder's settings.json: the base settings above, with `values` on top."""
    home.mkdir(parents=True, exist_ok=True)
    DataPaths(home).settings.write_text(json.dumps({**BASE_SETTINGS, **values}), encoding="utf-8")


def hearth_env(home: Path) -> dict[str, str]:
    return {**os.environ, "HEARTH_HOME": str(home), "PYTHONIOENCODING": "utf-8"}


def hearth(
    home: Path, *args: str, timeout: float = TIMEOUT_S, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `hearth ARGS…` to completion with this data folder (`stdin` as its standard input)."""
    return subprocess.run(
        [*HEARTH, *args],
        cwd=REPO,
        env=hearth_env(home),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ask(home: Path, prompt: str, *args: str) -> subprocess.CompletedProcess[str]:
    return hearth(home, "ask", prompt, *FAST, *args)


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr


def assert_fails_clearly(result: subprocess.CompletedProcess[str], *phrases: str) -> str:
    """Exit 1 with an `error:` line and a `hint:` line that contain `phrases`; no traceback. Returns stderr."""
    err = result.stderr
    assert result.returncode == 1, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {err}"
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert any(line.startswith("error: ") for line in lines), err
    assert any(line.startswith("hint: ") for line in lines), err
    for phrase in phrases:
        assert phrase in err, f"{phrase!r} not in stderr:\n{err}"
    return err


@contextmanager
def open_store(home: Path) -> Iterator[Store]:
    store = Store.open(DataPaths(home).database)
    try:
        yield store
    finally:
        store.close()


def add_exchange(home: Path, question: str, answer: str) -> int:
    """An earlier conversation, written straight to the store (cheaper than asking the model)."""
    with open_store(home) as store:
        conversation = store.create_conversation(title=question)
        store.add_message(conversation.id, "user", question)
        store.add_message(conversation.id, "assistant", answer, model_id=MODEL_ID)
    return conversation.id


def default_model(home: Path) -> tuple[ModelLibrary, ModelEntry]:
    library = ModelLibrary(DataPaths(home), load_catalog())
    return library, library.get(MODEL_ID)
