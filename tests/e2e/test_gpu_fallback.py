"""Where the local model runs: on this CPU-only build, GPU layers asked for are explained, and a
GPU load that fails is retried on the CPU with the cause recorded (real llama.cpp loads)."""

from __future__ import annotations

import json
from pathlib import Path

import llama_cpp
import pytest

from app.catalog.gguf_check import inspect_gguf
from app.engines.llama_cpp_engine import LlamaCppEngine, _load_llama, gpu_backend, load_placed
from app.errors import ModelError
from tests.e2e.hearth_cli import ask, assert_ok, write_settings


@pytest.fixture(autouse=True)
def cpu_only_build() -> None:
    assert not llama_cpp.llama_supports_gpu_offload() and gpu_backend() == "CPU", (
        "these tests describe a CPU-only build"
    )


def test_gpu_layers_asked_for_on_a_cpu_build_name_the_cause(smollm2_path: Path) -> None:
    engine = LlamaCppEngine(smollm2_path, model_id="m", n_ctx=512, n_threads=1, n_gpu_layers=12)
    info = engine.info
    engine.close()
    assert (info.backend, info.gpu_layers) == ("CPU", 0)
    assert (
        info.fallback_reason == "this llama.cpp build has no GPU backend, so the 12 GPU layers asked for are not used"
    )
    assert "GGML_CUDA" in info.fallback_hint and "GPU layers to 0" in info.fallback_hint


@pytest.mark.parametrize("layers", [-1, 0])
def test_the_default_and_zero_layers_ask_nothing_a_cpu_build_lacks(smollm2_path: Path, layers: int) -> None:
    engine = LlamaCppEngine(smollm2_path, model_id="m", n_ctx=512, n_threads=1, n_gpu_layers=layers)
    info = engine.info
    engine.close()
    assert (info.backend, info.gpu_layers, info.fallback_reason, info.fallback_hint) == ("CPU", 0, "", "")


class GpuOutOfMemory:
    """A loader that behaves as a GPU build does when the card is full: every load with layers on
    the GPU fails the way llama.cpp's does; a CPU load is the real one."""

    def __init__(self) -> None:
        self.requested: list[int] = []

    def __call__(self, path: Path, architecture: str, n_ctx: int, n_threads: int, n_gpu_layers: int) -> llama_cpp.Llama:
        self.requested.append(n_gpu_layers)
        if n_gpu_layers != 0:
            cause = ValueError("Failed to load model from file: cudaMalloc failed: out of memory")
            raise ModelError(f"llama.cpp could not load {path.name} ({cause}).", "") from cause
        return _load_llama(path, architecture, n_ctx, n_threads, n_gpu_layers)


def test_a_failed_gpu_load_falls_back_to_the_cpu_and_says_why(smollm2_path: Path) -> None:
    loader = GpuOutOfMemory()
    llm, placement = load_placed(smollm2_path, inspect_gguf(smollm2_path), 512, 1, -1, "CUDA", loader)
    try:
        assert llm.tokenize(b"hello"), "the CPU copy is a working model"
    finally:
        llm.close()
    assert loader.requested == [-1, 0], "tried with the layers asked for, then with none"
    assert (placement.backend, placement.gpu_layers) == ("CPU", 0)
    assert placement.fallback_reason == "loading 31 layers onto the CUDA GPU failed, most likely for lack of GPU memory"
    assert "cudaMalloc failed: out of memory" in placement.fallback_hint and "(try 15)" in placement.fallback_hint


def test_when_the_cpu_cannot_load_it_either_that_error_is_reported(smollm2_path: Path) -> None:
    def nothing_loads(path: Path, architecture: str, n_ctx: int, n_threads: int, n_gpu_layers: int) -> llama_cpp.Llama:
        raise ModelError(f"{'GPU' if n_gpu_layers else 'CPU'} load failed", "")

    with pytest.raises(ModelError, match="CPU load failed"):
        load_placed(smollm2_path, inspect_gguf(smollm2_path), 512, 1, -1, "CUDA", nothing_loads)


def test_hearth_ask_reports_the_fallback(cli_home: Path) -> None:
    write_settings(cli_home, n_gpu_layers=8)
    result = ask(cli_home, "Say hi.", "--json")
    assert_ok(result)
    answer = json.loads(result.stdout)
    assert (answer["backend"], answer["gpu_layers"]) == ("CPU", 0)
    assert "no GPU backend" in answer["fallback_reason"]
    plain = ask(cli_home, "Say hi.")
    assert_ok(plain)
    assert "warning: the model runs on the CPU: this llama.cpp build has no GPU backend" in plain.stderr
    assert "hint: To use the GPU" in plain.stderr
