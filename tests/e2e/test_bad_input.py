"""Everything that can be wrong around `hearth ask`: each says what failed and what to do, and loses nothing."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from app.paths import DataPaths
from tests.conftest import require
from tests.e2e.hearth_cli import (
    HEARTH,
    MODEL_ID,
    REPO,
    add_exchange,
    ask,
    assert_fails_clearly,
    assert_ok,
    default_model,
    hearth,
    hearth_env,
    open_store,
    write_settings,
)

QUESTION = "What is the capital of France?"


def _only_user_message(home: Path, text: str) -> None:
    """The message was committed when sent, and no reply was started for it."""
    with open_store(home) as store:
        [conversation] = store.list_conversations()
        [message] = store.messages(conversation.id)
    assert (message.role, message.content) == ("user", text)


# -- the model file ----------------------------------------------------------------------------


def test_missing_model_file_is_fetched_again_and_verified(cli_home: Path) -> None:
    library, entry = default_model(cli_home)
    library.path_for(entry).unlink()
    assert library.status(entry) == "missing"
    result = ask(cli_home, QUESTION)
    assert_ok(result)
    assert "Paris" in result.stdout
    assert library.status(entry) == "verified"
    assert library.path_for(entry).stat().st_size == entry.size


def _not_gguf(model: bytes) -> bytes:
    return b"This is a note, not a model.\n" * 40


def _truncated(model: bytes) -> bytes:
    return model[: len(model) // 2]


def _appended(model: bytes) -> bytes:
    return model + b"\0"


def _one_byte_changed(model: bytes) -> bytes:
    middle = len(model) // 2
    return model[:middle] + bytes([model[middle] ^ 0xFF]) + model[middle + 1 :]


DAMAGE: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "not-gguf": (_not_gguf, "bytes instead of"),
    "truncated": (_truncated, "bytes instead of"),
    "appended": (_appended, "bytes instead of"),
    "sha256": (_one_byte_changed, "sha256 checksum does not match"),
}


def _damage(home: Path, how: Callable[[bytes], bytes]) -> tuple[Path, bytes]:
    library, entry = default_model(home)
    path = library.path_for(entry)
    damaged = how(path.read_bytes())
    path.unlink()  # the file is hard-linked with the session's copy: a new file, never a write in place
    path.write_bytes(damaged)
    return path, damaged


@pytest.mark.parametrize("kind", DAMAGE)
def test_damaged_model_file_is_refused_and_never_loaded(cli_home: Path, kind: str) -> None:
    how, detail = DAMAGE[kind]
    path, damaged = _damage(cli_home, how)
    result = ask(cli_home, QUESTION)
    assert_fails_clearly(result, str(path), "is damaged", detail, f"hearth models fetch {MODEL_ID}")
    assert result.stdout == ""
    assert path.read_bytes() == damaged, "the damaged file is left for the user, not replaced behind their back"
    _only_user_message(cli_home, QUESTION)


def test_the_hint_for_a_damaged_model_repairs_it(cli_home: Path) -> None:
    _damage(cli_home, _truncated)
    assert ask(cli_home, QUESTION).returncode == 1
    assert_ok(hearth(cli_home, "models", "fetch", MODEL_ID))
    result = ask(cli_home, QUESTION)
    assert_ok(result)
    assert "Paris" in result.stdout
    with open_store(cli_home) as store:
        conversations = store.list_conversations()
    assert len(conversations) == 2, "the refused question is still there next to the answered one"


# -- the prompt --------------------------------------------------------------------------------


@pytest.mark.parametrize("prompt", ["", "  \n\t "])
def test_empty_prompt_is_refused_and_creates_nothing(hearth_home: Path, prompt: str) -> None:
    result = ask(hearth_home, prompt)
    assert_fails_clearly(result, "The message is empty", "Type something")
    with open_store(hearth_home) as store:
        assert store.list_conversations() == []


def test_prompt_longer_than_the_context_is_refused_but_kept(cli_home: Path) -> None:
    write_settings(cli_home, n_ctx=512)
    prompt = " ".join(f"word{n % 50}" for n in range(3000))
    result = ask(cli_home, prompt)
    assert_fails_clearly(result, "the context holds 512", "Shorten the message", "context size")
    _only_user_message(cli_home, prompt)


def test_prompt_bytes_that_are_not_utf8_are_kept_as_replacement_characters(cli_home: Path) -> None:
    # A terminal in a legacy encoding sends "café" as Latin-1: the é byte is not valid UTF-8.
    result = subprocess.run(
        [*HEARTH, "ask", b"Say caf\xe9.", "--temperature", "0", "--seed", "1", "--max-tokens", "8"],
        cwd=REPO,
        env=hearth_env(cli_home),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_ok(result)
    with open_store(cli_home) as store:
        [conversation] = store.list_conversations()
        user, reply = store.messages(conversation.id)
    assert user.content == "Say caf\N{REPLACEMENT CHARACTER}."
    assert reply.status == "complete"


# -- the database ------------------------------------------------------------------------------


def test_locked_database_is_a_clear_error_and_changes_nothing(cli_home: Path) -> None:
    earlier = add_exchange(cli_home, QUESTION, "Paris.")
    with open_store(cli_home) as store:
        before = store.messages(earlier)
    holder = sqlite3.connect(DataPaths(cli_home).database, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        locked = ask(cli_home, "Are you there?")  # waits out the store's 5 s busy timeout
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert_fails_clearly(locked, "Another program is using Hearth's database", "try again")
    assert locked.stdout == ""
    assert_ok(ask(cli_home, "Are you there?"))
    with open_store(cli_home) as store:
        assert len(store.list_conversations()) == 2
        assert store.messages(earlier) == before


def test_corrupt_database_is_set_aside_and_a_new_one_started(cli_home: Path) -> None:
    add_exchange(cli_home, QUESTION, "Paris.")
    database = DataPaths(cli_home).database
    garbage = b"\x00garbage that is not SQLite\xff" * 200
    database.write_bytes(garbage)
    result = ask(cli_home, QUESTION)
    assert_ok(result)
    assert "Paris" in result.stdout
    [backup] = database.parent.glob("hearth.db.corrupt-*")
    warning = next(line for line in result.stderr.splitlines() if line.startswith("warning: "))
    assert "damaged" in warning and str(backup) in warning
    assert backup.read_bytes() == garbage, "the old file is kept as it was, for recovery"
    with open_store(cli_home) as store:
        assert store.integrity_check() == "ok"
        [conversation] = store.list_conversations()
        assert [m.role for m in store.messages(conversation.id)] == ["user", "assistant"]


# -- the data folder and memory ----------------------------------------------------------------


def test_data_folder_that_cannot_be_created_names_it_and_what_to_do(tmp_path: Path) -> None:
    # The tests run as root, for whom permissions are no obstacle; a path through a file is.
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file where a folder should be\n")
    home = blocker / "home"
    result = ask(home, QUESTION)
    assert_fails_clearly(result, str(home), "HEARTH_HOME", "permissions")
    assert blocker.read_text() == "a file where a folder should be\n"


def test_context_too_large_for_memory_is_refused_clearly(cli_home: Path) -> None:
    require(sys.platform != "win32", "address-space limits need POSIX")
    import resource

    # 262144 tokens (the largest setting) need a 6 GiB cache for this model; allow the process 3 GiB.
    write_settings(cli_home, n_ctx=262144, n_gpu_layers=0)
    limit = 3 * 2**30

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    result = subprocess.run(
        [*HEARTH, "ask", QUESTION, "--max-tokens", "8"],
        cwd=REPO,
        env=hearth_env(cli_home),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit_memory,
    )
    assert_fails_clearly(result, "Not enough memory", "262144-token context", "Lower the context size")
    _only_user_message(cli_home, QUESTION)


def test_impossible_context_setting_is_ignored_with_a_warning(cli_home: Path) -> None:
    write_settings(cli_home, n_ctx=100_000_000)
    result = ask(cli_home, QUESTION)
    assert_ok(result)
    assert "n_ctx" in result.stderr and "out of range" in result.stderr
    assert "Paris" in result.stdout


def test_malformed_settings_fall_back_to_defaults(cli_home: Path) -> None:
    write_settings(cli_home, generation=5, theme=["dark"])
    result = ask(cli_home, QUESTION)
    assert_ok(result)
    assert "generation" in result.stderr
    assert "Paris" in result.stdout


# -- failures nobody planned for ---------------------------------------------------------------

# A real exception, raised and reported the way `hearth`'s entry point does it.
_CRASH = """
import sys
from app import cli
try:
    {}["missing"]
except KeyError as exc:
    sys.exit(cli.report_unexpected(exc))
"""


def _crash(home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _CRASH], cwd=REPO, env=hearth_env(home), capture_output=True, text=True, timeout=60
    )


def test_unexpected_failure_is_one_error_line_with_the_traceback_in_the_log(hearth_home: Path) -> None:
    result = _crash(hearth_home)
    assert result.returncode == 1
    log_file = DataPaths(hearth_home).logs / "hearth.log"
    assert result.stderr.splitlines() == [
        "error: Hearth stopped because of an unexpected problem: KeyError: 'missing'",
        f"hint: The details are in {log_file}; please include them when you report this problem.",
    ]
    logged = log_file.read_text(encoding="utf-8")
    assert "Traceback (most recent call last)" in logged and "KeyError: 'missing'" in logged


def test_unexpected_failure_without_a_log_file_still_ends_with_an_error_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("")
    result = _crash(blocker / "home")
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert "Traceback (most recent call last):" in lines, "with no log file, the details go to the terminal"
    assert lines[-2] == "error: Hearth stopped because of an unexpected problem: KeyError: 'missing'"
    assert lines[-1].startswith("hint: The details are above (no log file could be written)")


def test_a_speech_model_chosen_as_the_chat_model_is_refused_clearly(cli_home: Path) -> None:
    result = ask(cli_home, "Hello", "--model", "whisper-tiny-en")
    assert_fails_clearly(result, "is not a chat model (its kind is stt)", "Choose a chat model")
