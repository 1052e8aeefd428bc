"""The built app's figures for `hearth bench`: size on disk and launch-to-window time.

They measure the one-folder bundle that `packaging/build.py` leaves in `build/bundle/hearth/` of a
checkout, as it is; nothing is built here. Without a bundle there is nothing to measure, and the
benchmark says so on stderr instead of printing a figure.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from app.bench.common import Figure

BUNDLE = Path(__file__).resolve().parents[2] / "build" / "bundle" / "hearth"
SIZE_TARGET_MB = 1000.0
LAUNCH_TARGET_S = 1.5


def bundle_program(bundle: Path = BUNDLE) -> Path:
    return bundle / ("hearth.exe" if sys.platform == "win32" else "hearth")


def bench_bundle(folder: Path, bundle: Path = BUNDLE, runs: int = 5) -> list[Figure]:

    program = bundle_program(bundle)
    if not program.is_file():
        print(
            f"bundle: not measured: no built app at {program} (build it with `python packaging/build.py`)",
            file=sys.stderr,
        )
        return []
    size_mb = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file() and not p.is_symlink()) / 1e6
    times = [_launch_to_window(program, folder / f"bundle-home-{n}") for n in range(runs)]
    return [
        Figure(
            "bundle_size_mb",
            size_mb,
            SIZE_TARGET_MB,
            "lower",
            "MB",
            {"files": float(sum(1 for _ in bundle.rglob("*")))},
        ),
        Figure(
            "bundle_launch_s",
            statistics.median(times),
            LAUNCH_TARGET_S,
            "lower",
            "s",
            {"best_s": min(times), "worst_s": max(times)},
        ),
    ]


def _launch_to_window(program: Path, home: Path) -> float:
    """Seconds from starting the built program (a first launch: an empty data folder) to its window shown."""
    env = dict(os.environ, HEARTH_HOME=str(home), HEARTH_EXIT_AFTER_SHOW="1")
    if not env.get("DISPLAY") and not env.get("WAYLAND_DISPLAY"):
        env["QT_QPA_PLATFORM"] = "offscreen"
    started = time.perf_counter()
    proc = subprocess.Popen([str(program)], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    shown = next((time.perf_counter() - started for line in proc.stdout if line.startswith("window-shown")), None)
    proc.wait(timeout=60)
    if shown is None:
        raise RuntimeError(f"the built app {program} never reported its window shown (exit status {proc.returncode})")
    return shown
