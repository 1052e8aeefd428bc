"""Hearth's real window on the private PulseAudio server, for `tests/e2e/test_voice_devices.py`.

* `DeviceWindow`: one real `MainWindow` — real `ChatController`, embedded SmolLM2, Whisper
  tiny.en, the Piper voice, SQLite store — whose voice uses the default Qt devices, i.e. the
  server's VirtualMic and AppSpeaker. Built once per module (the models load once).
* `ReplyLog`: every word of each reply as it streamed, to compare with what was stored.
* Helpers that read recordings: which 10 ms frames are loud, when speech starts and stops, and
  how a moment on the clock maps to a sample of a `Recording`.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QEvent, Qt
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from app.core.conversation import Message
from app.paths import DataPaths
from app.runtime import Profile, load_engine
from app.settings import GenerationSettings, Settings, VoiceSettings
from app.ui.chat_controller import ChatController
from app.ui.main_window import MainWindow
from app.ui.tasks import Runner
from app.voice.wer import normalise_words
from tests.conftest import _link_or_copy
from tests.pulse import RATE, Recording

START_MS = 90_000  # loading the engine, or Whisper + Piper + the voice detector, on a small machine
TURN_MS = 90_000  # one whole spoken turn, read aloud in real time
FRAME = RATE // 100  # 10 ms
LOUD_DB = -40.0  # a 10 ms frame louder than this is sound (the null sinks are digitally silent otherwise)


# -- the window -----------------------------------------------------------------------------------


def base_settings() -> Settings:
    return Settings(
        n_ctx=2048,
        n_threads=2,
        generation=GenerationSettings(temperature=0.0, max_tokens=40, seed=7),
        voice=VoiceSettings(),
        default_instructions="You are Hearth. Answer in one or two short sentences.",
    )


class DeviceWindow:
    """The real main window with the real engine; voice on the default Qt devices (the private server's)."""

    def __init__(self, qtbot: QtBot, home: Path) -> None:
        self.qtbot = qtbot
        self.home = home

        def open_profile() -> Profile:
            profile = Profile.open(DataPaths(home))
            profile.settings = base_settings()
            return profile

        controller = ChatController(
            Runner(), open_profile, lambda profile, progress: load_engine(profile, progress=progress)
        )
        self.window = MainWindow(controller)  # no device factory: QtAudioInput / QtAudioOutput
        self.window.show()
        qtbot.waitExposed(self.window)
        with qtbot.waitSignal(controller.engineReady, timeout=START_MS):
            controller.start()

    @property
    def controller(self) -> ChatController:
        return self.window.controller

    def configure(
        self,
        *,
        max_tokens: int = 40,
        instructions: str = "You are Hearth. Answer in one or two short sentences.",
        voice: dict[str, Any] | None = None,
    ) -> None:
        """Settings for the next turns (`voice`: changed voice settings), applied as the settings dialog applies them."""
        profile = self.controller.profile
        assert profile is not None
        settings = base_settings()
        settings = replace(
            settings,
            generation=replace(settings.generation, max_tokens=max_tokens),
            default_instructions=instructions,
            voice=replace(settings.voice, **(voice or {})),
        )
        old = profile.settings
        self.controller.apply_settings(settings)
        self.window.voice.apply_settings(old.voice, settings.voice)

    def new_conversation(self) -> None:
        self.window.new_action.trigger()
        assert self.controller.current is None

    def voice_on(self) -> None:
        """Click the mic toggle and wait until Hearth listens on VirtualMic."""
        assert self.window.voice.state == "off"
        self.qtbot.mouseClick(self.window.voice_panel.toggle, Qt.MouseButton.LeftButton)
        self.qtbot.waitUntil(lambda: self.window.voice.state in ("listening", "off"), timeout=START_MS)
        assert self.window.voice.state == "listening", self.window.message_bar.label.text()

    def voice_off(self) -> None:
        """Turn voice off (a reply being written stops and is kept) and wait until nothing is under way."""
        if self.window.voice.enabled:
            self.qtbot.mouseClick(self.window.voice_panel.toggle, Qt.MouseButton.LeftButton)
        self.qtbot.waitUntil(lambda: not self.window.voice.answering and not self.controller.busy, timeout=TURN_MS)
        assert self.window.voice.state == "off"

    def messages(self) -> list[Message]:
        """The open conversation as stored ([] before the first turn)."""
        profile, cid = self.controller.profile, self.controller.current
        assert profile is not None
        return [] if cid is None else profile.store.messages(cid)

    def users(self) -> list[Message]:
        return [m for m in self.messages() if m.role == "user"]

    def settled(self, messages: int) -> bool:
        """`messages` are stored, the last reply is done, and Hearth listens again."""
        stored = self.messages()
        return (
            len(stored) == messages
            and stored[-1].role == "assistant"
            and stored[-1].status != "streaming"
            and self.window.voice.state == "listening"
            and not self.window.voice.answering
        )

    def close(self) -> None:
        self.window.close()
        QApplication.processEvents()
        self.window.deleteLater()
        QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


def make_home(root: Path, *sources: Path) -> Path:
    """A data folder holding the models of `sources` (hard-linked)."""
    for source in sources:
        shutil.copytree(source / "models", root / "models", copy_function=_link_or_copy, dirs_exist_ok=True)
    return root


class ReplyLog:
    """Every word of each reply as it streamed into the view, one entry per reply, and when each
    spoken user message reached the window. `close()` disconnects it."""

    def __init__(self, controller: ChatController) -> None:
        self.replies: list[str] = []
        self.user_at: list[float] = []
        self._controller = controller
        controller.replyStarted.connect(self._started)
        controller.replyDelta.connect(self._delta)
        controller.spokenMessageAdded.connect(self._spoken)
        controller.conversationOpened.connect(self._opened)

    def _started(self, _message: Message) -> None:
        self.replies.append("")

    def _delta(self, text: str) -> None:
        if self.replies:
            self.replies[-1] += text

    def _spoken(self, _message: Message) -> None:
        self.user_at.append(time.monotonic())

    def _opened(self, _cid: object, messages: list[Message]) -> None:
        # A spoken turn in a new conversation opens it with the user message instead of adding it.
        if len(messages) == 1 and messages[0].role == "user" and messages[0].meta.get("spoken"):
            self.user_at.append(time.monotonic())

    def close(self) -> None:
        c = self._controller
        c.replyStarted.disconnect(self._started)
        c.replyDelta.disconnect(self._delta)
        c.spokenMessageAdded.disconnect(self._spoken)
        c.conversationOpened.disconnect(self._opened)


# -- reading recordings ---------------------------------------------------------------------------


def frame_db(samples: np.ndarray) -> np.ndarray:
    """Loudness of each whole 10 ms frame, dBFS."""
    n = len(samples) // FRAME
    frames = samples[: n * FRAME].reshape(n, FRAME).astype(np.float64)
    return 20 * np.log10(np.maximum(np.sqrt(np.mean(frames * frames, axis=1)), 1e-10))


def loud_frames(samples: np.ndarray) -> np.ndarray:
    return frame_db(samples) > LOUD_DB


def index_at(recording: Recording, when: float) -> int:
    """The sample of `recording` that reached the recorder at monotonic time `when`."""
    return max(0, round((when - recording.time_of(0)) * RATE))


def first_loud(samples: np.ndarray, start: int = 0) -> int | None:
    """First sample of the first loud frame at or after sample `start`."""
    loud = np.nonzero(loud_frames(samples[start:]))[0]
    return None if len(loud) == 0 else start + int(loud[0]) * FRAME


def loud_within(samples: np.ndarray, start: int, end: int) -> bool:
    return bool(loud_frames(samples[max(0, start) : max(0, end)]).any())


def end_of_sound(samples: np.ndarray, start: int, quiet_s: float) -> int | None:
    """Where the sound that is playing at sample `start` ends: the first sample of the first stretch
    of at least `quiet_s` of quiet frames that reaches `start` or lies after it (before `start` when
    `start` falls in a pause that lasts). None when the sound never pauses that long."""
    loud = loud_frames(samples)
    need = max(1, round(quiet_s * 100))
    frame = min(start // FRAME, len(loud))
    run_start = frame
    while run_start > 0 and not loud[run_start - 1]:
        run_start -= 1  # the pause that `start` may fall in began here
    for f in range(frame, len(loud)):
        if loud[f]:
            run_start = f + 1
        elif f + 1 - run_start >= need:
            return run_start * FRAME
    return None


def letter_likeness(said: str, heard: str) -> float:
    """How alike two texts are letter by letter (0 to 1), ignoring case, spaces and punctuation:
    speech heard back in other words (a name, a foreign phrase) still sounds, and spells, alike."""
    import difflib

    def letters(text: str) -> str:
        return "".join(ch for ch in text.lower() if ch.isalpha())

    return difflib.SequenceMatcher(None, letters(said), letters(heard)).ratio()


def shared_run(said: str, heard: str, run: int = 3, within: int = 8) -> list[str] | None:
    """`run` consecutive words that open `said` (among its first `within` words) and open `heard`
    too (among its first `within` + 2), or None. Tiny.en mangles a name here and there, so the run
    need not be the very first words; it shows that what was heard starts with what was said."""
    said_words, heard_words = normalise_words(said)[:within], normalise_words(heard)[: within + 2]
    heard_runs = {tuple(heard_words[i : i + run]) for i in range(len(heard_words) - run + 1)}
    for i in range(len(said_words) - run + 1):
        if tuple(said_words[i : i + run]) in heard_runs:
            return said_words[i : i + run]
    return None
