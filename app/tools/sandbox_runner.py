"""The program inside the Python sandbox: it gives up root, limits itself, then runs the model's code.

`app.tools.sandbox` starts it as `python -I -c <this file's text> <settings as JSON>`, so it uses the
standard library only and never imports Hearth. In order:

1. When the settings name a user id (the parent runs as root), it drops to that user and group, which
   also drops every capability, so that `RLIMIT_NPROC` holds (the kernel does not apply it to root);
   then it enters its folder.
2. It imports numpy and matplotlib (Agg) while it waits, so a plot does not pay for them, then writes
   one NUL byte to stdout to say it is ready.
3. It reads `{"code": ..., "limits": {...}}` from stdin, sets its resource limits, and runs the code as
   `__main__`. A traceback is printed to stderr without the runner's own frame.
4. It saves every figure still open, and each one `plt.show()` is asked to show, as `fig-1.png`,
   `fig-2.png`, … in its working folder; figures the code saved itself are not saved twice.
"""

from __future__ import annotations

import contextlib
import io
import json
import linecache
import math
import os
import sys
import traceback
import weakref
from collections.abc import Iterator
from typing import Any

if sys.platform != "win32":
    import resource

FILENAME = "<model code>"
READY = b"\0"  # written to stdout once the imports are done; the parent reads it before the code's output
MIB = 1024 * 1024
OPEN_FILES = 256


def drop_privileges(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise SystemExit("sandbox: could not give up root")


def set_limits(limits: dict[str, Any]) -> None:
    """CPU seconds count from now: the time spent importing while waiting is not the code's."""
    if sys.platform == "win32":
        return
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = math.ceil(usage.ru_utime + usage.ru_stime + limits["cpu_s"])
    memory = limits["memory_mb"] * MIB
    file_size = limits["file_mb"] * MIB
    for which, soft, hard in (
        (resource.RLIMIT_CPU, cpu, cpu + 1),
        (resource.RLIMIT_AS, memory, memory),
        (resource.RLIMIT_FSIZE, file_size, file_size),
        (resource.RLIMIT_NOFILE, OPEN_FILES, OPEN_FILES),
        (resource.RLIMIT_CORE, 0, 0),
        (resource.RLIMIT_NPROC, limits["processes"], limits["processes"]),
    ):
        resource.setrlimit(which, (soft, hard))


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """Nothing printed meanwhile reaches the code's output: not by Python, a library or a subprocess (fc-list)."""
    saved = os.dup(1), os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


class Figures:
    """Saves matplotlib's figures as PNG files: on `plt.show()` (then closes them) and at the end."""

    def __init__(self) -> None:
        self.count = 0
        self.saved_by_code: weakref.WeakSet[Any] = weakref.WeakSet()
        try:
            with silenced():
                import matplotlib

                matplotlib.use("Agg")
                import matplotlib.pyplot as plt
                import numpy  # noqa: F401  (imported now so the code does not wait for it)
                from matplotlib.figure import Figure
        except ImportError:
            self.plt: Any = None
            return
        self.plt = plt
        savefig = Figure.savefig

        def savefig_noted(figure: Any, *args: Any, **kwargs: Any) -> Any:
            self.saved_by_code.add(figure)
            return savefig(figure, *args, **kwargs)

        def show(*args: Any, **kwargs: Any) -> None:
            self.save(close=True)

        Figure.savefig = savefig_noted  # type: ignore[method-assign,assignment]
        plt.show = show

    def save(self, close: bool = False) -> None:
        if self.plt is None:
            return
        for number in self.plt.get_fignums():
            figure = self.plt.figure(number)
            if figure not in self.saved_by_code:
                self.count += 1
                try:
                    figure.canvas.print_figure(f"fig-{self.count}.png", dpi=100)
                except Exception as exc:
                    print(f"[figure {self.count} could not be saved: {exc!r}]", file=sys.stderr)
            if close:
                self.plt.close(figure)


def exit_status(exc: SystemExit) -> int:
    """The status `sys.exit(...)` asked for; above 127 it would read as a signal, so it becomes 1."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code if 0 <= exc.code <= 127 else 1
    print(exc.code, file=sys.stderr)
    return 1


def main() -> int:
    settings = json.loads(sys.argv[1])
    if settings.get("uid") is not None:
        drop_privileges(settings["uid"], settings["gid"])
    os.chdir(settings["cwd"])  # after the switch: the folder belongs to the sandbox's user alone
    figures = Figures()
    os.write(1, READY)
    request = json.loads(sys.stdin.read() or "null")
    if request is None:  # the parent closed the pipe without a job: nothing to run
        return 0
    code = request["code"]
    sys.argv[:] = [FILENAME]
    set_limits(request["limits"])
    linecache.cache[FILENAME] = (len(code), None, code.splitlines(True), FILENAME)
    status = 0
    try:
        exec(compile(code, FILENAME, "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
    except SystemExit as exc:
        status = exit_status(exc)
    except BaseException as exc:
        traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next if exc.__traceback__ else None)
        status = 1
    try:
        figures.save()
    except BaseException as exc:
        print(f"[figures could not be saved: {exc!r}]", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
