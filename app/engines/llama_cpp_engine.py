"""The local engine: a GGUF model run in-process by llama-cpp-python.

Three things matter for speed and are deliberate here:
- `n_threads` is the number of physical cores (llama-cpp-python's default is half of them);
- every layer goes to the GPU when the build has one (Metal/CUDA/Vulkan), and `info.backend` says so;
- the KV cache is reused across turns: each turn's prompt starts with the previous turn's
  prompt and reply, so llama.cpp only evaluates the new tail (`GenerationStats.prompt_evaluated`).

`llama_cpp` is imported lazily so that the window can be on screen before it loads.
"""

from __future__ import annotations

import codecs
import dataclasses
import json
import logging
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.catalog.gguf_check import GGUFInfo, inspect_gguf, is_known_architecture
from app.engines.chat_template import ChatTemplate, choose_template
from app.engines.gpu import Placement, after_gpu_failure, on_cpu, shipped_gpu_backend
from app.engines.grammar import GrammarGuide
from app.engines.llm import ChatMessage, EngineInfo, GenerationStats
from app.errors import ModelError, PromptError
from app.settings import GenerationSettings

if TYPE_CHECKING:
    from llama_cpp import Llama

log = logging.getLogger("hearth.engine")


_END = b"\x00hearth-end-of-generation"  # a sentinel no real token piece can be identical to


def gpu_backend() -> str:
    """Which backend this llama.cpp build runs on: "CPU", "Metal", "CUDA" or "Vulkan"."""
    import llama_cpp

    if not llama_cpp.llama_supports_gpu_offload():
        return "CPU"
    if sys.platform == "darwin":
        return "Metal"
    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    names = " ".join(p.name.lower() for p in lib_dir.glob("*")) if lib_dir.is_dir() else ""
    for marker, name in (("cuda", "CUDA"), ("vulkan", "Vulkan"), ("hip", "ROCm"), ("sycl", "SYCL")):
        if marker in names:
            return name
    return "GPU"


class LlamaCppEngine:
    """One GGUF model in memory, answering one stream at a time."""

    def __init__(
        self,
        model_path: Path,
        *,
        model_id: str,
        n_ctx: int = 4096,
        n_threads: int = 1,
        n_gpu_layers: int = -1,
        chat_format: str = "auto",
        model_name: str | None = None,
    ) -> None:
        gguf = inspect_gguf(model_path)  # clear errors for missing / not-GGUF / truncated files
        self._llm, placement = load_placed(model_path, gguf, n_ctx, n_threads, n_gpu_layers, gpu_backend())
        backend, offloaded = placement.backend, placement.gpu_layers
        self._template = self._pick_template(chat_format)
        self._stop_strings = self._template.stop_strings
        self._info = EngineInfo(
            model_id=model_id,
            model_name=model_name or gguf.name or model_path.stem,
            backend=backend,
            n_ctx=self._llm.n_ctx(),
            gpu_layers=offloaded,
            chat_format=self._template.name,
            threads=self._llm.n_threads,
            structured=True,
            fallback_reason=placement.fallback_reason,
            fallback_hint=placement.fallback_hint,
        )
        self._stats = GenerationStats()
        self._pieces: dict[int, bytes] = {}
        self._last_tokenized: tuple[str, list[int]] = ("", [])
        self._lock = threading.Lock()  # one stream at a time: the KV cache is a single shared state
        log.info(
            "loaded %s (%s, %s, ctx %d, template %s)",
            model_id,
            gguf.architecture,
            backend,
            self._info.n_ctx,
            self._template.name,
        )

    def _pick_template(self, chat_format: str) -> ChatTemplate:
        meta = self._llm.metadata
        bos = self._token_text(self._llm.token_bos())
        eos = self._token_text(self._llm.token_eos())
        return choose_template(meta.get("tokenizer.chat_template"), chat_format, bos, eos)

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self._llm.detokenize([token], special=True).decode("utf-8", errors="replace")

    # -- the Protocol -------------------------------------------------------------------

    @property
    def info(self) -> EngineInfo:
        return self._info

    @property
    def last_stats(self) -> GenerationStats:
        return self._stats

    @property
    def template(self) -> ChatTemplate:
        return self._template

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return len(self.tokenize_prompt(messages))

    def tokenize_prompt(self, messages: Sequence[ChatMessage]) -> list[int]:
        text = self._template.render(messages)
        # The context planner counts the very prompt that `stream` then sends: tokenize it once.
        if self._last_tokenized[0] != text:
            self._last_tokenized = (
                text,
                self._llm.tokenize(text.encode("utf-8"), add_bos=self._needs_bos(text), special=True),
            )
        return list(self._last_tokenized[1])

    def _needs_bos(self, text: str) -> bool:
        """Whether tokenizing `text` must add the BOS token: templates that write the BOS text
        themselves must not get a second one."""
        bos = self._template.bos_token
        return self._adds_bos() and not (bos and text.startswith(bos))

    def _adds_bos(self) -> bool:
        flag = self._llm.metadata.get("tokenizer.ggml.add_bos_token")
        return flag != "false" if flag is not None else self._llm.token_bos() >= 0

    def stream(
        self,
        messages: Sequence[ChatMessage],
        settings: GenerationSettings,
        cancel: threading.Event | None = None,
    ) -> Iterator[str]:
        with self._lock:
            yield from self._stream_locked(messages, settings, cancel or threading.Event())

    def close(self) -> None:
        self._llm.close()

    def complete_json(
        self, messages: Sequence[ChatMessage], schema: dict[str, Any], settings: GenerationSettings
    ) -> Any:
        """Write the reply greedily under a grammar made from `schema` (llama.cpp's JSON-schema
        grammars, checked token by token by `GrammarGuide`); the parsed value is returned."""
        from llama_cpp import LlamaGrammar, LogitsProcessorList

        grammar = LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
        greedy = dataclasses.replace(settings, temperature=0.0)
        with self._lock:
            guide = GrammarGuide(self._llm._model.vocab, grammar)
            try:
                started = time.perf_counter()
                prompt = self.tokenize_prompt(messages)
                self._check_fits(len(prompt))
                stats = self._stats = GenerationStats(
                    prompt_tokens=len(prompt), prompt_evaluated=self._tokens_to_evaluate(prompt)
                )
                pieces = self._generate(prompt, stats, greedy, threading.Event(), started, LogitsProcessorList([guide]))
                text = "".join(pieces)
            finally:
                guide.close()
        try:
            return json.loads(text)
        except ValueError as exc:  # the grammar ended early: the token budget ran out mid-value
            raise ModelError(
                f"The model's structured answer was cut off ({len(text)} characters).",
                "Raise the reply length in Settings › Model, or try again.",
            ) from exc

    def prefill(self, messages: Sequence[ChatMessage]) -> int:
        """Read the part of the next prompt that is already known — instructions and history, up to
        where the user's next words go — into the KV cache, so the next reply starts sooner.

        Skipped (returns 0) while a reply is being written. Returns the tokens evaluated.
        """
        if not self._lock.acquire(blocking=False):
            return 0
        try:
            first = self._template.render([*messages, ChatMessage("user", "A")])
            second = self._template.render([*messages, ChatMessage("user", "B")])
            known = first[
                : next((i for i, (a, b) in enumerate(zip(first, second, strict=False)) if a != b), len(first))
            ]
            # The last token may merge with the user's first word once it is known: leave it out.
            tokens = self._llm.tokenize(known.encode("utf-8"), add_bos=self._needs_bos(known), special=True)[:-1]
            common = self._cached_prefix(tokens)
            if common >= len(tokens) or len(tokens) >= self._info.n_ctx:
                return 0
            self._llm.n_tokens = common
            self._llm.eval(tokens[common:])
            return len(tokens) - common
        finally:
            self._lock.release()

    # -- generation ---------------------------------------------------------------------

    def _stream_locked(
        self, messages: Sequence[ChatMessage], settings: GenerationSettings, cancel: threading.Event
    ) -> Iterator[str]:
        started = time.perf_counter()
        prompt = self.tokenize_prompt(messages)
        self._check_fits(len(prompt))
        stats = self._stats = GenerationStats(
            prompt_tokens=len(prompt), prompt_evaluated=self._tokens_to_evaluate(prompt)
        )
        yield from self._generate(prompt, stats, settings, cancel, started)

    def _check_fits(self, prompt_tokens: int) -> None:
        n_ctx = self._info.n_ctx
        if prompt_tokens >= n_ctx:
            raise PromptError(
                f"The prompt is {prompt_tokens} tokens but the context holds {n_ctx}.",
                "Shorten the message or raise the context size in Settings › Model.",
            )

    def _generate(
        self,
        prompt: list[int],
        stats: GenerationStats,
        settings: GenerationSettings,
        cancel: threading.Event,
        started: float,
        logits_processor: Any = None,
    ) -> Iterator[str]:
        """Stream the reply to `prompt`; llama.cpp evaluates only what the KV cache does not hold yet.

        `logits_processor` (a `LogitsProcessorList`), when given, shapes each token's choice."""
        max_tokens = min(settings.max_tokens, self._info.n_ctx - len(prompt))
        self._llm.set_seed(settings.seed if settings.seed >= 0 else random.randrange(2**31))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = ""  # text held back while it could still be the start of a stop string
        first_at = 0.0
        stats.finish_reason = "length"
        tokens = self._llm.generate(
            prompt, temp=settings.temperature, top_p=settings.top_p, top_k=40, min_p=0.05, repeat_penalty=1.0,
            logits_processor=logits_processor,
        )  # fmt: skip
        try:
            for token in tokens:
                if cancel.is_set():
                    stats.finish_reason = "cancelled"
                    break
                piece = self._pieces.get(token) or self._learn_piece(token)
                if piece is _END:
                    stats.finish_reason = "stop"
                    break
                stats.completion_tokens += 1
                if not first_at:
                    first_at = time.perf_counter()
                    stats.ttft_s = first_at - started
                pending += decoder.decode(piece)
                text, pending, stopped = _split_at_stop(pending, self._stop_strings)
                if text:
                    yield text
                if stopped:
                    stats.finish_reason = "stop"
                    break
                if stats.completion_tokens >= max_tokens:
                    break
        finally:
            tokens.close()
            self._free_sampler()
            stats.decode_s = time.perf_counter() - first_at if first_at else 0.0
        tail = pending + decoder.decode(b"", final=True)
        if tail and stats.finish_reason != "stop":
            yield tail

    def _free_sampler(self) -> None:
        """Free this generation's native sampler now.

        `Llama.generate` makes a new sampler chain per call and drops the old one into a
        reference cycle, so its native memory waits for the garbage collector: measured, that
        is ~25 MB per 100 replies of growth. Closing it here keeps memory flat across turns.
        """
        sampler = getattr(self._llm, "_sampler", None)
        if sampler is not None:
            sampler.close()
            self._llm._sampler = None

    def _tokens_to_evaluate(self, prompt: list[int]) -> int:
        """How many prompt tokens llama.cpp will evaluate: all but the prefix still in the KV cache.

        Mirrors `Llama.generate`'s own prefix match, which replays one token when the whole
        prompt is cached (it needs fresh logits to sample from).
        """
        common = self._cached_prefix(prompt)
        if common == len(prompt):
            common -= 1
        return len(prompt) - max(common, 0)

    def _cached_prefix(self, tokens: Sequence[int]) -> int:
        """How many of `tokens`, from the start, the KV cache already holds."""
        common = 0
        for a, b in zip(self._llm.input_ids[: self._llm.n_tokens], tokens, strict=False):
            if a != b:
                break
            common += 1
        return common

    def _learn_piece(self, token: int) -> bytes:
        """A token's bytes (or `_END` for end-of-generation tokens), remembered: the loop runs per token."""
        import llama_cpp

        if llama_cpp.llama_vocab_is_eog(self._llm._model.vocab, token):
            piece = _END
        else:
            piece = self._llm.detokenize([token])
        self._pieces[token] = piece
        return piece


def _split_at_stop(text: str, stops: Sequence[str]) -> tuple[str, str, bool]:
    """Split decoded text into (safe to show, held back, hit a stop string)."""
    for stop in stops:
        at = text.find(stop)
        if at >= 0:
            return text[:at], "", True
    hold = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:n]):
                hold = max(hold, n)
                break
    return (text[:-hold], text[-hold:], False) if hold else (text, "", False)


def _offloaded_layers(gguf: GGUFInfo, requested: int) -> int:
    """Layers on the GPU: all of them (plus the output layer) for -1, else what was asked, capped."""
    blocks = gguf.metadata.get(f"{gguf.architecture}.block_count")
    total = int(blocks) + 1 if isinstance(blocks, int) and not isinstance(blocks, bool) else 0
    if requested < 0:
        return total
    return min(requested, total) if total else requested


def kv_cache_bytes(gguf: GGUFInfo, n_ctx: int) -> int:
    """Bytes llama.cpp's f16 KV cache needs for `n_ctx` tokens (0 when the header cannot say)."""
    meta, arch = gguf.metadata, gguf.architecture

    def number(key: str) -> int:
        value = meta.get(f"{arch}.{key}")
        return int(value) if isinstance(value, int) and not isinstance(value, bool) else 0

    layers, embd, heads = number("block_count"), number("embedding_length"), number("attention.head_count")
    kv_heads = number("attention.head_count_kv") or heads
    if not (layers and embd and heads):
        return 0
    return n_ctx * layers * 2 * (embd // heads) * kv_heads * 2


def _check_memory(path: Path, gguf: GGUFInfo, n_ctx: int) -> None:
    """Refuse early, with a useful message, a load that cannot fit in memory.

    llama.cpp would otherwise spend many seconds trying to allocate before failing.
    """
    import psutil

    need = gguf.file_size + kv_cache_bytes(gguf, n_ctx)
    have = psutil.virtual_memory().available + psutil.swap_memory().free
    if need > have:
        raise ModelError(
            f"Not enough memory to load {path.name} with a {n_ctx}-token context: it needs about "
            f"{need / 2**30:.1f} GiB and {have / 2**30:.1f} GiB is free.",
            "Lower the context size in Settings › Model, or close other programs.",
        )


Loader = Callable[[Path, str, int, int, int], "Llama"]


def load_placed(
    path: Path, gguf: GGUFInfo, n_ctx: int, n_threads: int, n_gpu_layers: int, build: str, load: Loader | None = None
) -> tuple[Llama, Placement]:
    """Load with the GPU layers asked for; when the GPU cannot take them, load on the CPU and say why.

    `build` is `gpu_backend()`; `load` is `_load_llama` (a test can give one whose GPU load fails).
    """
    load = load or _load_llama
    if build == "CPU" or n_gpu_layers == 0:
        _check_memory(path, gguf, n_ctx)
        placement = on_cpu(n_gpu_layers, shipped_gpu_backend()) if build == "CPU" else Placement("CPU")
        return load(path, gguf.architecture, n_ctx, n_threads, 0), placement
    layers = _offloaded_layers(gguf, n_gpu_layers)
    try:
        # A GPU build with no layer offloaded (a header that does not say how many) runs on the CPU.
        return load(path, gguf.architecture, n_ctx, n_threads, n_gpu_layers), Placement(
            build if layers else "CPU", layers
        )
    except ModelError as exc:
        gpu_error = exc
    # The GPU could not take the model (out of its memory, a driver fault): the CPU may still.
    log.warning("loading %d layers onto the %s GPU failed (%s); retrying on the CPU", layers, build, gpu_error)
    _check_memory(path, gguf, n_ctx)
    llm = load(path, gguf.architecture, n_ctx, n_threads, 0)
    return llm, after_gpu_failure(build, layers, gpu_error)


def _load_llama(path: Path, architecture: str, n_ctx: int, n_threads: int, n_gpu_layers: int) -> Llama:
    from llama_cpp import Llama

    kwargs: dict[str, Any] = dict(
        model_path=str(path),
        n_ctx=n_ctx,
        n_threads=n_threads,
        n_threads_batch=n_threads,
        n_gpu_layers=n_gpu_layers,
        # Flash attention never materialises the attention matrix: a third of the scratch
        # memory on long prompts, at the same speed on CPU.
        flash_attn=True,
        verbose=False,
    )
    try:
        return Llama(**kwargs)
    except (ValueError, RuntimeError, MemoryError) as exc:
        raise _explain_load_failure(path, architecture, n_ctx, exc) from exc


def _explain_load_failure(path: Path, architecture: str, n_ctx: int, exc: BaseException) -> ModelError:
    text = str(exc)
    if not is_known_architecture(architecture):
        return ModelError(
            f"{path.name} uses the '{architecture}' architecture, which this version of llama.cpp cannot run.",
            "Choose another model in Settings › Model, or update Hearth.",
        )
    if isinstance(exc, MemoryError) or "context" in text.lower():
        return ModelError(
            f"Not enough memory to load {path.name} with a {n_ctx}-token context.",
            "Lower the context size (or GPU layers) in Settings › Model, or close other programs.",
        )
    return ModelError(
        f"llama.cpp could not load {path.name} ({text}).",
        "The file may be damaged: verify it with `hearth models verify`, or choose another model.",
    )
