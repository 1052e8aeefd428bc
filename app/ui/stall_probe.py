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


class _TickRecorder:
    """Records the gaps between timer ticks while a reply streams."""

    def __init__(self) -> None:
        from PySide6.QtCore import QElapsedTimer, Qt, QTimer

        self.gaps: list[float] = []
        self.tokens = 0
        self.streaming = False
        self._clock = QElapsedTimer()
        self._clock.start()
        self._last = 0.0
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self._tick)

    def _now_ms(self) -> float:
        return self._clock.nsecsElapsed() / 1e6

    def _tick(self) -> None:
        now = self._now_ms()
        if self.streaming:
            self.gaps.append(now - self._last)
        self._last = now

    def started(self, _: object) -> None:
        self.streaming, self._last = True, self._now_ms()

    def finished(self, _: object) -> None:
        self.streaming = False

    def delta(self, _: str) -> None:
        self.tokens += 1

    def result(self) -> dict[str, float]:
        if not self.gaps:
            raise RuntimeError("no reply streamed into the window")
        ordered = sorted(self.gaps)
        return {"stall_ms": ordered[-1], "median_tick_ms": ordered[len(ordered) // 2], "tokens": float(self.tokens)}


class _Loop:
    """An event loop of the measure's own, with its own deadline.

    Only this measure's signals end it: a deadline or a quit left behind by an earlier measure in
    the same process (the benchmark runs several) cannot end a later one early."""

    def __init__(self, timeout_ms: int) -> None:
        from PySide6.QtCore import QEventLoop, QTimer

        self.loop = QEventLoop()
        self.deadline = QTimer()
        self.deadline.setSingleShot(True)
        self.deadline.setInterval(timeout_ms)
        self.deadline.timeout.connect(self.loop.quit)

    def quit(self, *_: object) -> None:
        self.loop.quit()

    def run(self) -> None:
        self.deadline.start()
        self.loop.exec()
        self.deadline.stop()


def _controller(model_path: Path, folder: Path, max_tokens: int) -> Any:
    from app.engines.worker import ModelSpec, WorkerEngine
    from app.paths import DataPaths
    from app.runtime import Profile
    from app.settings import GenerationSettings, Settings, physical_cores
    from app.ui.chat_controller import ChatController
    from app.ui.tasks import Runner

    settings = Settings(n_ctx=2048, generation=GenerationSettings(temperature=0.8, max_tokens=max_tokens, seed=11))

    def open_profile() -> Profile:
        profile = Profile.open(DataPaths(folder / "stall-home"))
        profile.settings = settings
        return profile

    def load(profile: Profile, progress: Any) -> WorkerEngine:  # the model in its own process, as in the app
        return WorkerEngine(ModelSpec(model_path, "bench", n_ctx=2048, n_threads=physical_cores()))

    return ChatController(Runner(), open_profile, load)


def measure_stall(model_path: Path, folder: Path, max_tokens: int = 200) -> dict[str, float]:
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from app.ui.main_window import MainWindow

    QApplication.instance() or QApplication([])
    loop = _Loop(300_000)  # a safety net; a reply normally ends long before
    controller = _controller(model_path, folder, max_tokens)
    window = MainWindow(controller)
    window.show()
    probe = _TickRecorder()
    controller.replyStarted.connect(probe.started)
    controller.replyDelta.connect(probe.delta)
    controller.replyFinished.connect(probe.finished)
    controller.replyFinished.connect(loop.quit)
    controller.notice.connect(loop.quit)
    controller.engineReady.connect(lambda _: controller.send(STORY))
    probe.timer.start()
    controller.start()
    loop.run()
    probe.timer.stop()
    window.close()
    return probe.result()


def measure_voice_stall(model_path: Path, folder: Path, question: Any, timeout_s: float = 120.0) -> dict[str, float]:
    """The longest GUI stall while the window listens to a spoken question, thinks and answers aloud.

    The microphone plays `question` (16 kHz samples) and the speaker records; the speech models come
    from the user's catalog folder like the window's own.
    """
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from app.ui.main_window import MainWindow
    from app.ui.voice_controller import VoiceDevices
    from app.voice.audio import FileInput, RecordingOutput

    QApplication.instance() or QApplication([])
    loop = _Loop(int(timeout_s * 1000))

    def devices(settings: Any, on_error: Any) -> VoiceDevices:
        mic = FileInput(question, tail_s=30.0, name="question")
        speaker = RecordingOutput(name="speaker")

        def close() -> None:
            mic.stop()
            speaker.close()

        return VoiceDevices(mic, speaker, speaker.start, close)

    controller = _controller(model_path, folder, max_tokens=60)
    window = MainWindow(controller, voice_devices=devices)
    window.show()
    probe = _TickRecorder()
    states: list[str] = []

    def on_state(state: str) -> None:
        states.append(state)
        if state == "listening" and not probe.streaming:
            probe.started(None)  # from the first moment the microphone is live
        elif state == "listening" and "speaking" in states:
            probe.finished(None)
            loop.quit()
        elif state == "off" and len(states) > 2:
            loop.quit()

    window.voice.stateChanged.connect(on_state)
    window.voice.notice.connect(loop.quit)
    controller.engineReady.connect(lambda _: window.voice.set_enabled(True))
    probe.timer.start()
    controller.start()
    loop.run()
    probe.timer.stop()
    window.voice.set_enabled(False)
    window.close()
    result = probe.result()
    result.pop("tokens", None)
    result["states"] = float(len(states))
    if "speaking" not in states:
        raise RuntimeError(f"the spoken turn did not complete (states: {states})")
    return result


PICTURE_QUESTION = "What does this picture say?"


def _photo(folder: Path) -> Path:
    """A 12-megapixel camera-sized JPEG with a line of text on it, made with Pillow."""
    from PIL import Image, ImageDraw, ImageFont

    picture = Image.linear_gradient("L").resize((4000, 3000)).convert("RGB")
    ImageDraw.Draw(picture).text(
        (200, 200), "Table for four at 8 pm", fill=(255, 255, 255), font=ImageFont.load_default(160)
    )
    path = folder / "photo.jpg"
    folder.mkdir(parents=True, exist_ok=True)
    picture.save(path, format="JPEG", quality=90)
    return path


def _drop_file(window: Any, path: Path) -> None:
    """What Qt delivers when a file is dragged onto the window and let go."""
    from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
    from PySide6.QtGui import QDragEnterEvent, QDropEvent
    from PySide6.QtWidgets import QApplication

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    centre = window.rect().center()
    buttons, keys, copy = Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, Qt.DropAction.CopyAction
    QApplication.sendEvent(window, QDragEnterEvent(centre, copy, mime, buttons, keys))
    QApplication.sendEvent(window, QDropEvent(QPointF(centre), copy, mime, buttons, keys))


def measure_image_stall(model_path: Path, folder: Path, max_tokens: int = 40) -> dict[str, float]:
    """The longest GUI stall from dropping a 12-megapixel photo on the window to the end of the answer.

    That covers the preview (decoded and scaled on a worker), loading the text reader, sending
    (normalised, stored, read), the thumbnail in the conversation, and the streamed reply.
    """
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QElapsedTimer
    from PySide6.QtWidgets import QApplication

    from app.ui.main_window import MainWindow

    QApplication.instance() or QApplication([])
    loop = _Loop(300_000)
    photo = _photo(folder / "pictures")
    controller = _controller(model_path, folder, max_tokens)
    window = MainWindow(controller)
    window.show()
    probe = _TickRecorder()
    clock = QElapsedTimer()
    marks: dict[str, float] = {}
    stored: list[Any] = []

    def attach(_: object) -> None:
        clock.start()
        probe.started(None)
        _drop_file(window, photo)

    def send_when_ready() -> None:
        composer = window.composer
        if "preview_s" in marks or not composer.pictures() or not composer.pictures_ready():
            return
        marks["preview_s"] = clock.nsecsElapsed() / 1e9
        composer.editor.setPlainText(PICTURE_QUESTION)
        composer.send_button.click()

    def finished(message: Any) -> None:
        marks["answered_s"] = clock.nsecsElapsed() / 1e9
        probe.finished(message)
        loop.quit()

    controller.engineReady.connect(attach)
    window.composer.picturesChanged.connect(send_when_ready)
    controller.userMessageAdded.connect(stored.append)
    controller.conversationOpened.connect(lambda cid, messages: stored.extend(messages))
    controller.replyDelta.connect(probe.delta)
    controller.replyFinished.connect(finished)
    controller.notice.connect(loop.quit)
    probe.timer.start()
    controller.start()
    loop.run()
    probe.timer.stop()
    window.close()
    if not any(m.role == "user" and m.meta.get("images") for m in stored) or "answered_s" not in marks:
        raise RuntimeError("the picture was not sent and answered")
    return probe.result() | marks


def report_rss(model: str) -> None:
    """Open the window, load the model (in its worker), print "rss APP_MB WORKER_MB" (`hearth bench`)."""
    import psutil
    from PySide6.QtWidgets import QApplication

    from app.ui.main_window import MainWindow

    QApplication.instance() or QApplication([])
    controller = _controller(Path(model), Path(os.environ["HEARTH_HOME"]), 16)
    window = MainWindow(controller)
    window.show()
    loop = _Loop(120_000)
    controller.engineReady.connect(loop.quit)
    controller.notice.connect(loop.quit)
    controller.start()
    loop.run()
    session = controller.session
    if session is None:
        raise SystemExit("the model did not load")
    mb = 2**20
    app_rss = psutil.Process().memory_info().rss / mb
    worker_rss = psutil.Process(session.engine.pid).memory_info().rss / mb
    print(f"rss {app_rss:.1f} {worker_rss:.1f}", flush=True)
    window.close()
