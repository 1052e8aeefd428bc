"""`hearth ask` in a real subprocess, on the real SmolLM2 model and a real SQLite file."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.hearth_cli import MODEL_ID, add_exchange, ask, assert_fails_clearly, assert_ok, open_store

JSON_KEYS = {"text", "ttft_s", "tokens", "tokens_per_s", "model", "conversation_id", "message_id"}


def test_ask_streams_the_answer_and_stores_the_exchange(cli_home: Path) -> None:
    result = ask(cli_home, "What is the capital of France?")
    assert_ok(result)
    assert "Paris" in result.stdout
    with open_store(cli_home) as store:
        [conversation] = store.list_conversations()
        user, reply = store.messages(conversation.id)
    assert (user.role, user.content) == ("user", "What is the capital of France?")
    assert (reply.role, reply.status, reply.model_id) == ("assistant", "complete", MODEL_ID)
    assert result.stdout == reply.content + "\n", "stdout is exactly the stored reply"


def test_ask_json_prints_one_object_with_the_figures(cli_home: Path) -> None:
    result = ask(cli_home, "What is the capital of France?", "--json")
    assert_ok(result)
    [line] = result.stdout.splitlines()
    answer = json.loads(line)
    assert JSON_KEYS <= answer.keys()
    assert "Paris" in answer["text"] and answer["model"] == MODEL_ID
    assert 0 < answer["tokens"] <= 24
    assert answer["ttft_s"] > 0 and answer["tokens_per_s"] > 0
    with open_store(cli_home) as store:
        stored = store.get_message(answer["message_id"])
    assert stored.conversation_id == answer["conversation_id"]
    assert stored.content == answer["text"]


def test_conversation_option_continues_the_conversation(cli_home: Path) -> None:
    first = json.loads(ask(cli_home, "What is the capital of France?", "--json").stdout)
    again = ask(cli_home, "And the capital of Spain?", "--json", "--conversation", str(first["conversation_id"]))
    assert_ok(again)
    second = json.loads(again.stdout)
    assert second["conversation_id"] == first["conversation_id"]
    # A fresh process has no KV cache to reuse, so the whole prompt is evaluated, and that prompt
    # carries the first question and its answer as well as the new question.
    assert second["prompt_evaluated"] == second["prompt_tokens"]
    assert second["prompt_tokens"] >= first["prompt_tokens"] + first["tokens"]
    with open_store(cli_home) as store:
        messages = store.messages(first["conversation_id"])
        assert len(store.list_conversations()) == 1
    assert [m.role for m in messages] == ["user", "assistant", "user", "assistant"]
    assert [m.content for m in messages[1::2]] == [first["text"], second["text"]]


def test_unknown_model_is_refused_before_anything_is_stored(cli_home: Path) -> None:
    result = ask(cli_home, "Hello", "--model", "no-such-model")
    assert_fails_clearly(result, "no-such-model", MODEL_ID)
    assert result.stdout == ""
    with open_store(cli_home) as store:
        assert store.list_conversations() == []


def test_unknown_conversation_is_refused_and_nothing_is_added(cli_home: Path) -> None:
    kept = add_exchange(cli_home, "What is the capital of France?", "Paris.")
    result = ask(cli_home, "Hello", "--conversation", "999")
    assert_fails_clearly(result, "Conversation 999 does not exist")
    with open_store(cli_home) as store:
        assert [c.id for c in store.list_conversations()] == [kept]
        assert len(store.messages(kept)) == 2


def test_out_of_range_option_is_a_clear_error(cli_home: Path) -> None:
    result = ask(cli_home, "Hello", "--max-tokens", "0")  # the last --max-tokens wins
    assert_fails_clearly(result, "max_tokens", "hearth ask --help")
    with open_store(cli_home) as store:
        assert store.list_conversations() == []
