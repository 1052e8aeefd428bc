"""The whole turn loop on the real SmolLM2 model: KV reuse across turns, context overflow, stop."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from app.core.store import Store
from app.core.turn import ChatSession, ContextTrimmed, ReplyFinished, TextDelta, add_user_message
from app.engines.llama_cpp_engine import LlamaCppEngine
from app.settings import GenerationSettings, Settings


@pytest.fixture
def small_engine(smollm2_path: Path) -> LlamaCppEngine:
    engine = LlamaCppEngine(smollm2_path, model_id="smollm2-135m-instruct", n_ctx=512, n_threads=2)
    yield engine
    engine.close()


def finished(events) -> ReplyFinished:  # type: ignore[no-untyped-def]
    return next(e for e in events if isinstance(e, ReplyFinished))


def test_turns_reuse_the_kv_cache_and_overflow_leaves_a_marker(tmp_path: Path, small_engine: LlamaCppEngine) -> None:
    store = Store.open(tmp_path / "s.db")
    settings = Settings(generation=GenerationSettings(temperature=0.0, max_tokens=40, seed=2))
    session = ChatSession(store, small_engine, settings)
    question = "Tell me one fact about the sea, in a sentence. " + "Please keep it short and simple. " * 4
    cid, markers, stats = None, [], []
    for _ in range(9):
        cid = add_user_message(store, cid, question).conversation_id
        events = list(session.reply(cid))
        markers += [e.marker for e in events if isinstance(e, ContextTrimmed)]
        stats.append(finished(events).stats)
        assert finished(events).message.content, "every turn gets a reply, before and after trimming"
    assert markers, "nine turns of ~90 tokens overflow a 512-token context"
    assert "left the model's context" in markers[0].content
    # A turn that did not trim evaluated only its new tail, not the whole history.
    trimmed_turns = {m.id for m in markers}
    reused = [s for s in stats[1:] if s.prompt_evaluated < s.prompt_tokens / 2]
    assert reused, [(s.prompt_evaluated, s.prompt_tokens) for s in stats]
    assert trimmed_turns
    store.close()


def test_stop_mid_reply_keeps_the_words_so_far(tmp_path: Path, small_engine: LlamaCppEngine) -> None:
    store = Store.open(tmp_path / "s.db")
    session = ChatSession(
        store, small_engine, Settings(generation=GenerationSettings(temperature=0.0, max_tokens=200, seed=1))
    )
    cid = add_user_message(store, None, "Write a long story about a dragon.").conversation_id
    cancel = threading.Event()
    text = ""
    for event in session.reply(cid, cancel):
        if isinstance(event, TextDelta):
            text += event.text
            if len(text) > 20:
                cancel.set()
    reply = store.messages(cid)[-1]
    assert reply.status == "stopped" and reply.content == text and len(text) > 20
    store.close()
