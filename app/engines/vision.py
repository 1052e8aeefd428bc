"""The vision path: a text model plus its projector (mmproj), answering a turn that holds pictures.

A projector turns a picture into a run of embeddings in the text model's space; llama.cpp's
multimodal library (mtmd) feeds them in where the picture sits in the prompt, so the prompt's
token count grows by the projector's image-token count for each picture.

A malformed projector does not raise inside llama.cpp: missing tensors kill the whole process with
SIGSEGV in native code. `check_projector` reads the header (never the weights) and refuses such a
file with a `ModelError` first; `VisionEngine` always runs it before loading anything.

llama-cpp-python's own handler clears the KV cache on every call, re-encoding every picture on
every turn; `VisionEngine` drives mtmd itself and keeps what the cache holds. `llama_cpp` is
imported lazily, as in the text engine.
"""

from __future__ import annotations

import base64
import ctypes
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.catalog.gguf_check import inspect_gguf
from app.core.images import NormalisedImage
from app.engines.llama_cpp_engine import LlamaCppEngine
from app.engines.llm import ChatMessage, GenerationStats
from app.errors import ImageError, ModelError
from app.settings import GenerationSettings

if TYPE_CHECKING:
    from llama_cpp import Llama

# Vision projector types of the llama.cpp bundled with llama-cpp-python 0.3.36 (tools/mtmd/clip-impl.h).
# Only "mlp" (LLaVA, moondream2, ...) gets the full tensor check; the others get the header checks.
VISION_PROJECTOR_TYPES: tuple[str, ...] = (
    "mlp", "mlp_norm", "ldp", "ldpv2", "resampler", "adapter", "qwen2vl_merger", "qwen2.5vl_merger",
    "qwen3vl_merger", "gemma3", "gemma3nv", "gemma4v", "phi4", "idefics3", "pixtral", "internvl", "llama4",
    "qwen2.5o", "lfm2", "kimivl", "paddleocr", "lightonocr", "cogvlm", "janus_pro", "dots_ocr", "glm4v",
    "youtuvl", "kimik25", "nemotron_v2_vl", "hunyuanvl", "step3vl", "deepseekocr", "minicpmv4_6",
)  # fmt: skip

_NOT_A_PROJECTOR_HINT = "Choose the projector file (usually named mmproj-….gguf) published with this model."
_MISMATCH_HINT = "Download the projector published for this exact model, and keep the two files together."


@dataclass(frozen=True)
class VisionUsage:
    prompt_tokens: int  # the whole prompt, each picture counted as its image tokens
    completion_tokens: int


@dataclass(frozen=True)
class VisionReply:
    text: str
    usage: VisionUsage
    finish_reason: str  # "stop" or "length"


def check_projector(mmproj: Path, model_n_embd: int) -> None:
    """Raise ModelError unless `mmproj` is a whole vision projector that fits a model of `model_n_embd`.

    Reads only the header (through a memory map), so it costs milliseconds even for large files.
    """
    info = inspect_gguf(mmproj)  # missing, not a GGUF, truncated: already worded for people
    if info.architecture != "clip":
        raise ModelError(
            f"{mmproj.name} is a '{info.architecture}' model, not a vision projector.", _NOT_A_PROJECTOR_HINT
        )
    if info.metadata.get("clip.has_vision_encoder") is not True:
        raise ModelError(f"{mmproj.name} has no vision encoder, so it cannot read pictures.", _NOT_A_PROJECTOR_HINT)
    kind = info.metadata.get("clip.projector_type")
    if kind not in VISION_PROJECTOR_TYPES:
        raise ModelError(
            f"{mmproj.name} uses the projector type '{kind}', which this version of llama.cpp cannot run.",
            "Choose a model whose projector llama.cpp supports, or update Hearth.",
        )
    if kind == "mlp":
        _check_mlp_tensors(mmproj, info.metadata, model_n_embd)


def _check_mlp_tensors(mmproj: Path, metadata: dict[str, object], model_n_embd: int) -> None:
    shapes = _tensor_shapes(mmproj)
    blocks = metadata.get("clip.vision.block_count")
    if not isinstance(blocks, int) or isinstance(blocks, bool) or blocks <= 0:
        raise ModelError(f"The projector {mmproj.name} does not say how many vision blocks it has.", _MISMATCH_HINT)
    missing = [name for name in _mlp_required(blocks) if name not in shapes]
    if missing:
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        raise ModelError(
            f"The projector {mmproj.name} is incomplete: it lacks {shown}.",
            "The file was converted wrongly or damaged; download the projector again.",
        )
    rows = shapes["mm.2.weight"][1] if len(shapes["mm.2.weight"]) > 1 else 0
    if rows != model_n_embd or shapes["mm.2.bias"][0] != model_n_embd:
        raise ModelError(
            f"This projector does not match its model: {mmproj.name} makes {rows}-wide embeddings, "
            f"the model reads {model_n_embd}-wide ones.",
            _MISMATCH_HINT,
        )


def _mlp_required(blocks: int) -> list[str]:
    """Tensors llama.cpp's mlp projector reads without checking they exist."""
    names = ["v.patch_embd.weight", "v.position_embd.weight"]
    for i in range(blocks):
        parts = ("attn_q", "attn_k", "attn_v", "attn_out", "ln1", "ln2", "ffn_up", "ffn_down")
        names += [f"v.blk.{i}.{part}.weight" for part in parts]
    return names + ["mm.0.weight", "mm.0.bias", "mm.2.weight", "mm.2.bias"]


def _tensor_shapes(mmproj: Path) -> dict[str, list[int]]:
    """Tensor name → dimensions in ggml order (the first is the input width, the second the rows)."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(mmproj))
    except (ValueError, OSError) as exc:
        raise ModelError(f"The projector {mmproj.name} cannot be read ({exc}).", _NOT_A_PROJECTOR_HINT) from exc
    return {tensor.name: [int(n) for n in tensor.shape] for tensor in reader.tensors}


def image_url(image: NormalisedImage) -> str:
    """A `data:` URL: the handler then never reads files or networks, and never tries ffprobe."""
    return f"data:{image.mime_type};base64,{base64.b64encode(image.data).decode('ascii')}"


def model_embedding_length(model_path: Path) -> int:
    """The text model's embedding width, from its header (ModelError when it does not say)."""
    info = inspect_gguf(model_path)
    width = info.metadata.get(f"{info.architecture}.embedding_length")
    if not isinstance(width, int) or isinstance(width, bool) or width <= 0:
        raise ModelError(f"{model_path.name} does not say its embedding length.", "Choose another model file.")
    return width


class VisionEngine(LlamaCppEngine):
    """A text model and its projector in memory: a chat engine that also sees the pictures in a prompt.

    Prompts without pictures take the text engine's path unchanged. A prompt with pictures is
    tokenized by mtmd (text pieces and one run of image tokens per picture) and evaluated piece
    by piece after the longest prefix the KV cache already holds: each cached image position is
    remembered in `input_ids` as a placeholder (a negative id no token has, one per picture and
    offset), so a follow-up question about the same picture re-encodes nothing, and a text turn
    after it reuses everything up to the picture. `pictures` turns an address
    (`ChatMessage.images`, a sha256) into the picture's PNG bytes.
    """

    def __init__(
        self,
        model_path: Path,
        mmproj_path: Path,
        *,
        pictures: Callable[[str], bytes] | None = None,
        model_id: str | None = None,
        n_ctx: int = 4096,
        n_threads: int = 1,
        n_gpu_layers: int = -1,
        chat_format: str = "auto",
        model_name: str | None = None,
    ) -> None:
        model = inspect_gguf(model_path)
        if not model.chat_template:
            raise ModelError(
                f"{model_path.name} has no chat template, which picture turns need.",
                "Choose a vision model whose GGUF includes its chat template.",
            )
        check_projector(mmproj_path, model_embedding_length(model_path))  # before anything native reads it
        super().__init__(
            model_path, model_id=model_id or model_path.stem, n_ctx=n_ctx, n_threads=n_threads,
            n_gpu_layers=n_gpu_layers, chat_format=chat_format, model_name=model_name,
        )  # fmt: skip
        try:
            self._mtmd = _open_projector(self._llm, mmproj_path)
        except ModelError:
            self._llm.close()
            raise
        self._info = replace(self._info, vision=True)
        self._pictures = pictures
        self._held: dict[str, bytes] = {}  # pictures given directly (`reply`), by address
        self._codes: dict[str, int] = {}  # address → the number in its placeholders
        self._blocks: dict[str, list[tuple[str, list[int]]]] = {}  # address → its pieces in a prompt (`_block`)
        self.images_encoded = 0  # pictures run through the projector so far (the expensive step)
        self._mtmd_lock = threading.Lock()  # the projector's context serves one call at a time

    # -- the Protocol -------------------------------------------------------------------

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        if not any(m.images for m in messages):
            return super().count_tokens(messages)
        return sum(len(ids) for _, ids in self._prompt_pieces(messages))

    def _stream_locked(
        self, messages: Sequence[ChatMessage], settings: GenerationSettings, cancel: threading.Event
    ) -> Iterator[str]:
        if not any(m.images for m in messages):
            yield from super()._stream_locked(messages, settings, cancel)
            return
        started = time.perf_counter()
        pieces = self._prompt_pieces(messages)
        total = sum(len(ids) for _, ids in pieces)
        self._check_fits(total)
        evaluated = self._evaluate(pieces)
        stats = self._stats = GenerationStats(prompt_tokens=total, prompt_evaluated=evaluated)
        prompt = [int(t) for t in self._llm.input_ids[: self._llm.n_tokens]]
        yield from self._generate(prompt, stats, settings, cancel, started)

    def prefill(self, messages: Sequence[ChatMessage]) -> int:
        if any(m.images for m in messages):
            return 0  # the picture path evaluates its prompt when the turn starts
        return super().prefill(messages)

    def reply(self, text: str, images: Sequence[NormalisedImage], settings: GenerationSettings) -> VisionReply:
        """Answer one user turn made of `images` (in order) followed by `text`, on its own."""
        for image in images:
            self._held[image.sha256] = image.data
        message = ChatMessage("user", text, tuple(image.sha256 for image in images))
        reply = "".join(self.stream([message], settings))
        stats = self.last_stats
        return VisionReply(reply, VisionUsage(stats.prompt_tokens, stats.completion_tokens), stats.finish_reason)

    # -- pictures -----------------------------------------------------------------------

    def _render_with_markers(self, messages: Sequence[ChatMessage]) -> str:
        """The prompt text with mtmd's marker where each picture goes (before its message's words)."""
        marked = []
        for m in messages:
            content = m.content.replace(_MARKER, _MARKER_LOOK_ALIKE)  # only Hearth places pictures
            if m.images:
                content = _MARKER * len(m.images) + content
            marked.append(ChatMessage(m.role, content))
        return self.template.render(marked, parts=self.template.reads_parts)

    def _picture_bytes(self, address: str) -> bytes:
        if address in self._held:
            return self._held[address]
        if self._pictures is None:
            raise ImageError(f"The picture {address[:12]}… is not available to the model.", "Attach the picture again.")
        return self._pictures(address)

    def _prompt_pieces(self, messages: Sequence[ChatMessage]) -> list[tuple[str, list[int]]]:
        """The prompt as mtmd would tokenize it — ("text", tokens), and (address, placeholders) for
        each picture — built from the text tokenizer and each picture's remembered block, so a
        picture already seen is not decoded or preprocessed again."""
        parts = self._render_with_markers(messages).split(_MARKER)
        addresses = [address for m in messages for address in m.images]
        pieces: list[tuple[str, list[int]]] = []
        for i, part in enumerate(parts):
            if part:
                add_bos = i == 0 and self._needs_bos(part)
                pieces.append(("text", self._llm.tokenize(part.encode("utf-8"), add_bos=add_bos, special=True)))
            if i < len(addresses):
                pieces += self._block(addresses[i])
        return pieces

    def _block(self, address: str) -> list[tuple[str, list[int]]]:
        """A picture's pieces: its image tokens, with any text mtmd wraps around them for this model."""
        if address not in self._blocks:
            pieces, chunks = self._tokenize(_MARKER, [address], add_bos=False)
            self._mtmd_api.mtmd_input_chunks_free(chunks)
            self._blocks[address] = pieces
        return self._blocks[address]

    def _placeholders(self, address: str, count: int) -> list[int]:
        code = self._codes.setdefault(address, len(self._codes) + 1)
        if code >= _MAX_CODES or count >= _MAX_IMAGE_TOKENS:
            raise ModelError(
                "Too many pictures for one model session.", "Reload the model (Settings › Model) to start afresh."
            )
        return [-(code * _MAX_IMAGE_TOKENS + i) - 1 for i in range(count)]

    def _tokenize(
        self, text: str, addresses: Sequence[str], add_bos: bool | None = None
    ) -> tuple[list[tuple[str, list[int]]], Any]:
        """mtmd's pieces of the prompt — ("text", tokens), and (address, placeholders) for each
        picture — and the native chunks behind them, which the caller frees."""
        with self._mtmd_lock:
            return self._tokenize_locked(text, addresses, add_bos)

    def _tokenize_locked(
        self, text: str, addresses: Sequence[str], add_bos: bool | None
    ) -> tuple[list[tuple[str, list[int]]], Any]:
        mtmd = self._mtmd_api
        chunks = mtmd.mtmd_input_chunks_init()
        if chunks is None:
            raise ModelError("The vision model could not prepare this turn.", "Try again, or reload the model.")
        bitmaps: list[Any] = []
        try:
            bitmaps += [self._bitmap(address) for address in addresses]
            encoded = text.encode("utf-8")
            source = mtmd.mtmd_input_text()
            source.text, source.text_len = encoded, len(encoded)
            source.add_special = self._needs_bos(text) if add_bos is None else add_bos
            source.parse_special = True
            array = (mtmd.mtmd_bitmap_p_ctypes * len(bitmaps))(*bitmaps)
            result = mtmd.mtmd_tokenize(self._mtmd, chunks, ctypes.byref(source), array, len(bitmaps))
            if result != 0:
                raise ModelError(f"The vision model could not read this turn's pictures (error {result}).",
                                 "Try another picture, or check the projector file.")  # fmt: skip
            pieces: list[tuple[str, list[int]]] = []
            pictures = iter(addresses)
            for i in range(mtmd.mtmd_input_chunks_size(chunks)):
                chunk = mtmd.mtmd_input_chunks_get(chunks, i)
                if mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                    count = ctypes.c_size_t()
                    tokens = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(count))
                    pieces.append(("text", [int(tokens[j]) for j in range(count.value)]))
                else:
                    address = next(pictures)
                    pieces.append((address, self._placeholders(address, mtmd.mtmd_input_chunk_get_n_pos(chunk))))
        except BaseException:
            mtmd.mtmd_input_chunks_free(chunks)
            raise
        finally:
            for bitmap in bitmaps:
                mtmd.mtmd_bitmap_free(bitmap)
        return pieces, chunks

    def _bitmap(self, address: str) -> Any:
        data = self._picture_bytes(address)
        bitmap = self._mtmd_api.mtmd_helper_bitmap_init_from_buf(
            self._mtmd, (ctypes.c_uint8 * len(data)).from_buffer_copy(data), len(data), False
        )
        if bitmap is None:
            raise ImageError(
                f"The picture {address[:12]}… could not be decoded for the model.", "Attach the picture again."
            )
        return bitmap

    def _evaluate(self, pieces: list[tuple[str, list[int]]]) -> int:
        """Bring the KV cache to the whole prompt, reusing the longest prefix it already holds.

        Returns how many prompt positions were evaluated (pictures count their image tokens).
        """
        llm = self._llm
        wanted = [t for _, ids in pieces for t in ids]
        common = min(
            self._cached_prefix(wanted), len(wanted) - 1
        )  # the last token is evaluated again: it gives the logits to sample from
        start = 0
        for kind, ids in pieces:  # a picture is reused whole or encoded again whole
            if start < common < start + len(ids) and kind != "text":
                common = start
            start += len(ids)
        llm._ctx.kv_cache_seq_rm(-1, common, -1)
        llm.n_tokens = common
        start = 0
        for kind, ids in pieces:
            end = start + len(ids)
            if end > common:
                if kind == "text":
                    llm.eval(ids[common - start :] if common > start else ids)
                else:
                    self._encode(kind, start)
                    llm.input_ids[start:end] = ids
                    llm.n_tokens = end
            start = end
        return len(wanted) - common

    def _encode(self, address: str, position: int) -> None:
        """Run the picture through the projector into the KV cache at `position`."""
        import llama_cpp

        mtmd = self._mtmd_api
        pieces, chunks = self._tokenize(_MARKER, [address], add_bos=False)
        try:
            chunk = mtmd.mtmd_input_chunks_get(chunks, next(i for i, (kind, _) in enumerate(pieces) if kind != "text"))
            new_n_past = llama_cpp.llama_pos(0)
            with self._mtmd_lock:
                result = mtmd.mtmd_helper_eval_chunk_single(
                    self._mtmd, self._llm._ctx.ctx, chunk, llama_cpp.llama_pos(position), llama_cpp.llama_seq_id(0),
                    self._llm.n_batch, False, ctypes.byref(new_n_past),
                )  # fmt: skip
        finally:
            mtmd.mtmd_input_chunks_free(chunks)
        if result != 0:
            raise ModelError(
                f"The vision model could not encode a picture (error {result}).",
                "Try another picture, or check the projector file.",
            )
        self.images_encoded += 1

    @property
    def _mtmd_api(self) -> Any:
        from llama_cpp import mtmd_cpp

        return mtmd_cpp

    def close(self) -> None:
        super().close()  # also frees the projector: it is registered on the Llama's exit stack


_MARKER = "<__media__>"  # mtmd's default marker (mtmd_default_marker)
_MARKER_LOOK_ALIKE = "‹__media__›"
_MAX_IMAGE_TOKENS = 1 << 16  # placeholders: -(code · 2¹⁶ + offset) - 1 stays within int32
_MAX_CODES = 1 << 14


def _open_projector(llm: Llama, mmproj_path: Path) -> Any:
    """mtmd's context for the projector, freed with the model."""
    import llama_cpp
    from llama_cpp import mtmd_cpp

    _quiet_mtmd_logs()
    params = mtmd_cpp.mtmd_context_params_default()
    params.use_gpu = True
    params.print_timings = False
    params.n_threads = llm.n_threads
    params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
    ctx = mtmd_cpp.mtmd_init_from_file(str(mmproj_path).encode(), llm.model, params)
    if ctx is None:
        raise ModelError(f"The projector {mmproj_path.name} could not be loaded.", _MISMATCH_HINT)
    llm._stack.callback(lambda: mtmd_cpp.mtmd_free(ctx))
    if not mtmd_cpp.mtmd_support_vision(ctx):
        raise ModelError(f"{mmproj_path.name} cannot read pictures.", _NOT_A_PROJECTOR_HINT)
    return ctx


def _quiet_mtmd_logs() -> None:
    """Send mtmd's native logging through llama-cpp-python's logger, which honours `verbose`.

    Otherwise mtmd prints every prompt it tokenizes to stderr, the user's words included.
    """
    import ctypes

    from llama_cpp import _logger, mtmd_cpp

    mtmd_cpp.mtmd_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))
    mtmd_cpp.mtmd_helper_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))
