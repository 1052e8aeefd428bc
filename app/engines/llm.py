"""The chat engine Protocol: what the turn loop needs from any model, local or remote.

An engine is loaded once, then answers one stream at a time. `stream()` yields text pieces
as they are decoded and checks `cancel` between tokens; when the iterator is exhausted,
`last_stats` describes the generation (how many prompt tokens were actually evaluated is
how KV-cache reuse shows).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from app.settings import GenerationSettings


@dataclass(frozen=True)
class ChatMessage:
    """What an engine sees: one turn of the prompt, already stripped of Hearth's bookkeeping."""

    role: Literal["system", "user", "assistant"]
    content: str
    # The sha256 addresses of the pictures shown before the text (ImageStore): an engine that can
    # see reads the pictures themselves; every engine reads what `content` says of them.
    images: tuple[str, ...] = ()


@dataclass(frozen=True)
class EngineInfo:
    model_id: str
    model_name: str
    backend: str  # "CPU", "CUDA", "Metal", "Vulkan", "remote"
    n_ctx: int
    gpu_layers: int = 0
    vision: bool = False  # the model sees pictures (a projector is loaded), not only the text read from them
    chat_format: str = ""  # "gguf" when the GGUF's own template is used, else the fallback's name
    threads: int = 0  # CPU threads the model decodes with (0: not known, as for a remote server)
    # Set when GPU layers were asked for but the model runs on the CPU: the cause, in a few words
    # ("this llama.cpp build has no GPU backend"), and what the user can change.
    fallback_reason: str = ""
    fallback_hint: str = ""
    # The engine can write JSON that follows a schema, token by token (`ChatEngine.complete_json`):
    # how a small model is led through a tool call it would not write by itself.
    structured: bool = False


@dataclass
class GenerationStats:
    prompt_tokens: int = 0  # tokens in the whole prompt
    prompt_evaluated: int = 0  # tokens the engine had to evaluate (the rest came from the KV cache)
    completion_tokens: int = 0
    ttft_s: float = 0.0  # from the call to the first yielded text
    decode_s: float = 0.0  # from the first token to the last
    finish_reason: str = ""  # "stop", "length", "cancelled"

    @property
    def tokens_per_s(self) -> float:
        if self.completion_tokens <= 1 or self.decode_s <= 0:
            return 0.0
        return (self.completion_tokens - 1) / self.decode_s


class ChatEngine(Protocol):
    @property
    def info(self) -> EngineInfo: ...

    @property
    def last_stats(self) -> GenerationStats: ...

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """Tokens of the prompt these messages make, generation prompt included."""
        ...

    def stream(
        self,
        messages: Sequence[ChatMessage],
        settings: GenerationSettings,
        cancel: threading.Event | None = None,
    ) -> Iterator[str]: ...

    def complete_json(
        self, messages: Sequence[ChatMessage], schema: dict[str, Any], settings: GenerationSettings
    ) -> Any:
        """The reply to `messages` as the JSON value it writes, held to `schema` while it is written.

        Raises ModelError where `info.structured` is False."""
        ...

    def close(self) -> None: ...
