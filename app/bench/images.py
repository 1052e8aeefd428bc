"""Pictures in `hearth bench`: how soon an answer starts, and what a follow-up about a picture costs.

- image_ocr_first_token_s: a picture with text is attached (normalised, stored, read by OCR) and the
  default chat model starts answering — the path every model takes;
- image_vlm_first_token_s: the same through a model that sees (the generated tiny vision pair from
  the test fixtures: its words are noise, its prompt work is real), picture encoded by the projector;
- image_followup_ratio: time to first token of a follow-up question in a conversation that holds a
  picture ÷ the same follow-up in a text-only conversation of the same prompt length (target ≤ 1.3),
  on a generated pair whose encoder is sized like a small real one (random weights). The detail also gives the ratio when the picture is encoded again, which is
  what a follow-up would cost without the kept KV cache.
"""

from __future__ import annotations

import io
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from app.bench.common import Figure
from app.core.conversation import ChatMessage
from app.core.images import ImageStore
from app.core.store import Store
from app.core.turn import ChatSession, TextDelta, add_user_message
from app.settings import GenerationSettings, Settings

ROUNDS = 5
GREEDY = GenerationSettings(temperature=0.0, top_p=1.0, max_tokens=4, seed=1)
ONE_TOKEN = GenerationSettings(temperature=0.0, top_p=1.0, max_tokens=1, seed=1)


def bench_images(path: Path, folder: Path) -> list[Any]:

    ocr = _ocr_first_token(path, folder / "ocr")
    vlm = _vlm_figures(folder / "vlm")
    return [
        Figure("image_ocr_first_token_s", ocr["median_s"], 5.0, "lower", "s", ocr),
        Figure(
            "image_vlm_first_token_s", vlm["first_token_s"], 5.0, "lower", "s", {"first_token_s": vlm["first_token_s"]}
        ),
        Figure(
            "image_followup_ratio",
            vlm["ratio"],
            1.3,
            "lower",
            "×",
            {k: v for k, v in vlm.items() if k != "first_token_s"},
        ),
    ]


def _text_picture(text: str) -> bytes:
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (640, 160), "white")
    ImageDraw.Draw(image).text((20, 50), text, fill="black", font=ImageFont.load_default(size=40))
    encoded = io.BytesIO()
    image.save(encoded, format="JPEG", quality=92)
    return encoded.getvalue()


def _ocr_first_token(path: Path, folder: Path) -> dict[str, float]:
    from app.bench.common import make_engine
    from app.engines.ocr import RapidOcrReader

    folder.mkdir(parents=True, exist_ok=True)
    engine = make_engine(path)
    reader = RapidOcrReader()
    reader.read(_normalised(_text_picture("warm up")))  # the OCR models load once per app run
    store = Store.open(folder / "bench.sqlite3")
    session = ChatSession(store, engine, Settings(generation=GREEDY))
    times = []
    try:
        for i in range(ROUNDS):
            started = time.perf_counter()
            message = add_user_message(
                store,
                None,
                "What does the sign say?",
                [_text_picture(f"OPEN {i + 8} TO 5")],
                ImageStore(folder / "images"),
                reader,
            )
            for event in session.reply(message.conversation_id):
                if isinstance(event, TextDelta):
                    times.append(time.perf_counter() - started)
                    break
    finally:
        store.close()
        engine.close()
    return {"median_s": statistics.median(times), "best_s": min(times), "worst_s": max(times)}


def _normalised(data: bytes) -> Any:
    from app.core.images import normalise

    return normalise(data, name="bench.jpg")


def _vlm_figures(folder: Path) -> dict[str, float]:
    from app.engines.vision import VisionEngine

    source_tree = Path(__file__).resolve().parents[2]
    if not (source_tree / "tests" / "fixtures" / "tiny_vlm.py").is_file():
        raise RuntimeError("The vision benchmark needs Hearth's source tree (tests/fixtures).")
    if str(source_tree) not in sys.path:
        sys.path.insert(0, str(source_tree))
    from tests.fixtures.tiny_vlm import VisionShape, write_tiny_vlm

    pictures = ImageStore(folder / "images")
    # An encoder about as costly as a small real one (SigLIP-base-like width at 224 px, 196 image tokens).
    shape = VisionShape(image_size=224, patch_size=16, embd=384, ff=1536, blocks=6, heads=6)
    engine = VisionEngine(
        *write_tiny_vlm(folder / "model", shape=shape),
        pictures=lambda sha: pictures.get(sha).read_bytes(),
        n_ctx=2048,
        n_threads=1,
    )
    try:
        picture = _normalised(_text_picture("OPEN 9 TO 5"))
        pictures.put(picture)
        image_tokens = engine.count_tokens([ChatMessage("user", "", (picture.sha256,))]) - engine.count_tokens(
            [ChatMessage("user", "")]
        )
        question = ChatMessage("user", "What does it say?", (picture.sha256,))
        same_length = _same_length_text(engine, question)
        reply = ChatMessage("assistant", "It is a sign.")
        follow_up = ChatMessage("user", "And when does it close?")
        first, kept, text_only, encoded_again = [], [], [], []
        for _ in range(ROUNDS):
            engine._llm.reset()  # each round starts from an empty cache, as a new conversation does
            first.append(_first_token_s(engine, [question]))
            _first_token_s(engine, [question, reply])
            kept.append(_first_token_s(engine, [question, reply, follow_up]))
            kept_evaluated = engine.last_stats.prompt_evaluated
            _first_token_s(engine, [same_length, reply])
            text_only.append(_first_token_s(engine, [same_length, reply, follow_up]))
            text_evaluated = engine.last_stats.prompt_evaluated
            engine._llm.reset()
            encoded_again.append(_first_token_s(engine, [question, reply, follow_up]))
        ratio = statistics.median(k / t for k, t in zip(kept, text_only, strict=True))
        return {
            "first_token_s": statistics.median(first),
            "ratio": ratio,
            "followup_s": statistics.median(kept),
            "text_only_followup_s": statistics.median(text_only),
            "ratio_if_encoded_again": statistics.median(e / t for e, t in zip(encoded_again, text_only, strict=True)),
            "image_tokens": float(image_tokens),
            "prompt_tokens": float(engine.count_tokens([question])),
            "text_only_prompt_tokens": float(engine.count_tokens([same_length])),
            "followup_evaluated_tokens": float(kept_evaluated),
            "text_only_evaluated_tokens": float(text_evaluated),
        }
    finally:
        engine.close()


def _same_length_text(engine: Any, question: ChatMessage) -> ChatMessage:
    """A text-only message with as many prompt tokens as `question` with its picture."""
    wanted = engine.count_tokens([question])
    words = 0
    while (
        engine.count_tokens([ChatMessage("user", " ".join(["word"] * (words + 1)) + " " + question.content)]) <= wanted
    ):
        words += 1
    return ChatMessage("user", " ".join(["word"] * words) + " " + question.content)


def _first_token_s(engine: Any, messages: list[ChatMessage]) -> float:
    """Prompt read and one token sampled. (The generated pair writes noise bytes, which may take a few
    tokens to become printable text, so waiting for the first printed text would measure the noise.)"""
    started = time.perf_counter()
    for _piece in engine.stream(messages, ONE_TOKEN):
        pass
    return time.perf_counter() - started
