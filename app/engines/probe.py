"""Does this build of the engine run on this processor? Asked once per build and CPU, in a child.

A CPU's flags can promise instructions it then refuses: a virtual machine that lists AMX traps on
the first AMX instruction. So before a build of llama.cpp first loads a model on a machine, a tiny
generated model (`app.engines.tiny_model`, its matrices in the quantized block formats real models
use) runs for a few tokens in a child process. A child killed by a signal is the verdict "this
build cannot run here", said in words (`app.engines.worker.describe_exit`) instead of the app
vanishing. Verdicts are kept in the cache folder, keyed by the engine's files and the CPU.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import platform
import queue
import time
from pathlib import Path

from app.engines.worker import ChildDied, ChildProcess, describe_exit, next_frame
from app.errors import EngineCrashed, ModelError
from app.jsonfile import read_json_object, write_json

log = logging.getLogger("hearth.engine")

PROBE_TIMEOUT_S = 120.0
VERDICTS = "engine-probe.json"
_LASTING = ("SIGILL", "SIGSEGV", "SIGBUS")  # faults of the build itself, worth remembering


def cache_home() -> Path:
    """Machine-wide facts Hearth may forget (`HEARTH_CACHE` overrides the platform's cache folder)."""
    override = os.environ.get("HEARTH_CACHE")
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("Hearth", appauthor=False))


def build_key() -> str:
    """A fingerprint of the engine's native files and of this CPU, without loading either."""
    digest = hashlib.sha256()
    override = os.environ.get("LLAMA_CPP_LIB_PATH")  # where llama-cpp-python then loads its libraries from
    spec = importlib.util.find_spec("llama_cpp")
    origin = Path(spec.origin).parent if spec is not None and spec.origin else None
    lib = Path(override) if override else origin / "lib" if origin is not None else None
    if lib is not None and lib.is_dir():
        for path in sorted(lib.iterdir()):
            stat = path.stat()
            digest.update(f"{path.name}:{stat.st_size}:{int(stat.st_mtime)}\n".encode())
    digest.update(f"{platform.machine()}:{platform.processor()}\n".encode())
    digest.update(_cpu_description().encode())
    return digest.hexdigest()[:32]


def _cpu_description() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    wanted = ("model name", "flags", "Features", "CPU implementer", "CPU part")
    lines = {line.split(":", 1)[0].strip(): line for line in text.splitlines() if ":" in line}
    return "\n".join(lines[key] for key in wanted if key in lines)


def check_engine_runs(cache: Path | None = None) -> None:
    """Raise `EngineCrashed` when this build of the engine cannot run on this CPU; cheap once known."""
    cache = cache or cache_home()
    key = build_key()
    verdicts = read_json_object(cache / VERDICTS)
    known = verdicts.get(key)
    if isinstance(known, dict):
        if known.get("ok"):
            return
        raise EngineCrashed(
            str(known.get("message", "")), str(known.get("hint", "")), "probe", str(known.get("signal", ""))
        )
    started = time.perf_counter()
    try:
        probe(cache)
    except EngineCrashed as exc:
        if exc.signal_name in _LASTING:
            verdicts[key] = {"ok": False, "message": exc.message, "hint": exc.hint, "signal": exc.signal_name}
            _write(cache / VERDICTS, verdicts)
        raise
    verdicts[key] = {"ok": True, "seconds": round(time.perf_counter() - started, 3)}
    _write(cache / VERDICTS, verdicts)


def probe(cache: Path) -> str:
    """Run the probe model for a few tokens in a child; its text, or `EngineCrashed` if the child died."""
    from app.engines.tiny_model import write_tiny_llama

    model = cache / "probe-model-q4.gguf"
    if not model.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        partial = model.with_suffix(".partial")
        write_tiny_llama(partial, n_embd=256, n_heads=4, n_ff=512, seed=7, quantized=True)
        os.replace(partial, model)
    child = ChildProcess()
    try:
        if not child.send(("probe", str(model))):
            raise ChildDied
        frame = next_frame(child, PROBE_TIMEOUT_S)
    except ChildDied:
        error = describe_exit(child.returncode(), "probe", "")
        log.error("the engine's start-up probe failed: %s", error.message)
        raise error from None
    except queue.Empty:
        child.kill()
        raise ModelError(
            "The engine's start-up check did not finish.", "Try again; the computer may be very busy."
        ) from None
    finally:
        child.close()
    if frame[0] == "error":
        raise frame[1] if isinstance(frame[1], BaseException) else ModelError(str(frame[1]))
    return str(frame[1])


def _write(path: Path, data: dict[str, object]) -> None:
    try:
        write_json(path, data)
    except OSError as exc:
        log.warning("could not keep the engine check's verdict in %s: %s", path, exc)
