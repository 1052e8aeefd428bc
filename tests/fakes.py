"""Hand-written fakes that implement Hearth's real Protocols, for deterministic tests."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

from app.core.conversation import ChatMessage
from app.core.images import NormalisedImage
from app.engines.llm import EngineInfo, GenerationStats
from app.engines.ocr import OcrLine, OcrResult
from app.settings import GenerationSettings


class FakeEngine:
    """A ChatEngine that streams queued replies word by word.

    Tokens are counted as whitespace-separated words plus 4 per message, so context tests
    can reason about exact numbers. `gate` (an Event), when given, holds each token until
    set — tests use it to stop a reply part-way deterministically.
    """

    def __init__(
        self,
        replies: Sequence[str] = (),
        n_ctx: int = 4096,
        delay_s: float = 0.0,
        gate: threading.Event | None = None,
        vision: bool = False,
    ) -> None:
        self.replies: deque[str] = deque(replies)
        self.default_reply = "Fake reply."
        self.delay_s = delay_s
        self.gate = gate
        self.prompts: list[list[ChatMessage]] = []
        self.closed = False
        self._info = EngineInfo("fake", "Fake model", "CPU", n_ctx, chat_format="fake", vision=vision, structured=True)
        self.json_replies: deque[Any] = deque()
        self._stats = GenerationStats()

    def enqueue(self, *replies: str) -> None:
        self.replies.extend(replies)

    @property
    def info(self) -> EngineInfo:
        return self._info

    @property
    def last_stats(self) -> GenerationStats:
        return self._stats

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return sum(len(m.content.split()) + 4 for m in messages) + 2

    def stream(
        self, messages: Sequence[ChatMessage], settings: GenerationSettings, cancel: threading.Event | None = None
    ) -> Iterator[str]:
        self.prompts.append(list(messages))
        reply = self.replies.popleft() if self.replies else self.default_reply
        stats = self._stats = GenerationStats(prompt_tokens=self.count_tokens(messages), finish_reason="stop")
        stats.prompt_evaluated = stats.prompt_tokens
        started = time.perf_counter()
        for n, word in enumerate(reply.split(" ")):
            if self.gate is not None:
                self.gate.wait(timeout=10)
            if cancel is not None and cancel.is_set():
                stats.finish_reason = "cancelled"
                return
            if self.delay_s:
                # Simulated decode time per word; a Stop during it is honoured at once.
                (cancel or threading.Event()).wait(self.delay_s)
            if stats.completion_tokens >= settings.max_tokens:
                stats.finish_reason = "length"
                return
            stats.completion_tokens += 1
            if n == 0:
                stats.ttft_s = time.perf_counter() - started
            yield word if n == 0 else " " + word

    def complete_json(
        self, messages: Sequence[ChatMessage], schema: dict[str, Any], settings: GenerationSettings
    ) -> Any:
        """The next queued structured answer (`enqueue_json`): scripted tool decisions and arguments."""
        self.prompts.append(list(messages))
        if not self.json_replies:
            raise AssertionError("FakeEngine.complete_json was called with no structured answer queued")
        return self.json_replies.popleft()

    def enqueue_json(self, *values: Any) -> None:
        self.json_replies.extend(values)

    def close(self) -> None:
        self.closed = True


class FakeReader:
    """A TextReader that "reads" the same text from every picture and counts how often it is asked.

    With `fail` set, every read raises that error instead, as a broken OCR model would.
    """

    def __init__(self, text: str = "", fail: Exception | None = None) -> None:
        self.text = text
        self.fail = fail
        self.seen: list[NormalisedImage] = []

    def read(self, image: NormalisedImage) -> OcrResult:
        self.seen.append(image)
        if self.fail is not None:
            raise self.fail
        box = ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0))
        return OcrResult([OcrLine(line, 0.99, box) for line in self.text.splitlines()])
