"""The model's process: loads one model and answers `app.engines.worker.WorkerEngine`'s requests.

Started as `python -m app.engines.worker_main` (or `hearth --engine-worker` in the one-folder
app). Requests come as frames on stdin; answers go out as frames on a private copy of stdout, and
file descriptor 1 itself is pointed at stderr, so nothing native can print into the answers.
A "cancel" frame is read while a reply streams and stops it between tokens. When stdin closes
(the app is gone, however it ended) the process exits at once.

The requests: ("load", ModelSpec) → ("loaded", EngineInfo); ("count" | "tokenize" | "prefill",
messages) → ("result", value); ("json", messages, schema, settings) → ("result", (value, stats)); ("stream", messages, settings) → ("text", piece)… then ("done",
stats, images_encoded); ("probe", path) → ("result", text); ("close",). A failure answers
("error", exception).

`HEARTH_TEST_ENGINE_FAULT` (tests only) makes the process fault on purpose: `PHASE:SIGNAL[:FILE]`,
PHASE one of load, decode, probe; SIGNAL one of SIGILL (a real illegal instruction where the CPU
allows), SIGSEGV (a real invalid read), SIGABRT, SIGKILL; with FILE, only while FILE does not exist
(it is created as the fault happens), so a test can fault once and then see the restart work.
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import IO, Any, NoReturn

from app.engines.frames import read_frame, write_frame
from app.errors import HearthError, ModelError

FAULT_ENV = "HEARTH_TEST_ENGINE_FAULT"
GATHER_S = 0.02  # well below the chat view's 40 ms refresh
WORKER_FLAG = "--engine-worker"  # `hearth --engine-worker`: how the one-folder app starts this process

log = logging.getLogger("hearth.engine.worker")


def main() -> NoReturn:
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray native prints go to stderr, never into the answers
    if sys.platform == "win32":  # no newline translation in the frames
        import msvcrt

        msvcrt.setmode(answers.fileno(), os.O_BINARY)
        msvcrt.setmode(sys.stdin.fileno(), os.O_BINARY)
    sys.stdout = sys.stderr
    requests: queue.Queue[tuple[tuple[Any, ...], threading.Event]] = queue.Queue()
    threading.Thread(target=_read_requests, args=(sys.stdin.buffer, requests), daemon=True).start()
    server = _Server(answers)
    while True:
        frame, cancel = requests.get()
        if frame[0] == "close":
            break
        server.handle(frame, cancel)
    server.close()
    answers.close()
    # The request reader still blocks on stdin: leave without the interpreter's shutdown waiting on it.
    sys.stderr.flush()
    os._exit(0)


def _read_requests(source: IO[bytes], requests: queue.Queue[tuple[tuple[Any, ...], threading.Event]]) -> None:
    """Queue each request with its own cancel event; a "cancel" sets the latest one."""
    latest = threading.Event()
    while True:
        try:
            frame = read_frame(source)
        except (OSError, ValueError, EOFError, pickle.UnpicklingError):
            frame = None
        if frame is None:
            os._exit(0)  # the app closed our stdin: it is gone, and so is any reason to run
        if frame[0] == "cancel":
            latest.set()
            continue
        latest = threading.Event()
        requests.put((frame, latest))


class _Server:
    def __init__(self, answers: IO[bytes]) -> None:
        self._answers = answers
        self._engine: Any = None

    def send(self, message: tuple[Any, ...]) -> None:
        write_frame(self._answers, message)

    def handle(self, frame: tuple[Any, ...], cancel: threading.Event) -> None:
        kind = frame[0]
        try:
            if kind == "load":
                fault_point("load")
                self._engine = _build(frame[1])
                self.send(("loaded", self._engine.info))
            elif kind == "probe":
                self.send(("result", _probe(Path(frame[1]))))
            elif kind == "stream":
                self._stream(frame[1], frame[2], cancel)
            elif kind in ("count", "tokenize", "prefill"):
                self.send(("result", self._answer(kind, frame[1])))
            elif kind == "json":
                engine = self._loaded()
                self.send(("result", (engine.complete_json(frame[1], frame[2], frame[3]), engine.last_stats)))
            else:
                raise ModelError(f"The model's process got an unknown request {kind!r}.", "Report this problem.")
        except BaseException as exc:  # every failure becomes an answer: the app decides what to do
            self.send(("error", _portable(exc)))

    def _answer(self, kind: str, messages: list[Any]) -> Any:
        engine = self._loaded()
        if kind == "count":
            return engine.count_tokens(messages)
        if kind == "tokenize":
            return engine.tokenize_prompt(messages)
        return engine.prefill(messages)

    def _stream(self, messages: list[Any], settings: Any, cancel: threading.Event) -> None:
        """Send the reply as it is decoded: the first piece at once, later ones gathered for up to
        `GATHER_S`, so the app wakes a few dozen times a second rather than once per token (on a
        small machine each wake-up takes a core from the model's own threads)."""
        engine = self._loaded()
        held, sent_at = "", 0.0
        for n, piece in enumerate(engine.stream(messages, settings, cancel)):
            held += piece
            now = time.perf_counter()
            if n == 0 or now - sent_at >= GATHER_S:
                self.send(("text", held))
                held, sent_at = "", now
            if n == 0:
                fault_point("decode")
        if held:
            self.send(("text", held))
        self.send(("done", engine.last_stats, getattr(engine, "images_encoded", 0)))

    def _loaded(self) -> Any:
        if self._engine is None:
            raise ModelError("No model is loaded in the model's process.", "Choose a model in Settings › Model.")
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()


def _build(spec: Any) -> Any:
    from app.engines.llama_cpp_engine import LlamaCppEngine

    options = dict(
        model_id=spec.model_id, model_name=spec.model_name, n_ctx=spec.n_ctx, n_threads=spec.n_threads,
        n_gpu_layers=spec.n_gpu_layers, chat_format=spec.chat_format,
    )  # fmt: skip
    if spec.projector is None:
        return LlamaCppEngine(spec.model_path, **options)
    from app.core.images import ImageStore
    from app.engines.vision import VisionEngine

    store = ImageStore(spec.pictures) if spec.pictures is not None else None
    pictures = (lambda sha: store.get(sha).read_bytes()) if store is not None else None
    return VisionEngine(spec.model_path, spec.projector, pictures=pictures, **options)


def _probe(model_path: Path) -> str:
    """Run the probe model for a few tokens: the matrix kernels a real model uses, on this CPU."""
    from app.engines.llama_cpp_engine import LlamaCppEngine
    from app.engines.llm import ChatMessage
    from app.settings import GenerationSettings

    fault_point("probe")
    engine = LlamaCppEngine(model_path, model_id="probe", n_ctx=256, n_threads=2, n_gpu_layers=0, chat_format="chatml")
    try:
        prompt = [ChatMessage("user", "The engine checks that this processor runs every kernel it was built with.")]
        return "".join(engine.stream(prompt, GenerationSettings(max_tokens=8, temperature=0.0, seed=1)))
    finally:
        engine.close()


def _portable(exc: BaseException) -> BaseException:
    """The error as the app can unpickle it; a bug's traceback goes to stderr (the app's log)."""
    if not isinstance(exc, HearthError):
        traceback.print_exception(exc, file=sys.stderr)
        exc = ModelError(
            f"The engine failed: {type(exc).__name__}: {exc}", "Try again; if it keeps failing, reload the model."
        )
    try:
        pickle.dumps(exc)
        return exc
    except Exception:
        return ModelError(str(exc))


# -- faults on purpose, for tests ----------------------------------------------------------------


def fault_point(phase: str) -> None:
    spec = os.environ.get(FAULT_ENV, "")
    if not spec:
        return
    parts = spec.split(":", 2)
    if len(parts) < 2 or parts[0] != phase:
        return
    if len(parts) == 3:
        marker = Path(parts[2])
        if marker.exists():
            return
        marker.write_text(phase)
    raise_fault(parts[1])


def raise_fault(name: str) -> None:
    import ctypes
    import signal

    sys.stderr.flush()
    if name == "SIGILL" and _illegal_instruction():
        return
    if name == "SIGSEGV":
        ctypes.string_at(0)  # reads address 0: a real segmentation fault
    if name == "SIGABRT":
        os.abort()
    os.kill(os.getpid(), getattr(signal, name))


def _illegal_instruction() -> bool:
    """Execute `ud2`, x86's guaranteed-invalid instruction, from a page made executable; False where
    that cannot be done (another CPU, a system that forbids executable memory)."""
    import ctypes
    import mmap
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64") or sys.platform == "win32":
        return False
    try:
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except (OSError, ValueError):
        return False
    page.write(b"\x0f\x0b")  # ud2
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    ctypes.CFUNCTYPE(None)(address)()
    return True


if __name__ == "__main__":
    main()
