"""Measures how long the GUI event loop can stall while a reply streams into the real window.

A precise 5 ms timer runs on the GUI thread; the longest gap between two of its ticks during
streaming is the longest time the window could not react to the user.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

TICK_MS = 5
STORY = "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle."


def measure_stall(model_path: Path, folder: Path, max_tokens: int = 200) -> dict[str, float]:
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QElapsedTimer, Qt, QTimer
    from PySide6.QtWidgets import QApplication

    from app.engines.llama_cpp_engine import LlamaCppEngine
    from app.paths import DataPaths
    from app.runtime import Profile
    from app.settings import GenerationSettings, Settings, physical_cores
    from app.ui.chat_controller import ChatController
    from app.ui.main_window import MainWindow
    from app.ui.tasks import Runner

    app = QApplication.instance() or QApplication([])
    paths = DataPaths(folder / "stall-home")
    settings = Settings(n_ctx=2048, generation=GenerationSettings(temperature=0.8, max_tokens=max_tokens, seed=11))

    def open_profile() -> Profile:
        profile = Profile.open(paths)
        profile.settings = settings
        return profile

    def load(profile: Profile, progress: Any) -> LlamaCppEngine:
        return LlamaCppEngine(model_path, model_id="bench", n_ctx=2048, n_threads=physical_cores())

    controller = ChatController(Runner(), open_profile, load)
    window = MainWindow(controller)
    window.show()
    gaps: list[float] = []
    clock = QElapsedTimer()
    state = {"streaming": False, "tokens": 0, "last": 0.0}

    def tick() -> None:
        now = clock.nsecsElapsed() / 1e6
        if state["streaming"]:
            gaps.append(now - state["last"])
        state["last"] = now

    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.setInterval(TICK_MS)
    timer.timeout.connect(tick)

    def started(_: object) -> None:
        state["streaming"] = True
        state["last"] = clock.nsecsElapsed() / 1e6

    def delta(_: str) -> None:
        state["tokens"] += 1

    controller.replyStarted.connect(started)
    controller.replyDelta.connect(delta)
    controller.replyFinished.connect(lambda _: (state.update(streaming=False), app.quit()))
    controller.notice.connect(lambda message, hint: app.quit())
    controller.engineReady.connect(lambda _: controller.send(STORY))
    clock.start()
    timer.start()
    controller.start()
    QTimer.singleShot(300_000, app.quit)  # a safety net; a reply normally ends long before
    app.exec()
    timer.stop()
    window.close()
    if not gaps:
        raise RuntimeError("no reply streamed into the window")
    return {"stall_ms": max(gaps), "median_tick_ms": sorted(gaps)[len(gaps) // 2], "tokens": float(state["tokens"])}
