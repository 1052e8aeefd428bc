"""GGUF checks on generated files: good, cut short, wrong kind of file, odd metadata."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from app.catalog.gguf_check import inspect_gguf, is_known_architecture
from app.errors import ModelError
from tests.catalog.helpers import write_gguf


@pytest.fixture
def good(tmp_path: Path) -> Path:
    return write_gguf(tmp_path / "tiny.gguf", chat_template="{{ messages }}")


def cut(source: Path, target: Path, keep: int) -> Path:
    target.write_bytes(source.read_bytes()[:keep])
    return target


def test_a_valid_file_is_described(good: Path) -> None:
    info = inspect_gguf(good)
    assert info.architecture == "llama" and info.known_architecture
    assert info.name == "tiny"
    assert info.context_length == 256
    assert info.chat_template == "{{ messages }}"
    assert info.file_size == good.stat().st_size
    assert info.tensor_count == 2 and info.version == 3


def test_missing_chat_template_is_none(tmp_path: Path) -> None:
    assert inspect_gguf(write_gguf(tmp_path / "plain.gguf")).chat_template is None


def test_cut_off_tensor_data_is_truncated(good: Path, tmp_path: Path) -> None:
    short = cut(good, tmp_path / "short.gguf", good.stat().st_size - 100)
    with pytest.raises(ModelError) as caught:
        inspect_gguf(short)
    assert "truncated" in caught.value.message and "incomplete" in caught.value.message
    assert "again" in caught.value.hint


@pytest.mark.parametrize("keep", [6, 20, 40, 100])
def test_cut_inside_the_header_is_truncated(good: Path, tmp_path: Path, keep: int) -> None:
    with pytest.raises(ModelError, match="truncated"):
        inspect_gguf(cut(good, tmp_path / "head.gguf", keep))


@pytest.mark.parametrize(
    "content",
    [
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 64,
        b"Hello, this is a text file and not a model at all.\n",
        b"",
        b"GG",
        b"<!DOCTYPE html><html><body>404</body></html>",
    ],
    ids=["png", "text", "empty", "two-bytes", "html"],
)
def test_other_files_are_not_gguf(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(content)
    with pytest.raises(ModelError, match="not a GGUF") as caught:
        inspect_gguf(path)
    assert caught.value.hint


def test_png_is_named_as_such(tmp_path: Path) -> None:
    path = tmp_path / "picture.gguf"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    with pytest.raises(ModelError, match="PNG"):
        inspect_gguf(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        inspect_gguf(tmp_path / "absent.gguf")


def test_a_folder_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="folder"):
        inspect_gguf(tmp_path)


@pytest.mark.parametrize(("version", "words"), [(1, "too old"), (99, "newer"), (0x03000000, "big-endian")])
def test_unsupported_versions(good: Path, tmp_path: Path, version: int, words: str) -> None:
    data = bytearray(good.read_bytes())
    struct.pack_into("<I", data, 4, version)
    path = tmp_path / "odd.gguf"
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=words):
        inspect_gguf(path)


def test_unknown_architecture_is_reported_not_refused(tmp_path: Path) -> None:
    info = inspect_gguf(write_gguf(tmp_path / "novel.gguf", architecture="frobnicator"))
    assert info.architecture == "frobnicator"
    assert not info.known_architecture
    assert not is_known_architecture("frobnicator")
    assert all(is_known_architecture(name) for name in ("llama", "qwen2", "qwen3", "gemma3", "phi3", "mistral3"))


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def test_no_architecture_is_refused(tmp_path: Path) -> None:
    header = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + _string("general.name") + struct.pack("<I", 8) + _string("x")
    path = tmp_path / "anon.gguf"
    path.write_bytes(header)
    with pytest.raises(ModelError, match="general.architecture"):
        inspect_gguf(path)


def test_garbage_metadata_type_is_damage(tmp_path: Path) -> None:
    header = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + _string("general.name") + struct.pack("<I", 77) + b"\x00" * 16
    path = tmp_path / "garbage.gguf"
    path.write_bytes(header)
    with pytest.raises(ModelError, match="damaged"):
        inspect_gguf(path)


def test_absurd_counts_do_not_hang(tmp_path: Path) -> None:
    header = b"GGUF" + struct.pack("<IQQ", 3, 2**40, 2**40) + b"\x00" * 64
    path = tmp_path / "huge.gguf"
    path.write_bytes(header)
    with pytest.raises(ModelError, match="truncated"):
        inspect_gguf(path)
