"""The Python sandbox, with real processes: what the code may do, what it may not, and that nothing outlives a run.

These tests need bubblewrap to work on the machine (Debian: `apt install bubblewrap`): they fail, never skip,
without it. Small limits keep each run to a few seconds.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from PIL import Image

from app.errors import Cancelled
from app.tools.base import ToolRegistry
from app.tools.sandbox import (
    BUBBLEWRAP,
    NOBODY,
    PNG_SIGNATURE,
    RLIMITS_ONLY,
    WARM,
    Limits,
    PythonTool,
    SandboxResult,
    bubblewrap_works,
    describe,
    run_python,
)

LIMITS = Limits(cpu_s=2, wall_s=3, memory_mb=768, file_mb=16, processes=32, output_kb=16)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def nothing_left() -> Iterator[None]:
    """Every test ends with no process of a run still alive."""
    assert bubblewrap_works(), (
        "bubblewrap (bwrap) is missing or refused here; the sandbox tests need it: apt install bubblewrap"
    )
    before = _sandbox_processes()
    yield
    left = _sandbox_processes() - before
    assert not left, f"processes left after the run: {[_describe(pid) for pid, _ in left]}"


def run(
    code: str, limits: Limits = LIMITS, workdir: Path | None = None, cancel: threading.Event | None = None
) -> SandboxResult:
    result = run_python(code, limits=limits, workdir=workdir, cancel=cancel)
    assert result.isolation == BUBBLEWRAP
    return result


def test_printed_text_comes_back() -> None:
    result = run("print(6 * 7)\nimport os; print(os.getcwd(), os.path.expanduser('~'))")
    assert result.stdout == "42\n/sandbox /sandbox\n" and result.stderr == ""
    assert result.ok and result.exit_status == 0 and result.killed_by == "" and not result.timed_out


def test_a_plot_becomes_one_png_shown_to_the_user(tmp_path: Path) -> None:
    tool = PythonTool(workdir=tmp_path)
    code = (
        "import numpy as np\nimport matplotlib.pyplot as plt\n"
        "x = np.linspace(-2, 5, 200)\nplt.plot(x, x**2 - 3*x)\nplt.title('x² − 3x')\nplt.show()\n"
        "print('minimum near', x[np.argmin(x**2 - 3*x)].round(1))"
    )
    result = tool.run({"code": code}, threading.Event())
    assert result.ok, result.text
    assert result.text == "minimum near 1.5\n[1 figure shown to the user]"
    assert len(result.files) == 1 and result.files[0].parent == tmp_path
    assert result.files[0].read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(result.files[0]) as picture:
        assert picture.format == "PNG" and picture.size == (640, 480)


def test_a_figure_the_code_saved_itself_is_not_shown_twice(tmp_path: Path) -> None:
    code = "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.savefig('mine.png')\nplt.figure()\nplt.plot([2, 1])"
    result = run(code, workdir=tmp_path)
    assert [path.name for path in result.images] == ["mine.png", "fig-1.png"]


def test_an_endless_loop_is_stopped() -> None:
    started = time.monotonic()
    result = run("while True:\n    pass")
    assert result.timed_out or result.killed_by == "SIGXCPU", result
    assert not result.ok and time.monotonic() - started < LIMITS.wall_s + 2
    assert describe(result, LIMITS).endswith(("[timed out after 3 s]", "[stopped: CPU time limit of 2 s]"))


def test_asking_for_50_gb_fails_cleanly_and_the_next_run_works() -> None:
    result = run("data = bytearray(50 * 1024**3)")
    assert "MemoryError" in result.stderr or result.killed_by, result
    assert describe(result, LIMITS).endswith("[stopped: memory limit of 768 MB]")
    assert run("print('still here')").stdout == "still here\n"


def test_a_fork_bomb_is_contained() -> None:
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    started = time.monotonic()
    result = run(code)
    assert not result.ok and time.monotonic() - started < LIMITS.wall_s + 2


def test_spawning_many_programs_stops_at_the_process_limit() -> None:
    code = (
        "import subprocess\nchildren = []\ntry:\n"
        "    for _ in range(1000):\n        children.append(subprocess.Popen(['sleep', '100']))\n"
        "except OSError as exc:\n    print('stopped after', len(children), type(exc).__name__)"
    )
    result = run(code)
    assert result.stdout.startswith("stopped after") and "BlockingIOError" in result.stdout, result
    assert int(result.stdout.split()[2]) < LIMITS.processes
    assert not _processes_running(["sleep", "100"])


def test_writing_10_gb_stops_at_the_file_size_limit() -> None:
    code = "block = b'x' * 2**20\nwith open('big.bin', 'wb') as file:\n    for _ in range(10 * 1024):\n        file.write(block)"
    result = run(code)
    assert "File too large" in result.stderr, result
    assert describe(result, LIMITS).endswith("[stopped: file size limit of 16 MB]")


def test_printing_100_mb_returns_capped_output_quickly() -> None:
    started = time.monotonic()
    result = run("import sys\nline = 'y' * 999 + '\\n'\nfor _ in range(100_000):\n    sys.stdout.write(line)")
    assert result.ok and time.monotonic() - started < LIMITS.wall_s
    assert len(result.stdout) < LIMITS.output_kb * 1024 + 100
    assert f"[output cut: {100_000_000 - LIMITS.output_kb * 1024} bytes left out]" in result.stdout


def test_the_network_cannot_be_reached() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        result = run(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('connected')")
        listener.settimeout(0.2)
        with pytest.raises(TimeoutError):
            listener.accept()
    assert "connected" not in result.stdout and (
        "ConnectionRefusedError" in result.stderr or "OSError" in result.stderr
    )


def test_the_users_files_cannot_be_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / "notes.txt").write_text("canary-notes")
    (home / ".ssh" / "id_ed25519").write_text("canary-key")
    monkeypatch.setenv("HOME", str(home))
    paths = [home / "notes.txt", home / ".ssh" / "id_ed25519", Path.home() / ".ssh", Path("/etc/passwd")]
    code = (
        "import os\nfor path in %r:\n    try:\n"
        "        print('READ', path, os.listdir(path) if os.path.isdir(path) else open(path).read())\n"
        "    except OSError as exc:\n        print('DENIED', path, type(exc).__name__)\n"
        "print('~ is', os.path.expanduser('~'))"
    ) % [str(path) for path in paths]
    result = run(code)
    assert result.stdout.count("DENIED") == len(paths) and "canary" not in result.stdout, result.stdout
    assert "~ is /sandbox" in result.stdout


def test_files_outside_the_folder_cannot_be_deleted_or_written(tmp_path: Path) -> None:
    canary = tmp_path / "canary.txt"
    canary.write_text("keep me")
    outside = Path("/usr/hearth-sandbox-canary")
    code = (
        f"import os, shutil\nfor attempt in (lambda: os.remove({str(canary)!r}), lambda: shutil.rmtree({str(tmp_path)!r}),"
        f" lambda: open({str(outside)!r}, 'w').write('x')):\n"
        "    try:\n        attempt()\n        print('DONE')\n    except OSError as exc:\n        print('FAILED', type(exc).__name__)"
    )
    result = run(code)
    assert result.stdout.count("FAILED") == 3 and "DONE" not in result.stdout, result.stdout
    assert canary.read_text() == "keep me" and not outside.exists()


def test_a_missing_module_gives_a_clean_import_error() -> None:
    result = run("import numpy\nimport hearth_no_such_module")
    assert result.exit_status == 1 and result.killed_by == ""
    assert result.stderr == (
        "Traceback (most recent call last):\n"
        '  File "<model code>", line 2, in <module>\n'
        "    import hearth_no_such_module\n"
        "ModuleNotFoundError: No module named 'hearth_no_such_module'\n"
    )


def test_a_crash_of_the_interpreter_is_named() -> None:
    result = run("import ctypes\nctypes.string_at(0)")
    assert result.killed_by == "SIGSEGV" and result.exit_status == -11 and not result.timed_out
    assert describe(result, LIMITS) == "[the Python process crashed: SIGSEGV]"


def test_a_background_process_ends_with_the_run() -> None:
    started = time.monotonic()
    result = run("import subprocess\nsubprocess.Popen(['sleep', '100'])\nprint('started')")
    assert result.stdout == "started\n" and time.monotonic() - started < 2
    assert not _processes_running(["sleep", "100"])


def test_cancel_stops_a_long_run_promptly() -> None:
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    result = run("import time\ntime.sleep(60)", limits=Limits(wall_s=30), cancel=cancel)
    assert result.cancelled and not result.ok and time.monotonic() - started < 2
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    with pytest.raises(Cancelled):
        PythonTool(limits=Limits(wall_s=30)).run({"code": "import time\ntime.sleep(60)"}, cancel)


def test_the_tool_meets_the_contract_and_reports_errors() -> None:
    tool = PythonTool(limits=LIMITS)
    registry = ToolRegistry()
    registry.register(tool)
    assert registry.check_arguments("python", '{"code": "print(1)"}') == {"code": "print(1)"}
    assert tool.name == "python" and tool.has_effects is False and tool.timeout_s > LIMITS.wall_s
    assert "matplotlib" in tool.description
    failed = tool.run({"code": "print('before')\n1 / 0"}, threading.Event())
    assert not failed.ok and failed.text.startswith("before\n[stderr]\nTraceback")
    assert failed.text.endswith("ZeroDivisionError: division by zero")
    slow = tool.run({"code": "import time\ntime.sleep(10)"}, threading.Event())
    assert not slow.ok and slow.text == "[timed out after 3 s]"
    assert tool.run({"code": "x = 1"}, threading.Event()).text == "[no output]"


def test_a_dead_spare_is_replaced() -> None:
    run("pass")
    deadline = time.monotonic() + 10
    while not WARM.pids() and time.monotonic() < deadline:  # the run's replacement is being started
        threading.Event().wait(0.01)
    spares = [psutil.Process(pid) for pid in WARM.pids()]
    assert spares, "no spare runner was started after the run"
    spares += [child for spare in spares for child in spare.children(recursive=True)]
    for spare in spares:
        spare.kill()
    psutil.wait_procs(spares, timeout=5)
    assert run("print('fresh')").stdout == "fresh\n"


def test_without_bubblewrap_the_limits_still_hold() -> None:
    result = run_python(
        "import subprocess\nsubprocess.Popen(['sleep', '100'])\nprint('rlimits')", limits=LIMITS, bubblewrap=False
    )
    assert result.isolation == RLIMITS_ONLY and result.stdout == "rlimits\n"
    assert not _processes_running(["sleep", "100"])
    endless = run_python("while True:\n    pass", limits=LIMITS, bubblewrap=False)
    assert endless.timed_out or endless.killed_by == "SIGXCPU", endless


def _sandbox_processes() -> set[tuple[int, float]]:
    """Live processes a run could leave: this process's descendants, the sandbox user's orphans, but no spare."""
    candidates = psutil.Process().children(recursive=True)
    if os.geteuid() == 0:  # and what the sandbox user left to init (not the sandboxes of another test run)
        candidates += [process for process in psutil.process_iter() if _sandbox_orphan(process)]
    spares: set[int] = set()  # listed after the candidates, so that it holds every spare's process among them
    for pid in WARM.pids():
        try:
            spares |= {pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))}
        except psutil.Error:
            pass
    found = set()
    for process in candidates:
        try:
            if process.pid not in spares and process.status() != psutil.STATUS_ZOMBIE:
                found.add((process.pid, process.create_time()))
        except psutil.Error:
            pass
    return found


def _sandbox_orphan(process: psutil.Process) -> bool:
    try:
        return bool(process.uids().real == NOBODY and process.ppid() == 1)
    except psutil.Error:
        return False


def _processes_running(command: list[str]) -> bool:
    for process in psutil.process_iter():
        try:
            if process.cmdline() == command and process.status() != psutil.STATUS_ZOMBIE:
                return True
        except psutil.Error:
            pass
    return False


def _describe(pid: int) -> str:
    try:
        return f"{pid} {psutil.Process(pid).cmdline()}"
    except psutil.Error:
        return f"{pid} (gone)"
