"""`hearth --smoke-test`: the real window answers one prompt, prints one JSON line and quits.

It checks a build end to end, a bundle above all: the window comes up, QtMultimedia lists the
sound devices, the default model loads (from the bundle on a first launch), the prompt goes in
through the message box as a person's would, and the reply is stored and shown. Success prints

    {"ok": true, "window_s": …, "model_s": …, "reply_s": …, "reply": "…", "model": "…", "backend": "…",
     "engine_process": [the command line of the model's own process],
     "audio": {"inputs": N, "outputs": N}}

on stdout and exits 0. Any failure — a notice, a model that does not load, no reply in time —
prints `{"ok": false, "error": …}` there, `error:`/`hint:` lines on stderr, and exits 1. Times are
seconds since the process started. A watchdog ends the process if even quitting hangs.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QApplication

from app.ui.main_window import MainWindow

PROMPT = "Say hello in one short sentence."
TIMEOUT_S = 120.0
QUIT_GRACE_S = 30.0  # after the verdict, how long closing the window and the engine may take


def since_start() -> float:
    """Seconds since this process started, the bootloader of a bundle included."""
    try:  # Linux: the kernel's start time in clock ticks, exact to 10 ms
        with open("/proc/self/stat", encoding="ascii") as stat:
            start_ticks = int(stat.read().rpartition(")")[2].split()[19])
        return time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, AttributeError, ValueError, IndexError):
        import psutil  # elsewhere; its start time may be rounded to the second on some systems

        return time.time() - psutil.Process().create_time()


class SmokeTest(QObject):
    """Drives one prompt through `window` and ends the event loop with 0 (answered) or 1."""

    def __init__(self, app: QApplication, window: MainWindow, timeout_s: float = TIMEOUT_S) -> None:
        super().__init__(window)
        self.app, self.window, self.timeout_s = app, window, timeout_s
        self.times: dict[str, float] = {}
        self.info: Any = None
        self.audio: dict[str, int] = {}
        self._done = False
        controller = window.controller
        window.shown.connect(self._on_shown)
        controller.engineReady.connect(self._on_engine)
        controller.engineFailed.connect(self._fail)
        controller.notice.connect(self._fail)
        controller.replyFinished.connect(self._on_reply)
        QTimer.singleShot(int(timeout_s * 1000), lambda: self._fail(f"no reply within {timeout_s:g} s"))
        _watchdog(timeout_s + QUIT_GRACE_S)  # even when the event loop itself is stuck

    def _on_shown(self) -> None:
        if "window_s" in self.times:
            return
        self.times["window_s"] = since_start()
        self.audio = audio_device_counts()  # after the window: QtMultimedia is never on the launch path

    def _on_engine(self, info: Any) -> None:
        self.info = info
        self.times["model_s"] = since_start()
        composer = self.window.composer
        composer.editor.setPlainText(PROMPT)
        composer.send_button.click()

    def _on_reply(self, message: Any) -> None:
        reply = message.content.strip()
        if not reply:
            self._fail("the model's reply is empty")
            return
        self.times["reply_s"] = since_start()
        model = {"model": self.info.model_id, "backend": self.info.backend} if self.info else {}
        model["engine_process"] = _engine_process(self.window)
        times = {k: round(v, 3) for k, v in self.times.items()}
        self._finish(0, {"ok": True, **times, "reply": reply, **model, "audio": self.audio})

    def _fail(self, message: str, hint: str = "") -> None:
        if self._done:
            return
        print(f"error: smoke test failed: {message}", file=sys.stderr)
        if hint:
            print(f"hint: {hint}", file=sys.stderr)
        self._finish(1, {"ok": False, "error": message, **{k: round(v, 3) for k, v in self.times.items()}})

    def _finish(self, code: int, result: dict[str, Any]) -> None:
        if self._done:
            return
        self._done = True
        print(json.dumps(result), flush=True)
        _watchdog(QUIT_GRACE_S)
        self.app.exit(code)


def audio_device_counts() -> dict[str, int]:
    """How many microphones and speakers QtMultimedia sees (none without a sound server, and no error)."""
    from PySide6.QtMultimedia import QMediaDevices

    return {"inputs": len(QMediaDevices.audioInputs()), "outputs": len(QMediaDevices.audioOutputs())}


def _watchdog(seconds: float) -> None:
    """End the process if quitting takes longer than `seconds` (a stuck thread must not hang a check)."""

    def expire() -> None:
        print(f"error: smoke test: Hearth did not finish within {seconds:g} s", file=sys.stderr, flush=True)
        os._exit(3)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()


def _engine_process(window: Any) -> list[str]:
    """The command line of the process the model runs in ([] when it runs in this one)."""
    import psutil

    session = window.controller.session
    pid = getattr(session.engine, "pid", None) if session is not None else None
    if pid is None:
        return []
    try:
        return [Path(part).name if n == 0 else part for n, part in enumerate(psutil.Process(pid).cmdline())]
    except psutil.Error:
        return []
