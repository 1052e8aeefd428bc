"""How the end of the model's process is put into words, whatever the system reports."""

from __future__ import annotations

import signal

import pytest

from app.engines.worker import describe_exit


@pytest.mark.parametrize(
    ("returncode", "name", "words"),
    [
        (-signal.SIGILL, "SIGILL", "instruction your processor refuses"),
        (-signal.SIGSEGV, "SIGSEGV", "segmentation fault"),
        (-signal.SIGBUS, "SIGBUS", "bus error"),
        (-signal.SIGKILL, "SIGKILL", "ran out of memory"),
        (-signal.SIGABRT, "SIGABRT", "aborted"),
        (0xC000001D, "SIGILL", "instruction your processor refuses"),  # Windows: STATUS_ILLEGAL_INSTRUCTION
        (0xC0000005 - 2**32, "SIGSEGV", "segmentation fault"),  # the same code read as a signed number
        (3, "", "ended unexpectedly (status 3)"),
    ],
)
def test_each_way_the_process_can_end_is_named(returncode: int, name: str, words: str) -> None:
    error = describe_exit(returncode, "reply", "Tiny")
    assert error.signal_name == name and words in error.message and "Tiny" in error.message
    assert error.hint.startswith("Hearth has started the model again")


def test_a_fault_in_the_start_up_check_blames_the_build_not_the_model() -> None:
    error = describe_exit(-signal.SIGSEGV, "probe", "")
    assert "does not run on this processor" in error.message and "Rebuild the engine" in error.hint
    assert "started the model again" not in error.hint
