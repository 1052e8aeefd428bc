"""Fixtures for the audio device tests: the private PulseAudio server and Qt devices that are closed afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pytestqt.qtbot import QtBot

from tests.pulse import PulseServer


@pytest.fixture
def audio(pulse: PulseServer, qtbot: QtBot) -> PulseServer:
    """The PulseAudio server, started before anything in the test touches QtMultimedia."""
    return pulse


@pytest.fixture
def make_input(audio: PulseServer) -> Iterator[Callable[..., Any]]:
    """Build `QtAudioInput`s that are closed when the test ends."""
    from app.ui.audio_devices import QtAudioInput

    made: list[QtAudioInput] = []

    def make(*args: Any, **kwargs: Any) -> QtAudioInput:
        device = QtAudioInput(*args, **kwargs)
        made.append(device)
        return device

    yield make
    for device in made:
        device.close()


@pytest.fixture
def make_output(audio: PulseServer) -> Iterator[Callable[..., Any]]:
    """Build `QtAudioOutput`s that are closed when the test ends."""
    from app.ui.audio_devices import QtAudioOutput

    made: list[QtAudioOutput] = []

    def make(*args: Any, **kwargs: Any) -> QtAudioOutput:
        device = QtAudioOutput(*args, **kwargs)
        made.append(device)
        return device

    yield make
    for device in made:
        device.close()
