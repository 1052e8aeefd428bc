"""The model in a process of its own: a native fault costs the reply in progress, never the app.

`WorkerEngine` is a `ChatEngine` whose model — text (`LlamaCppEngine`) or vision (`VisionEngine`) —
lives in a child process (`app.engines.worker_main`) that it starts and supervises. Requests and
answers are pickled frames (`app.engines.frames`) over the child's stdin and stdout; the reply's
text streams piece by piece as it is decoded, and the KV cache stays in the child, so reuse across
turns holds. The app's process never imports llama.cpp.

When the child dies — an illegal instruction, a segmentation fault, the kernel's out-of-memory
kill, an abort — the call in progress raises `EngineCrashed`, whose message says which in words.
After a crash while replying, a new child loads the same model at once, in the background, so the
next turn works with no step from the user. A crash while loading is recorded (`LoadCrashes`): a
model that stopped its process while loading twice in a row is not loaded again automatically.
Closing the engine ends the child, so its memory goes back to the system.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.engines.frames import read_frame, write_frame
from app.engines.llm import ChatMessage, EngineInfo, GenerationStats
from app.engines.worker_main import WORKER_FLAG
from app.errors import EngineCrashed, HearthError, ModelError
from app.jsonfile import read_json_object, write_json
from app.settings import GenerationSettings

log = logging.getLogger("hearth.engine")

LOAD_TIMEOUT_S = 600.0  # a big model from a slow disk; the child's death ends the wait much sooner
CLOSE_TIMEOUT_S = 3.0
_POLL_S = 0.02  # how often a waiting stream looks at its cancel event


@dataclass(frozen=True)
class ModelSpec:
    """What the child loads: a GGUF model, and its vision projector when it sees pictures."""

    model_path: Path
    model_id: str
    model_name: str | None = None
    n_ctx: int = 4096
    n_threads: int = 1
    n_gpu_layers: int = -1
    chat_format: str = "auto"
    projector: Path | None = None
    pictures: Path | None = None  # the picture store's folder (`ImageStore`) a vision model reads from


def worker_command() -> list[str]:
    """The command line that starts a child: this same program, in its worker role."""
    if getattr(sys, "frozen", False):  # the one-folder app: its executable knows the flag
        return [sys.executable, WORKER_FLAG]
    return [sys.executable, "-m", "app.engines.worker_main"]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    if not getattr(sys, "frozen", False):  # the child imports `app` from where this process did
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


# -- why a child stopped ------------------------------------------------------------------------

_WINDOWS_FAULTS = {
    0xC000001D: "SIGILL",  # STATUS_ILLEGAL_INSTRUCTION
    0xC0000005: "SIGSEGV",  # STATUS_ACCESS_VIOLATION
    0xC00000FD: "SIGSEGV",  # STATUS_STACK_OVERFLOW
    0xC0000409: "SIGABRT",  # STATUS_STACK_BUFFER_OVERRUN, what abort() ends with
}
_RESTART_NOTE = "Hearth has started the model again: Regenerate (Ctrl+R) asks for the whole reply."


def describe_exit(returncode: int | None, phase: str, model: str) -> EngineCrashed:
    """An `EngineCrashed` that says in words why the child stopped (`returncode` as `Popen` gives it).

    `phase` is "load", "reply" or "probe" (the start-up check, `app.engines.probe`)."""
    where = {
        "load": f"while loading {model}",
        "reply": f"while {model} was writing a reply",
    }.get(phase, "during its start-up check")
    again = _RESTART_NOTE if phase == "reply" else ""
    name = ""
    if returncode is not None and returncode < 0:
        with contextlib.suppress(ValueError):
            name = signal.Signals(-returncode).name
    if returncode is not None and not name:  # Windows ends a faulting process with an exception code
        name = _WINDOWS_FAULTS.get(returncode & 0xFFFFFFFF, "")
    build_hint = (
        "Rebuild the engine for this processor (the README's section on the engine build says how), "
        "or use a remote engine in Settings › Model."
    )
    if phase == "probe" and name in ("SIGSEGV", "SIGBUS", "SIGABRT"):
        message = f"The engine crashed {where} ({name}): this build of the engine does not run on this processor."
        hint = build_hint
    elif name == "SIGILL":
        message = (
            f"The engine stopped {where}: this build of the engine uses an instruction your processor "
            "refuses (illegal instruction)."
        )
        hint = build_hint
    elif name == "SIGKILL":
        message = f"The model's process was killed {where}, most likely because the computer ran out of memory."
        hint = "Close other programs, or choose a smaller model or a smaller context size in Settings › Model."
    elif name in ("SIGSEGV", "SIGBUS"):
        fault = "segmentation fault" if name == "SIGSEGV" else "bus error"
        message = f"The engine crashed {where} ({fault})."
        hint = "The model file may be damaged or not supported: check it on the Models page, or choose another model."
    elif name == "SIGABRT":
        message = f"The engine aborted {where}."
        hint = "The model or its settings may not be supported: try a smaller context size, or choose another model."
    elif name:
        message = f"The model's process was stopped by {name} {where}."
        hint = "If you did not stop it, look in Hearth's log file, or choose another model."
    else:
        message = f"The model's process ended unexpectedly (status {returncode}) {where}."
        hint = "Look in Hearth's log file for the cause, or choose another model."
    return EngineCrashed(message, f"{again} {hint}".strip(), phase=phase, signal_name=name)


# -- the child, seen from here ------------------------------------------------------------------

_DIED = object()  # the reader's last word: the child's output ended


class ChildProcess:
    """One child process, its pipes, and a thread that turns its output into a queue of frames."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            worker_command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=_child_env(),
            start_new_session=sys.platform != "win32",  # Ctrl+C in a terminal reaches the app, not the model
        )
        self.frames: queue.Queue[Any] = queue.Queue()
        self._send_lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="hearth-engine-reader", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            while True:
                frame = read_frame(self.proc.stdout)
                if frame is None:
                    break
                self.frames.put(frame)
        except (OSError, EOFError, ValueError) as exc:
            log.debug("the engine's output ended: %s", exc)
        finally:
            self.frames.put(_DIED)

    def send(self, message: tuple[Any, ...]) -> bool:
        """Send one request; False when the child is gone (its death shows on the queue)."""
        assert self.proc.stdin is not None
        try:
            with self._send_lock:
                write_frame(self.proc.stdin, message)
            return True
        except (OSError, ValueError):
            return False

    def returncode(self) -> int | None:
        try:
            return self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # its output closed but it lives on: it is of no use any more
            self.kill()
            return self.proc.returncode

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)

    def close(self) -> None:
        """Ask the child to exit (freeing the model's memory), and make sure it did."""
        self.send(("close",))
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=CLOSE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()


class ChildDied(Exception):
    pass


def next_frame(child: ChildProcess, timeout: float | None = None) -> tuple[Any, ...]:
    frame = child.frames.get(timeout=timeout) if timeout is not None else child.frames.get()
    if frame is _DIED:
        raise ChildDied
    return frame  # type: ignore[no-any-return]


def _raise_error(frame: tuple[Any, ...]) -> None:
    if frame[0] == "error":
        error = frame[1]
        raise error if isinstance(error, BaseException) else ModelError(str(error))


# -- the engine ---------------------------------------------------------------------------------


@dataclass
class _Restart:
    error: BaseException | None = None
    child: ChildProcess | None = None
    info: EngineInfo | None = None
    done: threading.Event = field(default_factory=threading.Event)


class WorkerEngine:
    """A chat engine whose model runs in a child process; see the module's description."""

    def __init__(self, spec: ModelSpec, crashes: LoadCrashes | None = None) -> None:
        self._spec = spec
        self._crashes = crashes
        self._name = spec.model_name or spec.model_path.name
        self._lock = threading.Lock()  # one request at a time, as the KV cache is one shared state
        self._stats = GenerationStats()
        self._restart: _Restart | None = None
        self._closed = False
        self.images_encoded = 0  # pictures the child's projector has encoded (vision models)
        self.restarts = 0  # children started again after a crash
        self._child: ChildProcess | None = None
        self._child, self._info = self._start()

    # -- starting ---------------------------------------------------------------------------

    def _start(self) -> tuple[ChildProcess, EngineInfo]:
        """Start a child and load the model in it; a crash while loading is recorded and raised."""
        child = ChildProcess()
        if not child.send(("load", self._spec)):
            raise self._crashed(child, "load")
        try:
            frame = next_frame(child, LOAD_TIMEOUT_S)
        except ChildDied:
            raise self._crashed(child, "load") from None
        except queue.Empty:
            child.kill()
            raise ModelError(
                f"{self._name} took more than {LOAD_TIMEOUT_S:.0f} s to load.", "Choose a smaller model."
            ) from None
        if frame[0] != "loaded":
            child.close()
            _raise_error(frame)
            raise ModelError(f"The model's process answered {frame[0]!r} to a load.", "Report this problem.")
        if self._crashes is not None:
            self._crashes.forget(self._spec.model_id)
        return child, frame[1]

    def _crashed(self, child: ChildProcess, phase: str) -> EngineCrashed:
        error = describe_exit(child.returncode(), phase, self._name)
        log.error("the model's process stopped (%s, %s): %s", phase, error.signal_name or "exit", error.message)
        if phase == "load" and self._crashes is not None:
            self._crashes.record(self._spec.model_id, error)
        return error

    def _restart_later(self) -> None:
        """Start a new child in the background after a crash, so the next turn finds it loading or loaded."""
        if self._closed:
            return

        def run(restart: _Restart) -> None:
            try:
                restart.child, restart.info = self._start()
            except BaseException as exc:  # the next call reports it
                restart.error = exc
            finally:
                restart.done.set()
                if self._closed and restart.child is not None:
                    restart.child.close()

        restart = self._restart = _Restart()
        self.restarts += 1
        threading.Thread(target=run, args=(restart,), name="hearth-engine-restart", daemon=True).start()

    def _ready_child(self) -> ChildProcess:
        """The live child. Waits for a restart under way (and reports its failure); after a failure,
        the next call starts one again, unless the model crashed while loading too often."""
        if self._closed:
            raise ModelError("The model was closed.", "Choose a model in Settings › Model.")
        restart, self._restart = self._restart, None
        if restart is not None:
            restart.done.wait()
            if restart.child is None or restart.info is None:
                self._child = None
                raise restart.error or ModelError("The model could not be started again.")
            self._child, self._info = restart.child, restart.info
        if self._child is not None and self._child.proc.poll() is not None:
            # It died while idle (killed for memory between turns, say): nothing was lost, start anew.
            log.warning("the model's process had stopped (status %s); starting it again", self._child.proc.returncode)
            self._child = None
            self.restarts += 1
        if self._child is None:
            if self._crashes is not None and self._crashes.blocked(self._spec.model_id):
                raise self._crashes.refusal(self._spec.model_id, self._name)
            self._child, self._info = self._start()
        return self._child

    # -- the Protocol -----------------------------------------------------------------------

    @property
    def info(self) -> EngineInfo:
        return self._info

    @property
    def last_stats(self) -> GenerationStats:
        return self._stats

    @property
    def pid(self) -> int | None:
        """The child's process id (None while a new one is starting)."""
        return None if self._restart is not None or self._child is None else self._child.pid

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return int(self._call("count", list(messages)))

    def tokenize_prompt(self, messages: Sequence[ChatMessage]) -> list[int]:
        return list(self._call("tokenize", list(messages)))

    def complete_json(
        self, messages: Sequence[ChatMessage], schema: dict[str, Any], settings: GenerationSettings
    ) -> Any:
        """As `LlamaCppEngine.complete_json`, in the child."""
        value, self._stats = self._call("json", list(messages), schema, settings)
        return value

    def prefill(self, messages: Sequence[ChatMessage]) -> int:
        """As `LlamaCppEngine.prefill`: skipped (0) while the engine is busy or restarting."""
        if self._restart is not None and not self._restart.done.is_set():
            return 0
        if not self._lock.acquire(blocking=False):
            return 0
        try:
            return int(self._call_locked("prefill", list(messages)))
        finally:
            self._lock.release()

    def _call(self, kind: str, *args: Any) -> Any:
        with self._lock:
            return self._call_locked(kind, *args)

    def _call_locked(self, kind: str, *args: Any) -> Any:
        child = self._ready_child()
        try:
            if not child.send((kind, *args)):
                raise ChildDied
            frame = next_frame(child)
        except ChildDied:
            error = self._crashed(child, "reply")
            self._restart_later()
            raise error from None
        _raise_error(frame)
        return frame[1]

    def stream(
        self,
        messages: Sequence[ChatMessage],
        settings: GenerationSettings,
        cancel: threading.Event | None = None,
    ) -> Iterator[str]:
        cancel = cancel or threading.Event()
        with self._lock:
            yield from self._stream_locked(list(messages), settings, cancel)

    def _stream_locked(
        self, messages: list[ChatMessage], settings: GenerationSettings, cancel: threading.Event
    ) -> Iterator[str]:
        started = time.perf_counter()
        child = self._ready_child()
        finished = False
        cancel_sent = False
        first_at = last_at = 0.0
        try:
            if not child.send(("stream", messages, settings)):
                raise ChildDied
            while True:
                try:
                    frame = next_frame(child, _POLL_S)
                except queue.Empty:
                    if cancel.is_set() and not cancel_sent:
                        cancel_sent = child.send(("cancel",))
                    continue
                if frame[0] == "text":
                    last_at = time.perf_counter()
                    first_at = first_at or last_at
                    yield frame[1]
                    if cancel.is_set() and not cancel_sent:
                        cancel_sent = child.send(("cancel",))
                    continue
                finished = True
                _raise_error(frame)
                stats: GenerationStats = frame[1]
                self.images_encoded = frame[2]
                # Timed here, as the app sees the reply: the pipe's delay included.
                stats.ttft_s = first_at - started if first_at else 0.0
                stats.decode_s = last_at - first_at if first_at else 0.0
                self._stats = stats
                return
        except ChildDied:
            finished = True
            self._stats = GenerationStats(finish_reason="crashed")
            error = self._crashed(child, "reply")
            self._restart_later()
            raise error from None
        finally:
            if not finished:  # the caller walked away mid-reply: stop the child and wait for its last word
                self._abandon(child, cancel_sent)

    def _abandon(self, child: ChildProcess, cancel_sent: bool) -> None:
        if not cancel_sent:
            child.send(("cancel",))
        try:
            while next_frame(child)[0] == "text":
                pass
        except ChildDied:
            self._crashed(child, "reply")
            self._restart_later()

    def close(self) -> None:
        """End the child: the model's memory goes back to the system."""
        self._closed = True
        restart = self._restart
        if restart is not None and restart.done.is_set() and restart.child is not None:
            restart.child.close()
        with self._lock:
            if self._child is not None:
                self._child.close()


# -- models that crashed while loading ----------------------------------------------------------


class LoadCrashes:
    """Which models stopped their process while loading, kept in a small JSON file.

    Two such crashes in a row, and the model is not loaded again automatically (at the next start
    of the app, for instance) until the user asks for it: no crash loop."""

    LIMIT = 2
    FILE = "engine-crashes.json"  # in the data folder

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def in_folder(cls, root: Path) -> LoadCrashes:
        return cls(root / cls.FILE)

    def blocked_reasons(self) -> dict[str, str]:
        """Model id → why it is not loaded automatically, for each model that is not."""
        return {
            model_id: str(entry.get("message", ""))
            for model_id, entry in self._read().items()
            if isinstance(entry, dict) and int(entry.get("count", 0)) >= self.LIMIT
        }

    def _read(self) -> dict[str, Any]:
        return read_json_object(self.path)

    def _write(self, data: dict[str, Any]) -> None:
        try:
            write_json(self.path, data)
        except OSError as exc:
            log.warning("could not record the engine's crashes in %s: %s", self.path, exc)

    def record(self, model_id: str, error: HearthError) -> None:
        data = self._read()
        entry = data.get(model_id) if isinstance(data.get(model_id), dict) else {}
        count = int(entry.get("count", 0)) + 1 if isinstance(entry, dict) else 1
        data[model_id] = {"count": count, "message": error.message, "hint": error.hint, "at": time.time()}
        self._write(data)

    def forget(self, model_id: str) -> None:
        data = self._read()
        if model_id in data:
            del data[model_id]
            self._write(data)

    def blocked(self, model_id: str) -> bool:
        return self.count(model_id) >= self.LIMIT

    def count(self, model_id: str) -> int:
        entry = self._read().get(model_id)
        return int(entry.get("count", 0)) if isinstance(entry, dict) else 0

    def refusal(self, model_id: str, name: str) -> ModelError:
        """The error that says why a model is not loaded again automatically."""
        return ModelError(
            f"{name} stopped the engine twice in a row while loading, so Hearth did not load it again: "
            f"{self.reason(model_id)}",
            "Choose another model in Settings › Model, or select it on the Models page (Ctrl+Shift+M) and "
            "click Use this model to try once more.",
        )

    def reason(self, model_id: str) -> str:
        """The last crash's message ("" when there was none)."""
        entry = self._read().get(model_id)
        return str(entry.get("message", "")) if isinstance(entry, dict) else ""
