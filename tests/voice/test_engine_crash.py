"""A spoken turn whose model process is killed mid-reply: the loop says why, keeps listening, and
the next spoken question is answered by the model started again."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.store import Store
from app.core.turn import ChatSession
from app.engines.worker import ModelSpec, WorkerEngine
from app.settings import GenerationSettings, Settings
from app.voice.replay import VoiceModels, run_recorded_turn
from app.voice.utterances import piper_utterances

pytestmark = [pytest.mark.voice, pytest.mark.model]

SETTINGS = Settings(generation=GenerationSettings(temperature=0.0, seed=7, max_tokens=120))


@pytest.fixture
def session(smollm2_path: Path, tmp_path: Path) -> Iterator[ChatSession]:
    engine = WorkerEngine(ModelSpec(smollm2_path, "smollm2-135m-instruct", n_ctx=2048, n_threads=2))
    store = Store.open(tmp_path / "voice.sqlite3")
    yield ChatSession(store, engine, SETTINGS)
    engine.close()
    store.close()


def _kill_when_the_reply_begins(session: ChatSession, stop: threading.Event) -> None:
    engine = session.engine
    assert isinstance(engine, WorkerEngine)
    pid = engine.pid
    assert pid is not None
    while not stop.wait(0.005):
        conversations = session.store.list_conversations()
        if conversations and any(m.role == "assistant" for m in session.store.messages(conversations[0].id)):
            os.kill(pid, signal.SIGKILL)
            return


def test_a_killed_model_costs_the_spoken_reply_and_the_next_question_is_answered(
    session: ChatSession, transcriber: object, voice: object
) -> None:
    models = VoiceModels(transcriber, voice)
    first, second = piper_utterances(models.voice, ["Tell me a long story about a dragon.", "What is two plus two?"])
    stop = threading.Event()
    killer = threading.Thread(target=_kill_when_the_reply_begins, args=(session, stop), daemon=True)
    killer.start()
    try:
        report = run_recorded_turn(session, models, first.samples, SETTINGS.voice)
    finally:
        stop.set()
        killer.join()
    assert any("was killed" in problem for problem in report.problems), report.problems
    assert report.status == "interrupted"
    reply = next(m for m in session.store.messages(report.conversation_id or 0) if m.role == "assistant")
    assert reply.meta.get("engine_crash") == "SIGKILL"

    again = run_recorded_turn(session, models, second.samples, SETTINGS.voice, conversation_id=report.conversation_id)
    assert again.problems == [] and "speaking" in again.states
    last = session.store.messages(report.conversation_id or 0)[-1]
    assert last.role == "assistant" and last.status == "complete" and last.content.strip()
