"""The turn loop on a real SQLite store with a hand-written fake engine."""

from __future__ import annotations

import threading

import pytest

from app.core.store import Store
from app.core.turn import ChatSession, ContextTrimmed, ReplyFinished, ReplyStarted, TextDelta, add_user_message
from app.errors import PromptError
from app.settings import GenerationSettings, Settings
from tests.fakes import FakeEngine


def run(events) -> tuple[str, list]:  # type: ignore[no-untyped-def]
    events = list(events)
    return "".join(e.text for e in events if isinstance(e, TextDelta)), events


def test_send_streams_and_commits(store: Store) -> None:
    engine = FakeEngine(["Paris is the capital."])
    session = ChatSession(store, engine, Settings())
    user = add_user_message(store, None, "Capital of France?")
    text, events = run(session.reply(user.conversation_id))
    assert text == "Paris is the capital."
    assert isinstance(events[0], ReplyStarted) and isinstance(events[-1], ReplyFinished)
    stored = store.messages(user.conversation_id)
    assert [(m.role, m.content, m.status) for m in stored] == [
        ("user", "Capital of France?", "complete"),
        ("assistant", "Paris is the capital.", "complete"),
    ]
    assert store.get_conversation(user.conversation_id).title == "Capital of France?"


def test_instructions_come_first_and_conversation_overrides_default(store: Store) -> None:
    engine = FakeEngine()
    session = ChatSession(store, engine, Settings(default_instructions="Default rules."))
    user = add_user_message(store, None, "hi")
    run(session.reply(user.conversation_id))
    assert engine.prompts[-1][0].content == "Default rules."
    store.set_system_prompt(user.conversation_id, "Talk like a pirate.")
    add_user_message(store, user.conversation_id, "again")
    run(session.reply(user.conversation_id))
    assert engine.prompts[-1][0].content == "Talk like a pirate."


def test_empty_message_is_refused_and_nothing_stored(store: Store) -> None:
    with pytest.raises(PromptError):
        add_user_message(store, None, "   \n")
    assert store.list_conversations() == []


def test_stop_keeps_what_was_written_and_marks_it(store: Store) -> None:
    gate = threading.Event()
    engine = FakeEngine(["one two three four five six"], gate=gate)
    session = ChatSession(store, engine, Settings())
    user = add_user_message(store, None, "count")
    cancel = threading.Event()
    stream = session.reply(user.conversation_id, cancel)
    seen = ""
    gate.set()
    for event in stream:
        if isinstance(event, TextDelta):
            seen += event.text
            if seen.endswith("two"):
                cancel.set()
    reply = store.messages(user.conversation_id)[-1]
    assert reply.status == "stopped" and reply.content == "one two"


def test_regenerate_replaces_the_last_reply(store: Store) -> None:
    engine = FakeEngine(["first answer", "second answer"])
    session = ChatSession(store, engine, Settings())
    user = add_user_message(store, None, "q")
    run(session.reply(user.conversation_id))
    run(session.regenerate(user.conversation_id))
    assert [m.content for m in store.messages(user.conversation_id)] == ["q", "second answer"]


def test_edit_and_resend_forgets_what_followed(store: Store) -> None:
    engine = FakeEngine(["a1", "a2", "a3"])
    session = ChatSession(store, engine, Settings())
    first = add_user_message(store, None, "q1")
    cid = first.conversation_id
    run(session.reply(cid))
    add_user_message(store, cid, "q2")
    run(session.reply(cid))
    run(session.edit_and_resend(cid, first.id, "q1 edited"))
    assert [m.content for m in store.messages(cid)] == ["q1 edited", "a3"]
    assert [m.content for m in engine.prompts[-1][1:]] == ["q1 edited"]


def test_overflow_stores_a_marker_and_later_turns_start_after_it(store: Store) -> None:
    engine = FakeEngine(n_ctx=400)
    engine.default_reply = " ".join(["r"] * 40)
    settings = Settings(generation=GenerationSettings(max_tokens=64))
    session = ChatSession(store, engine, settings)
    cid = None
    markers = []
    for turn in range(12):
        user = add_user_message(store, cid, f"question {turn} " + " ".join(["q"] * 30))
        cid = user.conversation_id
        _, events = run(session.reply(cid))
        markers += [e.marker for e in events if isinstance(e, ContextTrimmed)]
    assert markers, "the context overflowed, so a marker must say what left"
    assert "left the model's context" in markers[0].content
    # What the engine saw last starts after the latest cut, and the system prompt is pinned.
    last_prompt = engine.prompts[-1]
    assert last_prompt[0].role == "system"
    assert "question 0 " not in " ".join(m.content for m in last_prompt)
    assert engine.count_tokens(last_prompt) <= 400 - 64
    # Nothing is deleted from the history: the markers sit between the dialogue.
    roles = [m.role for m in store.messages(cid)]
    assert roles.count("user") == 12 and roles.count("marker") == len(markers)
    # Cuts are amortised: not every turn after the first overflow re-cuts.
    assert len(markers) < 6


def test_engine_failure_mid_reply_keeps_the_partial_text(store: Store) -> None:
    class Failing(FakeEngine):
        def stream(self, messages, settings, cancel=None):  # type: ignore[no-untyped-def]
            yield "partial"
            raise RuntimeError("device lost")

    session = ChatSession(store, Failing(), Settings())
    user = add_user_message(store, None, "q")
    with pytest.raises(RuntimeError):
        run(session.reply(user.conversation_id))
    reply = store.messages(user.conversation_id)[-1]
    assert reply.content == "partial" and reply.status == "error" and "device lost" in reply.meta["error"]
