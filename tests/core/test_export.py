"""Exports: readable Markdown, a stable JSON shape, and atomic writes chosen by file suffix."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.conversation import Conversation, Message
from app.core.export import export_conversation, from_json, to_json, to_markdown
from app.core.store import Store
from app.errors import HearthError

Filled = tuple[Conversation, list[Message]]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "hearth.db") as opened:
        yield opened


@pytest.fixture
def filled(store: Store) -> Filled:
    conv = store.create_conversation("Weekend « plans »", system_prompt="Be brief.\nUse lists.", model_id="smollm2")
    store.add_message(conv.id, "user", "What should I cook?")
    store.add_message(conv.id, "assistant", "Try a **risotto**.", model_id="smollm2", meta={"tokens": 5})
    store.add_message(conv.id, "marker", "Earlier messages left the context.")
    store.add_message(conv.id, "user", "And dessert? 🍰")
    store.add_message(conv.id, "assistant", "Maybe a tart", status="interrupted")
    store.add_message(conv.id, "assistant", "Ice cr", status="stopped")
    return store.get_conversation(conv.id), store.messages(conv.id)


def test_markdown_transcript(filled: Filled) -> None:
    conversation, messages = filled
    text = to_markdown(conversation, messages)
    assert text.startswith("# Weekend « plans »\n")
    assert "> Be brief.\n> Use lists." in text
    assert "## You\n\nWhat should I cook?" in text
    assert "## Assistant (smollm2)\n\nTry a **risotto**." in text
    assert "> **Note:** Earlier messages left the context." in text
    assert "And dessert? 🍰" in text
    assert "Maybe a tart\n\n*(Interrupted" in text
    assert "Ice cr\n\n*(Stopped" in text
    assert text.index("What should I cook?") < text.index("Earlier messages") < text.index("And dessert?")


def test_markdown_title_stays_one_heading() -> None:
    text = to_markdown(Conversation(1, "two\nlines"), [])
    assert text == "# two lines\n"


def test_json_shape(filled: Filled) -> None:
    conversation, messages = filled
    text = to_json(conversation, messages)
    assert "🍰" in text and "«" in text  # ensure_ascii is off
    assert text.startswith("{\n  ")  # indented
    document = json.loads(text)
    assert document["format"] == "hearth.conversation" and document["version"] == 1
    assert set(document["conversation"]) == {"id", "title", "system_prompt", "model_id", "created_at", "updated_at"}
    assert document["conversation"]["title"] == "Weekend « plans »"
    roles = [m["role"] for m in document["messages"]]
    assert roles == ["user", "assistant", "marker", "user", "assistant", "assistant"]
    assert set(document["messages"][0]) == {"id", "role", "content", "status", "created_at", "model_id", "meta"}
    assert document["messages"][1]["meta"] == {"tokens": 5}
    assert document["messages"][4]["status"] == "interrupted"


def test_json_round_trip(filled: Filled) -> None:
    conversation, messages = filled
    assert from_json(to_json(conversation, messages)) == (conversation, messages)


@pytest.mark.parametrize("text", ['{"format": "other"}', "[]", '{"format": "hearth.conversation", "version": 99}'])
def test_from_json_rejects_foreign_documents(text: str) -> None:
    with pytest.raises(ValueError):
        from_json(text)


def test_export_by_suffix(store: Store, filled: Filled, tmp_path: Path) -> None:
    conversation, messages = filled
    md_path, json_path = tmp_path / "out" / "chat.MD", tmp_path / "out" / "chat.json"
    md_path.parent.mkdir()
    export_conversation(store, conversation.id, md_path)
    export_conversation(store, conversation.id, json_path)
    assert md_path.read_text(encoding="utf-8") == to_markdown(conversation, messages)
    assert from_json(json_path.read_text(encoding="utf-8")) == (conversation, messages)
    assert sorted(p.name for p in md_path.parent.iterdir()) == ["chat.MD", "chat.json"]  # no temp files left


def test_export_replaces_existing_file(store: Store, filled: Filled, tmp_path: Path) -> None:
    target = tmp_path / "chat.md"
    target.write_text("old contents")
    export_conversation(store, filled[0].id, target)
    assert target.read_text(encoding="utf-8").startswith("# Weekend")


def test_export_refuses_unknown_suffix(store: Store, filled: Filled, tmp_path: Path) -> None:
    with pytest.raises(HearthError) as raised:
        export_conversation(store, filled[0].id, tmp_path / "chat.pdf")
    assert ".md" in raised.value.hint
    assert list(tmp_path.glob("chat*")) == []


def test_export_to_missing_folder_is_a_clear_error(store: Store, filled: Filled, tmp_path: Path) -> None:
    with pytest.raises(HearthError, match="could not write"):
        export_conversation(store, filled[0].id, tmp_path / "missing" / "chat.json")
