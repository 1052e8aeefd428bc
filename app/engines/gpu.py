"""Where the local model runs, and why not on the GPU when GPU layers were asked for.

Peers fall back to the CPU silently; Hearth says which backend runs, how many layers are on the
GPU, and — when the GPU was wanted but is not used — the cause and what to change. Three causes
are told apart:

- the llama.cpp build has no GPU backend at all (a CPU build): only worth saying when the user
  asked for a number of GPU layers, since the default (-1, "all when there is a GPU") asks for
  nothing a CPU build could give;
- the build ships a GPU backend's library but no GPU answered (driver missing, no device visible);
- the GPU load itself failed (most often out of GPU memory); the engine then loads on the CPU.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

# Library-name markers of llama.cpp's GPU backends, as they appear under llama_cpp/lib.
GPU_LIBRARIES = (("cuda", "CUDA"), ("vulkan", "Vulkan"), ("metal", "Metal"), ("hip", "ROCm"), ("sycl", "SYCL"))
BUILD_HINT = (
    'To use the GPU, reinstall llama-cpp-python built for it — CMAKE_ARGS="-DGGML_CUDA=on" (NVIDIA), '
    '"-DGGML_METAL=on" (Mac) or "-DGGML_VULKAN=on" (other GPUs), see the README — '
    "or set GPU layers to 0 in Settings › Model to run on the CPU without this notice."
)
DRIVER_HINT = (
    "Install or update the GPU driver (for NVIDIA, `nvidia-smi` should list the card) and restart Hearth, "
    "or set GPU layers to 0 in Settings › Model to run on the CPU without this notice."
)


@dataclass(frozen=True)
class Placement:
    """The backend that runs the model, its layers on the GPU, and the fallback's cause if any."""

    backend: str
    gpu_layers: int = 0
    fallback_reason: str = ""
    fallback_hint: str = ""


def shipped_gpu_backend() -> str:
    """The GPU backend whose library this llama.cpp build ships ("" for a CPU-only build),
    whether or not a GPU answers."""
    import llama_cpp

    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    names = " ".join(p.name.lower() for p in lib_dir.glob("*")) if lib_dir.is_dir() else ""
    for marker, name in GPU_LIBRARIES:
        if marker in names:
            return name
    return ""


def on_cpu(requested_layers: int, shipped: str) -> Placement:
    """The placement when this build cannot offload at all (llama.cpp reports no GPU device)."""
    if shipped and requested_layers != 0 and sys.platform != "darwin":
        return Placement(
            "CPU",
            fallback_reason=f"the {shipped} build of llama.cpp found no usable GPU (driver missing or no device visible)",
            fallback_hint=DRIVER_HINT,
        )
    if requested_layers > 0:
        return Placement(
            "CPU",
            fallback_reason=f"this llama.cpp build has no GPU backend, so the {requested_layers} GPU layers asked for are not used",
            fallback_hint=BUILD_HINT,
        )
    return Placement("CPU")


def after_gpu_failure(backend: str, layers: int, error: BaseException) -> Placement:
    """The placement after loading `layers` layers onto the GPU failed and the CPU took the model."""
    said = str(error.__cause__ or error).strip()
    fewer = f" (try {layers // 2})" if layers > 1 else ""
    return Placement(
        "CPU",
        fallback_reason=f"loading {layers} layers onto the {backend} GPU failed, most likely for lack of GPU memory",
        fallback_hint=(
            f"llama.cpp said: {said}. Lower GPU layers{fewer} or the context size in Settings › Model, "
            "choose a smaller model, or close other programs that use the GPU."
        ),
    )
