"""`hearth ask --image` in a real subprocess: the real OCR models read the picture, the real SmolLM2 answers."""

from __future__ import annotations

import json
import re
from pathlib import Path

from app.core.images import ImageStore
from app.paths import DataPaths
from tests.e2e.hearth_cli import ask, assert_fails_clearly, assert_ok, open_store
from tests.pictures import text_png


def test_ask_with_a_picture_stores_what_it_says(cli_home: Path, tmp_path: Path) -> None:
    picture = tmp_path / "pic.png"
    picture.write_bytes(text_png("The secret word is PINEAPPLE", size=40))
    result = ask(cli_home, "What does the picture say?", "--image", str(picture), "--json")
    assert_ok(result)
    answer = json.loads(result.stdout)
    [shown] = answer["images"]
    assert shown["name"] == "pic.png" and shown["ocr_chars"] > 0
    assert answer["sees_pictures"] is False, "the default model reads the text only"
    with open_store(cli_home) as store:
        user, reply = store.messages(answer["conversation_id"])
    assert user.content == "What does the picture say?" and reply.content == answer["text"]
    [record] = user.meta["images"]
    assert record["sha256"] == shown["sha256"] and record["sha256"] in ImageStore(DataPaths(cli_home).images)
    assert "pineapple" in re.sub(r"\s", "", record["ocr_text"].lower())


def test_a_file_that_is_not_a_picture_is_refused_before_anything_is_stored(cli_home: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes.png"
    notes.write_text("just some words, not a picture", encoding="utf-8")
    result = ask(cli_home, "What does it say?", "--image", str(notes))
    assert_fails_clearly(result, "notes.png")
    missing = ask(cli_home, "What does it say?", "--image", str(tmp_path / "gone.png"))
    assert_fails_clearly(missing, "gone.png")
    assert result.stdout == "" and missing.stdout == ""
    with open_store(cli_home) as store:
        assert store.list_conversations() == []


def test_without_json_a_note_says_the_model_reads_the_text_only(cli_home: Path, tmp_path: Path) -> None:
    picture = tmp_path / "pic.png"
    picture.write_bytes(text_png("OPEN 9 TO 5"))
    result = ask(cli_home, "What does it say?", "--image", str(picture))
    assert_ok(result)
    assert "cannot see pictures: it was given the text read from them" in result.stderr
