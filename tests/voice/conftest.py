"""Fixtures for the speech engines: the real models, loaded once per session, and real speech.

The models come from the session's `speech_home` data folder (fetched from their installed carrier
packages). A missing package skips these tests locally and fails them under HEARTH_STRICT=1.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from app.voice.stt import Transcriber
    from app.voice.tts import Voice

SPEECH = Path(__file__).resolve().parents[1] / "fixtures" / "speech"
JFK = SPEECH / "jfk.flac"
STEREO = SPEECH / "stereo_two_speakers.wav"
JFK_TEXT = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."
STEREO_LEFT = "He began a confused complaint against the wizard, who had vanished behind the curtain on the left."
STEREO_RIGHT = "The horizon seems extremely distant."
THREADS = min(2, os.cpu_count() or 1)


@pytest.fixture(scope="session")
def whisper_dir(speech_home: Path) -> Path:
    """The Whisper tiny.en model folder (model.bin, config.json, tokenizer.json, vocabulary.txt)."""
    from tests.speech_models import speech_model_paths

    return speech_model_paths(speech_home)[0]


@pytest.fixture(scope="session")
def piper_onnx(speech_home: Path) -> Path:
    """The Piper voice Joe (medium): the .onnx file, with its .onnx.json beside it."""
    from tests.speech_models import speech_model_paths

    return speech_model_paths(speech_home)[1]


@pytest.fixture(scope="session")
def transcriber(whisper_dir: Path) -> Transcriber:
    from app.voice.stt import Transcriber

    engine = Transcriber(whisper_dir, device="cpu", threads=THREADS)
    engine.warm_up()
    return engine


@pytest.fixture(scope="session")
def voice(piper_onnx: Path) -> Voice:
    from app.voice.tts import Voice

    return Voice(piper_onnx, threads=THREADS)


@pytest.fixture
def voice_home(hearth_home: Path, speech_home: Path) -> Path:
    """This test's own data folder with both speech models in place (hard-linked from the session's)."""
    import shutil

    from tests.conftest import _link_or_copy

    shutil.copytree(speech_home / "models", hearth_home / "models", copy_function=_link_or_copy)
    return hearth_home
