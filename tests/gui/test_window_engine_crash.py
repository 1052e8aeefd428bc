"""The real window over the real model in its own process: killing that process mid-reply, again
and again, costs the reply in progress and nothing else."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from app.engines.worker import WorkerEngine
from app.runtime import Profile, load_engine
from app.ui.chat_view import ENGINE_CRASH_NOTE
from app.ui.main_window import MainWindow
from tests.gui.window_kit import OFFSCREEN_NOISE, WindowFactory, chat_text, stored, type_and_send, wait_idle

pytestmark = [pytest.mark.qt_log_ignore(OFFSCREEN_NOISE), pytest.mark.model, pytest.mark.slow]

KILLS = 20
WAIT_MS = 30_000  # a reply on a busy 2-core machine; each wait ends as soon as its condition holds
PROMPT = "Write a long story about a lighthouse keeper."


def _load(profile: Profile, progress: object) -> WorkerEngine:
    engine = load_engine(profile)
    assert isinstance(engine, WorkerEngine)
    return engine


def _engine(window: MainWindow) -> WorkerEngine:
    session = window.controller.session
    assert session is not None and isinstance(session.engine, WorkerEngine)
    return session.engine


def test_killing_the_model_process_mid_reply_costs_only_that_reply(
    qtbot: QtBot, windows: WindowFactory, home_with_model: Path
) -> None:
    window = windows(factory=_load)
    engine = _engine(window)
    pids: set[int] = set()
    landed = attempts = 0
    while landed < KILLS:
        attempts += 1
        assert attempts <= 2 * KILLS, f"only {landed} of {attempts} kills landed before the reply ended"
        window.message_bar.hide()
        deltas: list[str] = []
        window.controller.replyDelta.connect(deltas.append)
        type_and_send(qtbot, window, f"{PROMPT} ({attempts})")
        qtbot.waitUntil(lambda: len(deltas) >= 1, timeout=WAIT_MS)  # noqa: B023
        window.controller.replyDelta.disconnect(deltas.append)
        pid = engine.pid
        assert pid is not None and pid not in pids, "the reply came from a process killed before"
        pids.add(pid)
        os.kill(pid, signal.SIGKILL)
        wait_idle(qtbot, window)
        # The window takes input at once, while the model starts again in the background.
        window.composer.editor.setFocus()
        qtbot.keyClicks(window.composer.editor, "still here")
        assert window.composer.text() == "still here"
        window.composer.editor.clear()
        reply = stored(window)[-1]
        if reply.status == "complete":  # a short reply ended before the kill reached it
            continue
        landed += 1
        assert (reply.role, reply.status, reply.meta.get("engine_crash")) == ("assistant", "interrupted", "SIGKILL")
        assert reply.content.strip(), "the words shown before the kill were not kept"
        assert window.message_bar.isVisible() and "was killed" in window.message_bar.label.text()
        qtbot.waitUntil(lambda: ENGINE_CRASH_NOTE in chat_text(window), timeout=WAIT_MS)  # reopened from the store

    with qtbot.waitSignal(window.controller.replyFinished, timeout=WAIT_MS) as finished:
        type_and_send(qtbot, window, "What is the capital of France?")
    wait_idle(qtbot, window)
    assert finished.args[0].status == "complete" and finished.args[0].content.strip()
    assert engine.restarts == attempts
    messages = stored(window)
    assert len(messages) == 2 * (attempts + 1), "a question or a reply went missing"
