"""Killing `hearth ask` mid-reply, again and again: the store keeps what was said and stays sound.

The turn loop commits the reply at least every 0.5 s while it streams, so a kill loses at most
about the last second of text, and the next start marks the cut-off reply as interrupted.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from app.paths import DataPaths
from app.runtime import Profile
from tests.e2e.hearth_cli import HEARTH, REPO, hearth_env, open_store

KILLS = 20
PROMPT = "Write a long story about a lighthouse keeper."
STREAM_BEFORE_KILL_S = (0.6, 0.9)  # past the first commit (0.5 s); varied so kills land at different points
MAY_LOSE_S = 1.0  # the commit interval (0.5 s) plus slack
DEADLINE_S = 60.0


@dataclass
class Printed:
    """What the process wrote to stdout, with the time each chunk arrived."""

    chunks: list[tuple[float, bytes]] = field(default_factory=list)

    @property
    def first_at(self) -> float | None:
        return self.chunks[0][0] if self.chunks else None

    def before(self, moment: float) -> bytes:
        return b"".join(data for at, data in self.chunks if at <= moment)

    def settled(self, margin_s: float) -> bytes:
        """Text shown `margin_s` before the last-but-one chunk.

        The reply is committed right after a piece is shown, before the next token is made, so the
        last piece may still be pending at the kill; measuring from the piece before it keeps a slow
        token (a busy machine) from counting against the commit interval.
        """
        if len(self.chunks) < 2:
            return b""
        return self.before(self.chunks[-2][0] - margin_s)

    def all(self) -> bytes:
        return b"".join(data for _, data in self.chunks)


def _start(home: Path, seed: int) -> subprocess.Popen[bytes]:
    args = ("ask", PROMPT, "--max-tokens", "400", "--temperature", "0.8", "--seed", str(seed))
    return subprocess.Popen(
        [*HEARTH, *args], cwd=REPO, env=hearth_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def _stream_until(proc: subprocess.Popen[bytes], stream_for_s: float) -> Printed:
    """Read stdout until text has flowed for `stream_for_s`, then SIGKILL at once; returns what was read."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    printed = Printed()
    deadline = time.monotonic() + DEADLINE_S
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                proc.kill()
                pytest.fail(f"no output from hearth ask within {DEADLINE_S} s")
            data = os.read(fd, 65536)
            now = time.monotonic()
            if not data:
                stderr = proc.stderr.read().decode() if proc.stderr else ""
                pytest.fail(f"hearth ask ended (exit {proc.wait()}) before it could be killed:\n{stderr}")
            printed.chunks.append((now, data))
            first = printed.first_at
            if first is not None and now - first >= stream_for_s:
                os.kill(proc.pid, signal.SIGKILL)  # right after fresh text: the reply is mid-stream
                return printed


def _drain(proc: subprocess.Popen[bytes], shown: Printed) -> Printed:
    """Everything the process printed: what was read before the kill and what was still in the pipe."""
    assert proc.stdout is not None and proc.stderr is not None
    rest = proc.stdout.read()
    proc.stderr.read()
    assert proc.wait() == -signal.SIGKILL
    return Printed([*shown.chunks, (time.monotonic(), rest)])


def _check_store_after_kill(home: Path, printed: Printed, shown_before_kill: Printed, kills_so_far: int) -> None:
    with open_store(home) as store:
        assert store.integrity_check() == "ok"
        conversations = store.list_conversations()
        assert len(conversations) == kills_so_far
        user, reply = store.messages(conversations[0].id)  # newest first
        earlier = [m for c in conversations[1:] for m in store.messages(c.id) if m.role == "assistant"]
    assert (user.role, user.content) == ("user", PROMPT)
    assert (reply.role, reply.status) == ("assistant", "streaming")
    stored = reply.content.encode("utf-8")
    everything = printed.all()
    assert stored, "the reply streamed for over half a second, so part of it was committed"
    assert everything.startswith(stored), "the store holds exactly what was shown, never more or other"
    settled = shown_before_kill.settled(MAY_LOSE_S)
    assert len(stored) >= len(settled), (
        f"lost more than {MAY_LOSE_S} s of the reply: stored {stored!r}, but {settled!r} was shown by then"
    )
    # Each start marks the reply its predecessor left half-written.
    assert all(m.status == "interrupted" for m in earlier)


@pytest.mark.slow
def test_killed_replies_survive_up_to_the_last_second(cli_home: Path) -> None:
    for kill in range(1, KILLS + 1):
        proc = _start(cli_home, seed=kill)
        try:
            low, high = STREAM_BEFORE_KILL_S
            shown = _stream_until(proc, low + (high - low) * (kill % 4) / 3)
            printed = _drain(proc, shown)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        _check_store_after_kill(cli_home, printed, shown, kill)

    profile = Profile.open(DataPaths(cli_home))
    try:
        replies = [
            m for c in profile.store.list_conversations() for m in profile.store.messages(c.id) if m.role == "assistant"
        ]
        assert profile.store.integrity_check() == "ok"
    finally:
        profile.close()
    assert len(replies) == KILLS
    assert {m.status for m in replies} == {"interrupted"}
    assert all(m.content for m in replies)
