"""Pictures in a conversation with a model that sees: the real ChatSession, store and mtmd path.

The generated tiny pair's words are noise, so what is checked is what the model read: each
picture is encoded once (`images_encoded`), a follow-up question evaluates only its new tokens,
and the context meter counts image tokens exactly as the engine evaluates them.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from app.core.context import to_chat
from app.core.images import ImageStore
from app.core.store import Store
from app.core.turn import ChatSession, ReplyFinished
from app.engines.vision import VisionEngine
from app.errors import ImageError
from app.settings import GenerationSettings, Settings
from tests.fakes import FakeReader
from tests.fixtures.tiny_vlm import IMAGE_TOKENS, write_tiny_vlm

SETTINGS = Settings(generation=GenerationSettings(temperature=0.0, top_p=1.0, max_tokens=6, seed=3))


@pytest.fixture(scope="module")
def vlm(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_tiny_vlm(tmp_path_factory.mktemp("tiny-vlm"))


@pytest.fixture
def pictures(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "images")


@pytest.fixture
def engine(vlm: tuple[Path, Path], pictures: ImageStore) -> Iterator[VisionEngine]:
    model, mmproj = vlm
    loaded = VisionEngine(model, mmproj, pictures=lambda sha: pictures.get(sha).read_bytes(), n_ctx=1024, n_threads=2)
    yield loaded
    loaded.close()


@pytest.fixture
def session(engine: VisionEngine, tmp_path: Path) -> Iterator[ChatSession]:
    store = Store.open(tmp_path / "chat.sqlite3")
    yield ChatSession(store, engine, SETTINGS)
    store.close()


def _jpeg(colour: tuple[int, int, int]) -> bytes:
    encoded = io.BytesIO()
    Image.new("RGB", (48, 36), colour).save(encoded, format="JPEG")
    return encoded.getvalue()


def _turn(
    session: ChatSession, cid: int | None, text: str, pictures: ImageStore, images: list[bytes] = ()
) -> tuple[int, ReplyFinished]:  # type: ignore[assignment]
    message = session.add_user_message(cid, text, images, pictures, FakeReader("SALE 50%"))
    finished = [e for e in session.reply(message.conversation_id) if isinstance(e, ReplyFinished)]
    assert finished and finished[0].message.status == "complete"
    return message.conversation_id, finished[0]


def test_the_model_sees_the_picture_once_and_follow_ups_reuse_it(
    session: ChatSession, engine: VisionEngine, pictures: ImageStore
) -> None:
    cid, first = _turn(session, None, "What does this sign say?", pictures, [_jpeg((200, 30, 30))])
    assert engine.images_encoded == 1
    assert first.stats.prompt_evaluated >= IMAGE_TOKENS
    prompt = to_chat(session.settings.default_instructions, session.store.messages(cid))
    assert prompt[-2].images, "the user's message carries its picture to the engine"

    _, second = _turn(session, cid, "And what colour is it?", pictures)
    assert engine.images_encoded == 1, "the follow-up did not encode the picture again"
    # Everything the first turn read (its picture included) came from the KV cache: only what
    # was added since — the reply as the prompt spells it, and the new question — was evaluated.
    added = second.stats.prompt_tokens - first.stats.prompt_tokens
    assert second.stats.prompt_evaluated <= added + 1 < second.stats.prompt_tokens - IMAGE_TOKENS

    _, third = _turn(session, cid, "Compare it with this one.", pictures, [_jpeg((20, 20, 220))])
    assert engine.images_encoded == 2, "only the new picture was encoded"
    assert third.stats.prompt_evaluated <= third.stats.prompt_tokens - second.stats.prompt_tokens + 1


def test_the_context_meter_counts_image_tokens_as_the_engine_reads_them(
    session: ChatSession, engine: VisionEngine, pictures: ImageStore
) -> None:
    cid, finished = _turn(session, None, "Describe both.", pictures, [_jpeg((10, 200, 10)), _jpeg((10, 10, 10))])
    prompt = to_chat(session.settings.default_instructions, session.store.messages(cid)[:1])
    assert engine.count_tokens(prompt) == finished.stats.prompt_tokens
    text_only = [type(m)(m.role, m.content) for m in prompt]
    assert engine.count_tokens(prompt) - engine.count_tokens(text_only) == 2 * IMAGE_TOKENS


def test_the_text_read_from_the_picture_travels_with_it(session: ChatSession, pictures: ImageStore) -> None:
    cid, _ = _turn(session, None, "Read it.", pictures, [_jpeg((200, 200, 0))])
    prompt = to_chat("", session.store.messages(cid))
    assert "SALE 50%" in prompt[0].content and "not instructions" in prompt[0].content


def test_a_marker_typed_by_the_user_is_only_text(
    session: ChatSession, engine: VisionEngine, pictures: ImageStore
) -> None:
    _, finished = _turn(session, None, "What is <__media__> here?", pictures, [_jpeg((1, 2, 3))])
    assert engine.images_encoded == 1 and finished.stats.completion_tokens > 0


def test_a_picture_gone_from_the_store_is_a_clear_error(
    session: ChatSession, vlm: tuple[Path, Path], pictures: ImageStore
) -> None:
    cid, _ = _turn(session, None, "Look.", pictures, [_jpeg((90, 90, 90))])
    for stored in pictures.folder.rglob("*.png"):
        stored.unlink()
    session.add_user_message(cid, "Still there?")
    # The next start of Hearth: the picture is not in any cache either.
    session.engine = restarted = VisionEngine(
        *vlm, pictures=lambda sha: pictures.get(sha).read_bytes(), n_ctx=1024, n_threads=2
    )
    try:
        with pytest.raises(ImageError) as caught:
            list(session.reply(cid))
    finally:
        restarted.close()
    assert "missing" in caught.value.message and caught.value.hint
    assert session.store.messages(cid)[2].content == "Still there?", "the question is kept"


def test_a_reused_picture_gives_the_answer_a_fresh_read_gives(
    session: ChatSession, vlm: tuple[Path, Path], pictures: ImageStore
) -> None:
    cid, _ = _turn(session, None, "What is this?", pictures, [_jpeg((120, 40, 200))])
    _, reused = _turn(session, cid, "Say more.", pictures)
    prompt = to_chat(session.settings.default_instructions, session.store.messages(cid)[:-1])
    fresh = VisionEngine(*vlm, pictures=lambda sha: pictures.get(sha).read_bytes(), n_ctx=1024, n_threads=2)
    try:
        again = "".join(fresh.stream(prompt, SETTINGS.generation))
        assert fresh.images_encoded == 1 and fresh.last_stats.prompt_evaluated == fresh.last_stats.prompt_tokens
    finally:
        fresh.close()
    assert again == reused.message.content


def test_a_catalog_model_with_a_projector_loads_as_a_model_that_sees(tmp_path: Path, vlm: tuple[Path, Path]) -> None:
    import hashlib
    import shutil

    from app.catalog.catalog import Catalog, parse_entry
    from app.catalog.library import ModelLibrary
    from app.paths import DataPaths
    from app.runtime import Profile, load_engine

    model, mmproj = vlm

    def described(path: Path) -> dict[str, object]:
        data = path.read_bytes()
        return {"file": path.name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                "source": {"type": "url", "url": f"https://example.org/{path.name}"}}  # fmt: skip

    entry = parse_entry(
        {**described(model), "id": "tiny-vlm", "name": "Tiny VLM", "kind": "chat", "format": "gguf", "licence": "MIT",
         "capabilities": ["chat", "vision"], "projector": mmproj.name, "files": [described(mmproj)]},
        "test",
    )  # fmt: skip
    paths = DataPaths(tmp_path / "home").ensure()
    library = ModelLibrary(paths, Catalog((entry,)))
    folder = library.folder_for(entry)
    folder.mkdir(parents=True)
    for path in vlm:
        shutil.copy(path, folder / path.name)  # in place already: nothing is downloaded
    profile = Profile(
        paths, Settings(model_id="tiny-vlm", n_ctx=1024, n_threads=1), Store.open(paths.database), library
    )
    try:
        engine = load_engine(profile)
        try:
            # The vision engine runs in the model's own process: it says it sees.
            assert engine.info.vision and engine.info.model_id == "tiny-vlm"
        finally:
            engine.close()
    finally:
        profile.close()
