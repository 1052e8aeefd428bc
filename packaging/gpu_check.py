"""Check a GPU build of llama-cpp-python with Hearth's own engine: backend, offload, tokens/s.

Run on a machine with the GPU build installed (see packaging/README.md):

    python packaging/gpu_check.py [--model FILE.gguf]

Without --model it generates a random-weight llama with SmolLM2-135M's shape (same layers,
widths and heads; speed does not depend on the weights' values), so it needs no download.
It prints one JSON line per configuration: all layers on the GPU, then none (CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.core.conversation import ChatMessage  # noqa: E402
from app.engines.llama_cpp_engine import LlamaCppEngine, gpu_backend  # noqa: E402
from app.settings import GenerationSettings  # noqa: E402

SMOLLM2_SHAPE = dict(n_embd=576, n_layers=30, n_heads=9, n_kv_heads=3, n_ff=1536, n_ctx=8192)


def generated_model(folder: Path) -> Path:
    import numpy as np

    from tests.fixtures.tiny_gguf import write_tiny_llama

    return write_tiny_llama(folder / "smollm2-shaped.gguf", dtype=np.float16, **SMOLLM2_SHAPE)  # type: ignore[arg-type]


def measure(path: Path, gpu_layers: int, threads: int, tokens: int) -> dict[str, object]:
    started = time.perf_counter()
    engine = LlamaCppEngine(path, model_id="check", n_ctx=2048, n_threads=threads, n_gpu_layers=gpu_layers)
    load_s = time.perf_counter() - started
    prompt = [ChatMessage("user", "Tell me a long story about a lighthouse. " * 8)]
    settings = GenerationSettings(temperature=0.0, max_tokens=tokens, seed=1)
    list(engine.stream(prompt, settings))  # warm-up: kernels, caches
    stamps = [time.perf_counter() for _ in engine.stream(prompt + [ChatMessage("user", "Again.")], settings)]
    info, stats = engine.info, engine.last_stats
    engine.close()
    return {
        "requested_gpu_layers": gpu_layers,
        "backend": info.backend,
        "gpu_layers": info.gpu_layers,
        "load_s": round(load_s, 3),
        "ttft_s": round(stats.ttft_s, 4),
        "tokens": stats.completion_tokens,
        "tokens_per_s": round((len(stamps) - 1) / (stamps[-1] - stamps[0]), 1) if len(stamps) > 2 else 0.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    import llama_cpp

    print(
        json.dumps(
            {
                "llama_cpp_python": llama_cpp.__version__,
                "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
                "backend": gpu_backend(),
            }
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = args.model or generated_model(Path(tmp))
        for layers in (-1, 0):
            print(json.dumps(measure(path, layers, args.threads, args.tokens)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
