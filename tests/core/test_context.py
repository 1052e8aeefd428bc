"""Context planning: nothing leaves silently, the instructions stay pinned, whole turns go first."""

from __future__ import annotations

import pytest

from app.core.context import describe_drop, plan_context, visible_dialogue
from app.core.conversation import Message
from app.errors import PromptError
from tests.fakes import FakeEngine

count = FakeEngine().count_tokens


def history(*texts: str) -> list[Message]:
    roles = ["user", "assistant"]
    return [Message(i + 1, 1, roles[i % 2], text) for i, text in enumerate(texts)]  # type: ignore[arg-type]


def words(n: int) -> str:
    return " ".join(["w"] * n)


def test_everything_fits_nothing_dropped() -> None:
    plan = plan_context("Be kind.", history("hi", "hello", "how are you?"), count, n_ctx=1000, reply_room=100)
    assert plan.dropped == []
    assert [m.role for m in plan.prompt] == ["system", "user", "assistant", "user"]
    assert plan.used_tokens == count(plan.prompt)


def test_overflow_drops_oldest_whole_turns_and_keeps_system_pinned() -> None:
    msgs = history(words(100), words(100), words(100), words(100), words(100), words(100), "last question")
    plan = plan_context("Instructions", msgs, count, n_ctx=600, reply_room=100)
    assert plan.dropped, "something must leave the context"
    assert plan.prompt[0].role == "system" and plan.prompt[0].content == "Instructions"
    assert plan.prompt[1].role == "user", "the kept dialogue starts at a turn boundary"
    assert plan.prompt[-1].content == "last question"
    assert plan.used_tokens <= 600 - 100
    # Dropped + kept = everything, in order, no duplicates.
    kept_ids = [m.id for m in msgs if m.id > plan.dropped[-1].id]
    assert [m.id for m in plan.dropped] + kept_ids == [m.id for m in msgs]


def test_drops_below_the_brim_so_next_turns_reuse_the_cache() -> None:
    msgs = history(*[words(50)] * 19)
    plan = plan_context("", msgs, count, n_ctx=1000, reply_room=100)
    assert plan.dropped
    assert plan.used_tokens <= 0.75 * 900 + 1


def test_marker_moves_the_start_of_the_visible_dialogue() -> None:
    msgs = history("a", "b", "c", "d")
    marker = Message(5, 1, "marker", "2 messages left", meta={"kind": "context", "context_from": 3})
    assert [m.content for m in visible_dialogue(msgs + [marker])] == ["c", "d"]


def test_a_single_message_longer_than_the_context_is_a_clear_error() -> None:
    with pytest.raises(PromptError) as info:
        plan_context("sys", history(words(2000)), count, n_ctx=512, reply_room=64)
    assert "context" in info.value.message and info.value.hint


def test_describe_drop_names_what_left() -> None:
    text = describe_drop(history("What is the tallest mountain?", "Everest."))
    assert "2 earlier messages" in text and "tallest mountain" in text
