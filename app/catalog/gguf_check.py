"""Check a GGUF file before handing it to llama.cpp, which tends to fail with a bare "failed to load".

Only the header is read (metadata and tensor table), through a memory map, so checking a 500 MB model
costs milliseconds: the tensor data is never touched. From the tensor table we know where the last
tensor must end, which catches a cut-short download or copy without hashing anything.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.errors import ModelError

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
_MAX_DIMS = 4  # GGML_MAX_DIMS: more dimensions means the tensor table is garbage

# From llama.cpp's src/llama-arch.cpp (LLM_ARCH_NAMES). The llama.cpp bundled with llama-cpp-python may
# predate the newest names; an architecture missing here is reported, not refused, so this list only
# makes load-failure messages more precise. "clip" is the architecture of vision projector (mmproj) files.
KNOWN_ARCHITECTURES: tuple[str, ...] = (
    "clip", "llama", "llama4", "deci", "falcon", "grok", "gpt2", "gptj", "gptneox", "mpt", "baichuan",
    "starcoder", "refact", "bert", "modern-bert", "nomic-bert", "nomic-bert-moe", "neo-bert", "jina-bert-v2",
    "jina-bert-v3", "eurobert", "bloom", "stablelm", "qwen", "qwen2", "qwen2moe", "qwen2vl", "qwen3", "qwen3moe",
    "qwen3next", "qwen3vl", "qwen3vlmoe", "qwen35", "qwen35moe", "phi2", "phi3", "phimoe", "plamo", "plamo2",
    "plamo3", "codeshell", "orion", "internlm2", "minicpm", "minicpm3", "gemma", "gemma2", "gemma3", "gemma3n",
    "gemma4", "gemma-embedding", "starcoder2", "mamba", "mamba2", "jamba", "falcon-h1", "xverse", "command-r",
    "cohere2", "dbrx", "olmo", "olmo2", "olmoe", "openelm", "arctic", "deepseek", "deepseek2", "deepseek2-ocr",
    "chatglm", "glm4", "glm4moe", "glm-dsa", "bitnet", "t5", "t5encoder", "jais", "jais2", "nemotron",
    "nemotron_h", "nemotron_h_moe", "exaone", "exaone4", "exaone-moe", "rwkv6", "rwkv6qwen2", "rwkv7", "arwkv7",
    "granite", "granitemoe", "granitehybrid", "chameleon", "wavtokenizer-dec", "plm", "bailingmoe",
    "bailingmoe2", "dots1", "arcee", "afmoe", "ernie4_5", "ernie4_5-moe", "hunyuan-moe", "hunyuan-dense",
    "smollm3", "gpt-oss", "lfm2", "lfm2moe", "dream", "smallthinker", "llada", "llada-moe", "seed_oss",
    "grovemoe", "apertus", "minimax-m2", "cogvlm", "rnd1", "pangu-embedded", "mistral3", "mistral4",
    "paddleocr", "mimo2", "step35", "llama-embed", "maincoder", "kimi-linear",
)  # fmt: skip

# GGUF metadata value types: fixed-size ones map to their struct format.
_SCALAR_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


def is_known_architecture(architecture: str) -> bool:
    return architecture in KNOWN_ARCHITECTURES


@dataclass(frozen=True)
class GGUFInfo:
    architecture: str
    name: str | None
    context_length: int | None
    chat_template: str | None
    file_size: int
    version: int = 3
    tensor_count: int = 0
    metadata: dict[str, object] = field(default_factory=dict, compare=False, repr=False)  # scalars and strings

    @property
    def known_architecture(self) -> bool:
        return is_known_architecture(self.architecture)


class _Truncated(Exception):
    """The header claims more bytes than the file has."""


class _Corrupt(Exception):
    """The header holds values no writer produces."""


class _Cursor:
    """Sequential little-endian reads from a buffer, refusing to read past its end."""

    def __init__(self, buffer: Any, size: int) -> None:
        self.buffer = buffer
        self.size = size
        self.pos = 0

    def need(self, count: int) -> None:
        if count < 0 or self.pos + count > self.size:
            raise _Truncated

    def unpack(self, fmt: str) -> Any:
        width = struct.calcsize(fmt)
        self.need(width)
        (value,) = struct.unpack_from(fmt, self.buffer, self.pos)
        self.pos += width
        return value

    def u32(self) -> int:
        return int(self.unpack("<I"))

    def u64(self) -> int:
        return int(self.unpack("<Q"))

    def string(self) -> str:
        length = self.u64()
        self.need(length)
        raw = bytes(self.buffer[self.pos : self.pos + length])
        self.pos += length
        return raw.decode("utf-8", errors="replace")

    def skip(self, count: int) -> None:
        self.need(count)
        self.pos += count


def inspect_gguf(path: Path) -> GGUFInfo:
    """Read a GGUF header and check the file is whole; raise ModelError saying what is wrong."""
    size = _file_size(path)
    with path.open("rb") as handle:
        head = handle.read(8)
        _check_magic(path, head, size)
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
            try:
                return _parse(path, _Cursor(buffer, len(buffer)))
            except _Truncated:
                raise _incomplete(path, "its header ends early") from None
            except _Corrupt as exc:
                raise ModelError(
                    f"The model file {path.name} is damaged: {exc}.",
                    "Fetch or copy the model again; if it keeps happening, the file itself is broken.",
                ) from None


def _file_size(path: Path) -> int:
    try:
        if path.is_dir():
            raise ModelError(f"{path} is a folder, not a model file.", "Choose the .gguf file inside it.")
        return path.stat().st_size
    except FileNotFoundError:
        raise ModelError(
            f"The model file {path} does not exist.", "Fetch the model again or choose another file."
        ) from None
    except OSError as exc:
        raise ModelError(
            f"The model file {path} cannot be read ({exc.strerror or exc}).", "Check the file's permissions."
        ) from None


def _check_magic(path: Path, head: bytes, size: int) -> None:
    if size == 0:
        raise ModelError(
            f"{path.name} is not a GGUF model: the file is empty (0 bytes).", "Fetch or copy the model again."
        )
    if head[:4] != GGUF_MAGIC:
        raise ModelError(
            f"{path.name} is not a GGUF model: {_describe(head)}.", "Choose a .gguf model file for llama.cpp."
        )
    if len(head) < 8:
        raise _incomplete(path, "its header ends early")
    version = struct.unpack_from("<I", head, 4)[0]
    if version in SUPPORTED_VERSIONS:
        return
    if version & 0xFFFF == 0:
        detail = "it is a big-endian GGUF, which this computer cannot load"
    elif version < min(SUPPORTED_VERSIONS):
        detail = f"it uses GGUF version {version}, which is too old"
    else:
        detail = f"it uses GGUF version {version}, newer than this Hearth understands"
    raise ModelError(
        f"{path.name} is not supported: {detail}.", "Download a current GGUF conversion of the model, or update Hearth."
    )


def _describe(head: bytes) -> str:
    """Name the usual wrong files, so the hint fits what the user actually has."""
    if head.startswith(b"\x89PNG"):
        return "it is a PNG image"
    if head.startswith((b"ggml", b"ggjt", b"ggmf", b"lmgg", b"tjgg", b"fmgg")):
        return "it is an old GGML-format model; convert it to GGUF"
    if head.startswith(b"version "):
        return "it is a Git LFS pointer, not the model itself"
    if head.lstrip().lower().startswith((b"<!doc", b"<html")):
        return "it is a web page (the download probably saved an error page)"
    if head.startswith(b"PK"):
        return "it is a zip archive"
    return "it does not start with the GGUF signature"


def _incomplete(path: Path, detail: str) -> ModelError:
    return ModelError(
        f"The model file {path.name} is truncated (incomplete): {detail}.",
        "The download or copy was cut short; fetch or copy the model again.",
    )


def _parse(path: Path, cursor: _Cursor) -> GGUFInfo:
    cursor.skip(4)
    version = cursor.u32()
    tensor_count, kv_count = cursor.u64(), cursor.u64()
    metadata = _read_metadata(cursor, kv_count)
    architecture = metadata.get("general.architecture")
    if not isinstance(architecture, str) or not architecture:
        raise ModelError(
            f"{path.name} has no 'general.architecture' in its metadata, so llama.cpp cannot load it.",
            "The file was not converted for llama.cpp; use a GGUF from a llama.cpp conversion.",
        )
    data_end = _tensor_data_end(cursor, tensor_count, _alignment(metadata))
    if data_end > cursor.size:
        raise _incomplete(path, f"its tensors need {data_end:,} bytes but the file has {cursor.size:,}")
    context = metadata.get(f"{architecture}.context_length")
    name, template = metadata.get("general.name"), metadata.get("tokenizer.chat_template")
    return GGUFInfo(
        architecture=architecture,
        name=name if isinstance(name, str) else None,
        context_length=int(context) if isinstance(context, int) and not isinstance(context, bool) else None,
        chat_template=template if isinstance(template, str) and template else None,
        file_size=cursor.size,
        version=version,
        tensor_count=tensor_count,
        metadata=metadata,
    )


def _read_metadata(cursor: _Cursor, count: int) -> dict[str, object]:
    """Scalars and strings by key; arrays (the vocabulary) are skipped, Hearth needs none of them."""
    cursor.need(count * 12)  # each entry has at least a key length and a type: a cheap bound on garbage
    metadata: dict[str, object] = {}
    for _ in range(count):
        key = cursor.string()
        value_type = cursor.u32()
        if value_type == _ARRAY:
            _skip_array(cursor)
        elif value_type == _STRING:
            metadata[key] = cursor.string()
        elif value_type in _SCALAR_FORMATS:
            metadata[key] = cursor.unpack(_SCALAR_FORMATS[value_type])
        else:
            raise _Corrupt(f"metadata '{key}' has unknown type {value_type}")
    return metadata


def _skip_array(cursor: _Cursor) -> None:
    item_type, count = cursor.u32(), cursor.u64()
    if item_type in _SCALAR_FORMATS:
        cursor.skip(count * struct.calcsize(_SCALAR_FORMATS[item_type]))
    elif item_type == _STRING:
        cursor.need(count * 8)
        for _ in range(count):
            cursor.skip(cursor.u64())
    elif item_type == _ARRAY:
        for _ in range(count):
            _skip_array(cursor)
    else:
        raise _Corrupt(f"an array has unknown item type {item_type}")


def _alignment(metadata: dict[str, object]) -> int:
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise _Corrupt(f"general.alignment {alignment!r} is not a power of two")
    return alignment


def _tensor_data_end(cursor: _Cursor, count: int, alignment: int) -> int:
    """Where the last tensor's bytes end, from the tensor table alone."""
    cursor.need(count * 24)  # name length, dimension count, type and offset at the least
    sizes = _quant_sizes()
    furthest = 0
    for _ in range(count):
        name = cursor.string()
        n_dims = cursor.u32()
        if n_dims > _MAX_DIMS:
            raise _Corrupt(f"tensor '{name}' claims {n_dims} dimensions")
        elements = 1
        for _ in range(n_dims):
            elements *= cursor.u64()
        tensor_type, offset = cursor.u32(), cursor.u64()
        block, type_size = sizes.get(tensor_type, (1, 0))  # a type newer than gguf knows: check the offset only
        furthest = max(furthest, offset + elements // block * type_size)
    data_start = -(-cursor.pos // alignment) * alignment
    return data_start + furthest


def _quant_sizes() -> dict[int, tuple[int, int]]:
    """(block size, bytes per block) for each ggml tensor type, from the gguf package's table."""
    from gguf import GGML_QUANT_SIZES

    return {int(kind): (int(block), int(size)) for kind, (block, size) in GGML_QUANT_SIZES.items()}
