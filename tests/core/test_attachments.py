"""Pictures enter a conversation through the one turn loop: stored, read once, fenced into the prompt."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from app.core.images import ImageStore
from app.core.store import Store
from app.core.turn import ChatSession, add_user_message
from app.engines.ocr import FENCE, RapidOcrReader, TextReader
from app.errors import ImageError, PromptError
from app.settings import Settings
from tests.conftest import require
from tests.fakes import FakeEngine, FakeReader
from tests.pictures import plain_png, text_png


@pytest.fixture
def image_store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "images")


def picture_file(tmp_path: Path, name: str = "note.png", data: bytes | None = None) -> Path:
    path = tmp_path / "attach" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(plain_png() if data is None else data)
    return path


def stored_pictures(image_store: ImageStore) -> list[Path]:
    return sorted(image_store.folder.rglob("*.png")) if image_store.folder.exists() else []


def test_picture_is_stored_by_content_read_once_and_recorded(
    store: Store, image_store: ImageStore, tmp_path: Path
) -> None:
    reader = FakeReader("Buy milk\nand eggs")
    user = add_user_message(store, None, "What does it say?", [picture_file(tmp_path)], image_store, reader)
    [record] = user.meta["images"]
    assert record == {
        "sha256": record["sha256"],
        "name": "note.png",
        "width": 64,
        "height": 48,
        "format": "PNG",
        "ocr_text": "Buy milk\nand eggs",
    }
    assert record["sha256"] in image_store and len(reader.seen) == 1
    assert reader.seen[0].sha256 == record["sha256"]
    assert store.get_message(user.id).meta == user.meta, "the record is committed with the message"


def test_prompt_carries_the_fenced_text_after_the_words_and_never_changes(
    store: Store, image_store: ImageStore, tmp_path: Path
) -> None:
    reader = FakeReader("Buy milk")
    engine = FakeEngine(["It says buy milk.", "You're welcome."])
    session = ChatSession(store, engine, Settings(default_instructions="Be brief."))
    original = picture_file(tmp_path)
    cid = add_user_message(store, None, "What does it say?", [original], image_store, reader).conversation_id
    list(session.reply(cid))
    original.unlink()  # the history no longer needs the file the user attached
    add_user_message(store, cid, "Thanks")
    list(session.reply(cid))

    first, second = engine.prompts
    shown = first[1].content
    assert shown.startswith("What does it say?\n\n")
    assert f"{FENCE}text\nBuy milk\n{FENCE}" in shown and "'note.png' (64×48 PNG)" in shown
    assert second[: len(first)] == first, "the old picture message renders identically: the prefix is stable"
    assert len(reader.seen) == 1, "the picture is read when sent, not on every turn"


def test_context_meter_counts_the_text_read_from_pictures(
    store: Store, image_store: ImageStore, tmp_path: Path
) -> None:
    session = ChatSession(store, FakeEngine(), Settings())
    plain = add_user_message(store, None, "Look")
    pictured = add_user_message(store, None, "Look", [picture_file(tmp_path)], image_store, FakeReader("one two three"))
    assert session.context_usage(pictured.conversation_id)[0] > session.context_usage(plain.conversation_id)[0]


def test_a_picture_alone_is_a_message(store: Store, image_store: ImageStore) -> None:
    user = add_user_message(store, None, "  ", [plain_png()], image_store, FakeReader("x"))
    assert user.content == "(image)" and user.meta["images"][0]["name"] == "image"
    assert store.get_conversation(user.conversation_id).title == "image"
    with pytest.raises(PromptError):
        add_user_message(store, None, "  ", [], image_store, FakeReader())


@pytest.mark.parametrize("bad", [b"this is not a picture", Path("/nonexistent/gone.png")])
def test_a_bad_picture_stores_nothing(store: Store, image_store: ImageStore, tmp_path: Path, bad: bytes | Path) -> None:
    kept = add_user_message(store, None, "earlier")
    for conversation_id in (None, kept.conversation_id):
        with pytest.raises(ImageError):
            add_user_message(
                store, conversation_id, "Two pictures", [picture_file(tmp_path), bad], image_store, FakeReader("hi")
            )
    assert [c.id for c in store.list_conversations()] == [kept.conversation_id]
    assert [m.content for m in store.messages(kept.conversation_id)] == ["earlier"]
    assert stored_pictures(image_store) == [], "not even the good picture is stored"


def test_a_failing_reader_stores_nothing(store: Store, image_store: ImageStore) -> None:
    reader = FakeReader(fail=ImageError("OCR broke.", "Try again."))
    with pytest.raises(ImageError):
        add_user_message(store, None, "Read this", [plain_png()], image_store, reader)
    assert store.list_conversations() == [] and stored_pictures(image_store) == []


def test_edit_and_resend_keeps_the_pictures(store: Store, image_store: ImageStore) -> None:
    engine = FakeEngine(["a1", "a2"])
    session = ChatSession(store, engine, Settings())
    first = add_user_message(store, None, "What is it?", [plain_png()], image_store, FakeReader("STOP sign"))
    list(session.reply(first.conversation_id))
    list(session.edit_and_resend(first.conversation_id, first.id, "What colour is it?"))
    edited = store.messages(first.conversation_id)[0]
    assert edited.content == "What colour is it?" and edited.meta["images"] == first.meta["images"]
    assert "STOP sign" in engine.prompts[-1][-1].content


def test_the_real_reader_reads_an_attached_picture(store: Store, image_store: ImageStore) -> None:
    require(importlib.util.find_spec("rapidocr_onnxruntime") is not None, "rapidocr-onnxruntime is not installed")
    reader: TextReader = RapidOcrReader(threads=2)
    engine = FakeEngine()
    user = add_user_message(store, None, "Read it", [text_png("Meet me at noon")], image_store, reader)
    list(ChatSession(store, engine, Settings()).reply(user.conversation_id))
    read = user.meta["images"][0]["ocr_text"].lower().replace(" ", "")
    assert "meetmeatnoon" in read
    assert FENCE + "text\n" in engine.prompts[-1][-1].content
