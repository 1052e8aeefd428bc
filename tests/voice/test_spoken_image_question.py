"""One context for all: a question spoken about a picture that was dropped into the conversation earlier."""

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
from app.settings import GenerationSettings, Settings, VoiceSettings
from app.voice.replay import VoiceModels, run_recorded_turn
from app.voice.utterances import piper_utterances
from tests.fakes import FakeReader
from tests.fixtures.tiny_vlm import IMAGE_TOKENS, write_tiny_vlm

pytestmark = pytest.mark.voice

SETTINGS = Settings(generation=GenerationSettings(temperature=0.0, top_p=1.0, max_tokens=6, seed=3))


@pytest.fixture
def seeing_session(tmp_path: Path) -> Iterator[tuple[ChatSession, VisionEngine, ImageStore]]:
    pictures = ImageStore(tmp_path / "images")
    engine = VisionEngine(
        *write_tiny_vlm(tmp_path / "vlm"), pictures=lambda sha: pictures.get(sha).read_bytes(), n_ctx=1024, n_threads=1
    )
    store = Store.open(tmp_path / "chat.sqlite3")
    yield ChatSession(store, engine, SETTINGS), engine, pictures
    store.close()
    engine.close()


def test_a_spoken_question_sees_the_picture_dropped_before(
    seeing_session: tuple[ChatSession, VisionEngine, ImageStore], transcriber: object, voice: object
) -> None:
    session, engine, pictures = seeing_session
    picture = io.BytesIO()
    Image.new("RGB", (64, 48), (220, 180, 20)).save(picture, format="PNG")
    dropped = session.add_user_message(
        None, "Here is a sign.", [picture.getvalue()], pictures, FakeReader("OPEN 9 TO 5")
    )
    assert [e for e in session.reply(dropped.conversation_id) if isinstance(e, ReplyFinished)]
    assert engine.images_encoded == 1

    question = piper_utterances(voice, ["When does the shop open?"])[0]
    report = run_recorded_turn(
        session,
        VoiceModels(transcriber, voice),
        question.samples,
        VoiceSettings(speak_replies=False),
        conversation_id=dropped.conversation_id,
    )
    assert report.conversation_id == dropped.conversation_id and report.heard
    messages = session.store.messages(dropped.conversation_id)
    assert [m.role for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[2].meta.get("spoken") is True and messages[3].status == "complete"
    # The spoken turn's prompt held the picture (its image tokens, from the cache) and the text read from it.
    prompt = to_chat(session.settings.default_instructions, messages[:3])
    assert prompt[1].images and "OPEN 9 TO 5" in prompt[1].content
    assert engine.last_stats.prompt_tokens >= IMAGE_TOKENS + len(report.heard.split())
    assert engine.images_encoded == 1, "the picture was read from the KV cache, not encoded again"
