"""A sandbox for Python code a language model writes, and the `python` tool built on it.

Each run gets a fresh process (`python -I`, a cleared environment, a new session) in a fresh temporary
folder, limited by `Limits`; whatever it started is killed when it ends, and the folder is deleted,
except the PNG pictures it made, which are copied out first. `sandbox_runner.py` is the program inside:
it limits itself and then runs the code. One runner per kind of isolation waits ready, numpy and
matplotlib already imported (`WarmSandbox`), so a plot does not pay for those imports each time.

What holds, checked on Debian 12 (Linux 6.x, bubblewrap 0.8), as root and with bubblewrap:

- **Linux with bubblewrap** (`isolation == "bubblewrap"`). The code sees `/usr` and the interpreter's
  folders read-only, a small private `/tmp`, and its own folder as `/sandbox`; not `/home`, `/root`,
  the rest of `/etc`, or any file of the user's. It has no network (a network namespace holding only
  loopback) and its own process namespace, so every process it starts ends with the run. When Hearth
  runs as root, bubblewrap runs without a user namespace and the runner switches to `nobody` (65534)
  before anything else, dropping every capability: the kernel never applies `RLIMIT_NPROC` to root,
  and so would not stop a fork bomb. As another user the code runs as that user inside a user
  namespace, where the kernel (5.14 and later) counts only the sandbox's own processes against
  `RLIMIT_NPROC` (checked by running bubblewrap as `nobody` with 44 processes of its own outside: the
  code still started 30 of its 32).
- **Linux without bubblewrap**, or where it is refused (some Ubuntu releases forbid unprivileged user
  namespaces): `isolation == "rlimits only"`. The same limits, environment and folder hold, and the
  session's processes are killed at the end, but the code can read and write what the user can, can
  reach the network, and a process that starts a session of its own can outlive the run. As root,
  `RLIMIT_NPROC` holds only when everyone can read the interpreter (the runner then switches to
  `nobody`). `PythonTool.has_effects` is then True, so the user is asked before each run.
- **macOS** gets the limits `resource` offers and the time limits; **Windows** the time limits only.
  Neither is isolated: the user is asked before each run there too.

Not limited anywhere: the total size of the files the code writes into its folder (each file is
limited; the wall-clock limit bounds how much can be written).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import logging
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import psutil

from app.errors import Cancelled
from app.tools.base import ToolError, ToolResult

log = logging.getLogger("hearth.tools.sandbox")

BUBBLEWRAP = "bubblewrap"
RLIMITS_ONLY = "rlimits only"
SANDBOX_DIR = "/sandbox"  # where the run's folder appears inside bubblewrap
NOBODY = 65534
TMP_BYTES = 64 * 1024 * 1024  # the private /tmp inside bubblewrap lives in memory: keep it small
MAX_IMAGES = 20
START_S = 60  # how long a runner may take to import numpy and matplotlib before its time starts anyway
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
READY = b"\0"  # what the runner writes to stdout once it has imported numpy and matplotlib
RUNNER = Path(__file__).with_name("sandbox_runner.py")


@dataclass(frozen=True)
class Limits:
    """What one run may use. `memory_mb` limits the address space; `file_mb` each file it writes;
    `processes` its processes and threads; `output_kb` each of stdout and stderr as kept."""

    cpu_s: float = 10
    wall_s: float = 20
    memory_mb: int = 1024
    file_mb: int = 64
    processes: int = 64
    output_kb: int = 64

    def __post_init__(self) -> None:
        bad = [name for name, value in asdict(self).items() if value <= 0]
        if bad:
            raise ValueError(f"sandbox limits must be positive: {', '.join(bad)}")


DEFAULT_LIMITS = Limits()
TOOL_LIMITS = Limits(output_kb=16)  # what the model reads fits in a small context


@dataclass(frozen=True)
class SandboxResult:
    """How a run ended. `exit_status` is -N when signal N ended it (`killed_by` names it: "SIGSEGV");
    `images` are the PNG files it made, copied out of its folder; `seconds` the wall-clock time."""

    stdout: str
    stderr: str
    exit_status: int
    timed_out: bool
    killed_by: str
    images: tuple[Path, ...]
    seconds: float
    isolation: str
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_status == 0 and not self.timed_out and not self.cancelled


def run_python(
    code: str,
    *,
    workdir: Path | None = None,
    limits: Limits = DEFAULT_LIMITS,
    cancel: threading.Event | None = None,
    bubblewrap: bool | None = None,
) -> SandboxResult:
    """Run `code` in the sandbox and wait for it; `cancel` stops it at once.

    The pictures it made are copied into `workdir` (created when missing), or into a new temporary
    folder the caller then owns; a cancelled run's are dropped. `bubblewrap` None uses bubblewrap when it works here; False runs
    with resource limits only; True requires bubblewrap. Raises ToolError when no process can start."""
    isolated = bubblewrap_works() if bubblewrap is None else bubblewrap
    if isolated and not bubblewrap_works():
        raise ToolError("Bubblewrap does not work on this machine.", "Install bubblewrap, or run without it.")
    runner = WARM.take(isolated, cancel)
    try:
        outcome = runner.run(code, limits, cancel)
        images = () if outcome["cancelled"] else _copy_images(runner.folder, workdir, limits)
    finally:
        runner.discard()
        WARM.refill(isolated)
    return SandboxResult(**outcome, images=images, isolation=BUBBLEWRAP if isolated else RLIMITS_ONLY)


@functools.cache
def bubblewrap_works() -> bool:
    """Whether bubblewrap is installed and may build the sandbox here (asked once per process)."""
    if sys.platform != "linux" or shutil.which("bwrap") is None:
        return False
    with tempfile.TemporaryDirectory(prefix="hearth-bwrap-probe-") as folder:
        command = [*_bubblewrap_arguments(Path(folder)), sys.executable, "-I", "-c", "pass"]
        try:
            probe = subprocess.run(command, capture_output=True, timeout=30, env=_environment(SANDBOX_DIR))
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("bubblewrap cannot run: %s", exc)
            return False
    if probe.returncode != 0:
        log.warning("bubblewrap refuses to run here: %s", probe.stderr.decode(errors="replace").strip())
    return probe.returncode == 0


class PythonTool:
    """The `python` tool: runs the model's code in the sandbox; figures go to the user as pictures."""

    name = "python"
    description = (
        "Run Python 3 code in a sandbox and read what it prints. numpy and matplotlib are available; there is no "
        "network and no access to the user's files, and nothing is kept between calls. Print the results you need; "
        "matplotlib figures are shown to the user."
    )
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {"code": {"type": "string", "description": "A complete Python 3 program."}},
        "required": ["code"],
        "additionalProperties": False,
    }

    def __init__(self, limits: Limits = TOOL_LIMITS, workdir: Path | None = None) -> None:
        self.limits = limits
        self.workdir = workdir
        self.isolated = bubblewrap_works()
        self.has_effects = not self.isolated
        # A margin over the run's own limit, so that the sandbox's note, not the caller's, says it timed out.
        self.timeout_s = limits.wall_s + 5

    def run(self, arguments: dict[str, Any], cancel: threading.Event) -> ToolResult:
        code = arguments.get("code")
        if not isinstance(code, str) or not code.strip():
            raise ToolError("The argument 'code' is empty.", "Send the Python program to run as 'code'.")
        result = run_python(code, workdir=self.workdir, limits=self.limits, cancel=cancel, bubblewrap=self.isolated)
        if result.cancelled:
            raise Cancelled()
        return ToolResult(text=describe(result, self.limits), files=result.images, ok=result.ok, seconds=result.seconds)


def describe(result: SandboxResult, limits: Limits) -> str:
    """A run as the model reads it: what it printed, then its errors, then notes on how it ended."""
    parts = [result.stdout.rstrip("\n")] if result.stdout.strip() else []
    if result.stderr.strip():
        parts.append(("[stderr]\n" if parts else "") + result.stderr.rstrip("\n"))
    last_line = result.stderr.rstrip().rsplit("\n", 1)[-1]
    if result.cancelled:
        parts.append("[stopped by the user]")
    elif result.timed_out:
        parts.append(f"[timed out after {limits.wall_s:g} s]")
    elif result.killed_by == "SIGXCPU":
        parts.append(f"[stopped: CPU time limit of {limits.cpu_s:g} s]")
    elif result.killed_by == "SIGKILL":
        parts.append("[stopped: killed (SIGKILL): its CPU time or the machine's memory ran out]")
    elif result.killed_by:
        parts.append(f"[the Python process crashed: {result.killed_by}]")
    elif "MemoryError" in last_line:
        parts.append(f"[stopped: memory limit of {limits.memory_mb} MB]")
    elif "File too large" in last_line:
        parts.append(f"[stopped: file size limit of {limits.file_mb} MB]")
    elif "Resource temporarily unavailable" in last_line:
        parts.append(f"[stopped: limit of {limits.processes} processes]")
    elif result.exit_status != 0 and not result.stderr.strip():
        parts.append(f"[exit status {result.exit_status}]")
    if result.images:
        count = len(result.images)
        parts.append(f"[{count} figure{'s' if count > 1 else ''} shown to the user]")
    return "\n".join(parts) if parts else "[no output]"


class _Runner:
    """One started `sandbox_runner.py`, waiting for its code on stdin, and the folder it runs in."""

    def __init__(self, isolated: bool) -> None:
        self.isolated = isolated
        self.folder = Path(tempfile.mkdtemp(prefix="hearth-python-"))
        ids = _unprivileged_ids(isolated)
        if ids is not None:
            os.chown(self.folder, *ids)
        self.captures: tuple[_Capture, ...] = ()
        self._ready = False
        home = SANDBOX_DIR if isolated else str(self.folder)
        settings = {"uid": ids and ids[0], "gid": ids and ids[1], "cwd": home}
        command = [sys.executable, "-I", "-c", _runner_source(), json.dumps(settings)]
        if isolated:
            command = _bubblewrap_arguments(self.folder) + command
        try:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=self.folder,
                env=_environment(home),
                start_new_session=True,
            )
        except OSError as exc:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise ToolError(
                f"The Python sandbox could not start: {exc}.", "Check that Hearth is installed fully."
            ) from exc

    def run(self, code: str, limits: Limits, cancel: threading.Event | None) -> dict[str, Any]:
        assert self.process.stdin and self.process.stdout and self.process.stderr
        pause = cancel if cancel is not None else threading.Event()
        self.ready(pause)
        started = time.monotonic()
        cap = limits.output_kb * 1024
        stdout, stderr = self.captures = _Capture(self.process.stdout, cap), _Capture(self.process.stderr, cap)
        job = {"code": code, "limits": {key: value for key, value in asdict(limits).items() if key != "wall_s"}}
        if not pause.is_set():
            threading.Thread(target=_send, args=(self.process.stdin, json.dumps(job).encode()), daemon=True).start()
        timed_out = cancelled = False
        try:
            while not _exited(self.process):
                if pause.is_set():
                    cancelled = True
                    break
                if time.monotonic() - started >= limits.wall_s:
                    timed_out = True
                    break
                pause.wait(0.02)
        finally:
            _end(self.process, waits=self.isolated)
        status = self.process.returncode
        if self.isolated and 128 < status < 128 + signal.NSIG:
            status = 128 - status  # bubblewrap reports a signal N that ended the code as the exit status 128 + N
        return {
            "stdout": stdout.text(),
            "stderr": stderr.text(),
            "exit_status": status,
            "timed_out": timed_out,
            "cancelled": cancelled,
            "killed_by": _signal_name(-status) if status < 0 else "",
            "seconds": time.monotonic() - started,
        }

    def ready(self, pause: threading.Event | None) -> bool:
        """Waits until the runner waits for code: its ready byte came and nothing since (its output's end).

        False when it ended, on `pause`, or after START_S."""
        assert self.process.stdout
        fd = self.process.stdout.fileno()
        if not self._ready:
            deadline = time.monotonic() + START_S
            while os.name == "posix" and not select.select([fd], [], [], 0.02)[0]:
                if (pause is not None and pause.is_set()) or time.monotonic() > deadline:
                    return False
            self._ready = os.read(fd, 1) == READY
        return self._ready and (os.name != "posix" or not select.select([fd], [], [], 0)[0])

    def discard(self) -> None:
        """Ends the process (a spare that never ran) and deletes the folder."""
        if self.process.returncode is None:
            _end(self.process, waits=self.isolated)
        pipes = [self.process.stdin]
        if not any(capture.reading() for capture in self.captures):  # never close a pipe a thread still reads
            pipes += [self.process.stdout, self.process.stderr]
        for pipe in pipes:
            with contextlib.suppress(OSError):
                if pipe is not None:
                    pipe.close()
        shutil.rmtree(self.folder, ignore_errors=True)


class WarmSandbox:
    """Keeps one runner started ahead for each kind of isolation; each runs one program only.

    Runners are started from one long-lived thread: bubblewrap's `--die-with-parent` ends a sandbox
    when the *thread* that started it ends, which would kill spares started from short-lived threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spares: dict[bool, _Runner] = {}
        self._starter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hearth-sandbox-start")

    def take(self, isolated: bool, cancel: threading.Event | None = None) -> _Runner:
        """The spare runner once it is ready, or a new one when there is none or it died."""
        with self._lock:
            spare = self._spares.pop(isolated, None)
        if spare is not None and (spare.ready(cancel) or (cancel is not None and cancel.is_set())):
            return spare
        if spare is not None:
            spare.discard()
        return self._starter.submit(_Runner, isolated).result()

    def refill(self, isolated: bool) -> None:
        """Starts the next spare; it imports numpy and matplotlib while the caller goes on."""
        try:
            spare = self._starter.submit(_Runner, isolated).result()
        except (ToolError, RuntimeError) as exc:  # RuntimeError: the interpreter is shutting down
            log.warning("no spare sandbox started: %s", exc)
            return
        with self._lock:
            previous, self._spares[isolated] = self._spares.get(isolated), spare
        if previous is not None:
            previous.discard()

    def close(self) -> None:
        with self._lock:
            spares, self._spares = list(self._spares.values()), {}
        for spare in spares:
            spare.discard()

    def pids(self) -> list[int]:
        """The process ids of the spares (the outer process of each)."""
        with self._lock:
            return [spare.process.pid for spare in self._spares.values()]


WARM = WarmSandbox()
atexit.register(WARM.close)


class _Capture:
    """Reads a pipe to its end in a thread of its own, keeping its first and last `cap / 2` bytes."""

    def __init__(self, pipe: IO[bytes], cap: int) -> None:
        self._pipe = pipe
        self._half = cap // 2
        self._head = bytearray()
        self._tail = bytearray()
        self._total = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True, name="hearth-sandbox-output")
        self._thread.start()

    def _read(self) -> None:
        fd = self._pipe.fileno()
        while chunk := os.read(fd, 1 << 16):
            with self._lock:
                self._total += len(chunk)
                room = self._half - len(self._head)
                self._head += chunk[:room] if room > 0 else b""
                self._tail += chunk[max(room, 0) :]
                del self._tail[: max(0, len(self._tail) - self._half)]

    def reading(self) -> bool:
        return self._thread.is_alive()

    def text(self) -> str:
        # Every process holding the pipe is gone by now; a wait bounds the rlimits-only case of one that escaped.
        self._thread.join(timeout=2)
        with self._lock:
            left_out = self._total - len(self._head) - len(self._tail)
            note = f"\n[output cut: {left_out} bytes left out]\n" if left_out else ""
            return (bytes(self._head) + note.encode() + bytes(self._tail)).decode("utf-8", errors="replace")


def _send(pipe: IO[bytes], data: bytes) -> None:
    with contextlib.suppress(OSError):  # a runner that died cannot be sent anything: its exit says why
        pipe.write(data)
        pipe.close()


def _exited(process: subprocess.Popen[bytes]) -> bool:
    """Whether the process ended, leaving it unreaped: its id then still names its group and session."""
    if not hasattr(os, "waitid"):
        return process.poll() is not None
    return os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _end(process: subprocess.Popen[bytes], waits: bool = False) -> None:
    """Kills the process, its group, its session and its descendants, and waits until none is left.

    `waits`: the process waits for its children and exits when they end (bubblewrap). Killed first,
    a bubblewrap would leave its child to an init process that, in some containers, never reaps it."""
    if os.name != "posix":
        process.kill()
        process.wait()
        return
    try:
        started = psutil.Process(process.pid).children(recursive=True)
    except psutil.Error:
        started = []
    if started and waits:  # bubblewrap: end what it runs first, so that it reaps its own child and exits itself
        for child in started:
            with contextlib.suppress(psutil.Error):
                child.kill()
        deadline = time.monotonic() + 1
        while not _exited(process) and time.monotonic() < deadline:
            time.sleep(0.005)
    deadline = time.monotonic() + 5
    while True:
        with contextlib.suppress(OSError):
            os.killpg(process.pid, signal.SIGKILL)
        left = [child for child in started + _session(process.pid) if _running(child)]
        for child in left:
            with contextlib.suppress(psutil.Error):
                child.kill()
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    process.wait()
    if left:
        log.warning("sandbox processes still running after 5 s: %s", [child.pid for child in left])


def _session(sid: int) -> list[psutil.Process]:
    """The processes of session `sid` other than its leader."""
    members = []
    for pid in psutil.pids():
        with contextlib.suppress(OSError, psutil.Error):
            if pid != sid and os.getsid(pid) == sid:
                members.append(psutil.Process(pid))
    return members


def _running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _copy_images(folder: Path, workdir: Path | None, limits: Limits) -> tuple[Path, ...]:
    """Copies the PNG files the run left in its folder (regular files with a PNG signature) out of it."""
    found: list[tuple[int, str, Path]] = []
    for path in folder.glob("*.png"):
        info = path.lstat()
        if stat.S_ISREG(info.st_mode) and info.st_size <= limits.file_mb * 1024 * 1024:
            with path.open("rb") as file:
                if file.read(len(PNG_SIGNATURE)) == PNG_SIGNATURE:
                    found.append((info.st_mtime_ns, path.name, path))
    if not found:
        return ()
    destination = workdir if workdir is not None else Path(tempfile.mkdtemp(prefix="hearth-figures-"))
    destination.mkdir(parents=True, exist_ok=True)
    copied = []
    for _, name, path in sorted(found)[:MAX_IMAGES]:
        target = destination / name
        number = 1
        while target.exists():
            number += 1
            target = destination / f"{Path(name).stem}-{number}.png"
        shutil.copyfile(path, target)  # a copy: the file is then the caller's, not the sandbox user's
        copied.append(target)
    return tuple(copied)


def _environment(home: str) -> dict[str, str]:
    """All the environment the code gets; one thread for numerical libraries, as it has few processes."""
    return {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": home,
        "LANG": "C.UTF-8",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": f"{home}/.matplotlib",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
    }


@functools.cache
def _runner_source() -> str:
    return RUNNER.read_text(encoding="utf-8")


def _unprivileged_ids(isolated: bool) -> tuple[int, int] | None:
    """The user and group a root parent's runner switches to, so that RLIMIT_NPROC applies; None to stay."""
    if os.name != "posix" or os.geteuid() != 0:
        return None
    if isolated or all(_everyone_can_read(Path(folder)) for folder in _python_folders()):
        return NOBODY, NOBODY
    return None


def _everyone_can_read(folder: Path) -> bool:
    return all(path.stat().st_mode & 0o005 == 0o005 for path in (folder, *folder.parents))


def _python_folders() -> list[str]:
    """The folders the interpreter and its packages live in, outermost first, without ones inside others."""
    folders: list[str] = []
    candidates = {sys.base_prefix, sys.prefix, str(Path(os.path.realpath(sys.executable)).parent.parent)}
    for folder in sorted(os.path.realpath(path) for path in candidates):
        if not any(Path(folder).is_relative_to(done) for done in ["/usr", *folders]):
            folders.append(folder)
    return folders


def _bubblewrap_arguments(folder: Path) -> list[str]:
    """The bubblewrap command line that puts `folder` at /sandbox in an otherwise bare system."""
    arguments = [shutil.which("bwrap") or "bwrap", "--die-with-parent", "--new-session"]
    if os.geteuid() == 0:  # no user namespace: the runner switches to nobody itself, keeping only what that needs
        arguments += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
        arguments += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        arguments += ["--unshare-all"]
    # /tmp first: a later bind below /tmp (an interpreter installed there) must not be hidden by it.
    arguments += ["--perms", "1777", "--size", str(TMP_BYTES), "--tmpfs", "/tmp", "--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64"):
        if os.path.islink(top):
            arguments += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            arguments += ["--ro-bind", top, top]
    for shared in ("/etc/ld.so.cache", "/etc/fonts"):  # the dynamic linker's cache; fonts for matplotlib
        if os.path.exists(shared):
            arguments += ["--ro-bind", shared, shared]
    made = {"/", "/tmp", "/usr"}
    for python in _python_folders():
        for parent in reversed(Path(python).parents):  # bubblewrap would make missing parents readable by root only
            if str(parent) not in made:
                arguments += ["--dir", str(parent)]
                made.add(str(parent))
        arguments += ["--ro-bind", python, python]
    arguments += ["--bind", str(folder), SANDBOX_DIR, "--proc", "/proc", "--dev", "/dev"]
    return arguments
