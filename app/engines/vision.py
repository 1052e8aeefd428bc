"""The vision path: a text model plus its projector (mmproj), answering a turn that holds pictures.

A projector turns a picture into a run of embeddings in the text model's space; llama.cpp's
multimodal handler (`MTMDChatHandler`) feeds them in where the picture sits in the prompt, so
`usage.prompt_tokens` grows by the projector's image-token count for each picture.

A malformed projector does not raise inside llama.cpp: missing tensors kill the whole process with
SIGSEGV in native code. `check_projector` reads the header (never the weights) and refuses such a
file with a `ModelError` first; `VisionEngine` always runs it before loading anything.

The handler clears the KV cache on every call, so each turn re-encodes every picture in it.
`llama_cpp` is imported lazily, as in the text engine.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.catalog.gguf_check import inspect_gguf
from app.core.images import NormalisedImage
from app.engines.llama_cpp_engine import _explain_load_failure
from app.errors import ModelError
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
        raise ModelError(f"{mmproj.name} is a '{info.architecture}' model, not a vision projector.", _NOT_A_PROJECTOR_HINT)
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


class VisionEngine:
    """A text model and its projector in memory, answering one image turn at a time.

    Usage: `VisionEngine(model, mmproj).reply("What is this?", [picture], settings)`, then `close()`.
    """

    def __init__(self, model_path: Path, mmproj_path: Path, *, n_ctx: int = 4096, n_threads: int = 1, n_gpu_layers: int = -1) -> None:
        model = inspect_gguf(model_path)
        if not model.chat_template:
            raise ModelError(
                f"{model_path.name} has no chat template, which picture turns need.",
                "Choose a vision model whose GGUF includes its chat template.",
            )
        check_projector(mmproj_path, model_embedding_length(model_path))
        self._llm = _load(model_path, mmproj_path, model.architecture, n_ctx, n_threads, n_gpu_layers)

    def reply(self, text: str, images: Sequence[NormalisedImage], settings: GenerationSettings) -> VisionReply:
        """Answer one user turn made of `images` (in order) followed by `text`."""
        content: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": image_url(i)}} for i in images]
        content.append({"type": "text", "text": text})
        messages: list[Any] = [{"role": "user", "content": content}]
        seed = settings.seed if settings.seed >= 0 else random.randrange(2**31)
        try:
            result: Any = self._llm.create_chat_completion(
                messages=messages,
                temperature=settings.temperature, top_p=settings.top_p, max_tokens=settings.max_tokens, seed=seed,
            )
        except ValueError as exc:  # the handler reports a projector it cannot use, or a prompt too long
            raise ModelError(f"The vision model could not read this turn ({exc}).",
                             "Try a smaller picture or a shorter message, or check the projector file.") from exc
        choice, usage = result["choices"][0], result["usage"]
        return VisionReply(
            text=choice["message"]["content"] or "",
            usage=VisionUsage(prompt_tokens=usage["prompt_tokens"], completion_tokens=usage["completion_tokens"]),
            finish_reason=choice.get("finish_reason") or "stop",
        )

    def close(self) -> None:
        self._llm.close()  # also frees the projector: the handler registers itself on the Llama's exit stack


def _load(model_path: Path, mmproj_path: Path, architecture: str, n_ctx: int, n_threads: int, n_gpu_layers: int) -> Llama:
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import MTMDChatHandler

    _quiet_mtmd_logs()
    handler = MTMDChatHandler(clip_model_path=str(mmproj_path), verbose=False)
    try:
        return Llama(
            model_path=str(model_path), chat_handler=handler, n_ctx=n_ctx, n_threads=n_threads,
            n_threads_batch=n_threads, n_gpu_layers=n_gpu_layers, flash_attn=True, verbose=False,
        )
    except (ValueError, RuntimeError, MemoryError) as exc:
        raise _explain_load_failure(model_path, architecture, n_ctx, exc) from exc


def _quiet_mtmd_logs() -> None:
    """Send mtmd's native logging through llama-cpp-python's logger, which honours `verbose`.

    Otherwise mtmd prints every prompt it tokenizes to stderr, the user's words included.
    """
    import ctypes

    from llama_cpp import _logger, mtmd_cpp

    mtmd_cpp.mtmd_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))
    mtmd_cpp.mtmd_helper_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))
