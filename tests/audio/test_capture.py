"""Capturing from the virtual microphone through QtAudioInput: format, frequency, level, timing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from pytestqt.qtbot import QtBot

from app.errors import VoiceError
from tests.audio.signals import Collector, loud_span, peak_frequency, rms_db, silence, tone
from tests.pulse import MIC, PulseServer

pytestmark = pytest.mark.audio

TONE_DB = 20 * np.log10(0.5 / np.sqrt(2))  # a 0.5-amplitude sine: -9.0 dBFS RMS


def _tone_span(heard: np.ndarray) -> tuple[int, int]:
    span = loud_span(heard, threshold=0.1)
    assert span is not None, f"no tone captured (loudest 10 ms: {rms_db(heard):.1f} dBFS overall)"
    return span


@pytest.mark.parametrize("native_format", [False, True], ids=["16k-mono", "device-format"])
def test_a_tone_fed_to_the_microphone_arrives_as_16k_float(
    audio: PulseServer, qtbot: QtBot, make_input: Callable[..., Any], native_format: bool
) -> None:
    collector = Collector()
    errors: list[VoiceError] = []
    mic = make_input("", on_error=errors.append, native_format=native_format)
    levels: list[float] = []

    def sink(samples: np.ndarray) -> None:
        collector(samples)
        levels.append(mic.level_db)  # the meter, as the window would read it

    mic.start(sink)
    if native_format:  # the device's own format (44.1 kHz stereo here), converted by Hearth
        assert (mic.format.sampleRate(), mic.format.channelCount()) != (16000, 1)
    else:
        assert (mic.format.sampleRate(), mic.format.channelCount()) == (16000, 1)
    feed = audio.feed(np.concatenate([silence(0.5), tone(1000, 1.0), silence(0.3)]), block=False)
    assert feed is not None
    qtbot.waitUntil(lambda: feed.proc.poll() is not None and collector.count > 16000 * 1.6, timeout=10000)
    feed.wait()
    mic.stop()

    assert errors == []
    assert all(chunk.dtype == np.float32 and chunk.ndim == 1 for chunk in collector.chunks)
    assert "MainThread" not in collector.threads  # delivered on the audio thread
    heard = collector.samples()
    assert np.abs(heard).max() <= 1.0
    start, end = _tone_span(heard)
    assert 0.9 < (end - start) / 16000 < 1.1
    steady = heard[start + 1600 : end - 1600]
    assert abs(peak_frequency(steady) - 1000) < 10
    assert abs(rms_db(steady) - TONE_DB) < 1.5
    # The meter read the tone's level while it played.
    assert max(levels) == pytest.approx(TONE_DB, abs=2.0)
    assert mic.level_db < -100  # stopped


def test_capture_latency_against_parec(audio: PulseServer, qtbot: QtBot, make_input: Callable[..., Any]) -> None:
    """Qt's capture path versus a 10 ms parec on the same source: how much later does a tone arrive?"""
    collector = Collector()
    mic = make_input(MIC, buffer_ms=30)
    mic.start(collector)
    with audio.record(device=MIC) as reference:
        reference.wait_for_audio()
        audio.feed(np.concatenate([silence(0.5), tone(1000, 0.5), silence(0.2)]), block=True)
        qtbot.waitUntil(lambda: collector.count > 16000, timeout=5000)
        qtbot.wait(100)
    mic.stop()
    heard, ref = collector.samples(), reference.samples
    qt_onset = collector.time_of(_tone_span(heard)[0])
    parec_onset = reference.time_of(_tone_span(ref)[0])
    latency_ms = (qt_onset - parec_onset) * 1000
    chunk_ms = np.median([len(c) for c in collector.chunks]) / 16
    print(f"\ncapture: tone reached QtAudioInput's sink {latency_ms:.1f} ms after parec; chunks of {chunk_ms:.0f} ms")
    assert latency_ms < 150


def test_stop_means_no_more_calls_and_start_again_works(
    audio: PulseServer, qtbot: QtBot, make_input: Callable[..., Any]
) -> None:
    first, second = Collector(), Collector()
    mic = make_input("")
    mic.start(first)
    qtbot.waitUntil(lambda: first.count > 1600, timeout=5000)
    mic.stop()
    count = first.count
    qtbot.wait(150)
    assert first.count == count
    mic.start(second)
    qtbot.waitUntil(lambda: second.count > 1600, timeout=5000)
    assert first.count == count
    # start() while capturing replaces the sink.
    mic.start(first)
    qtbot.waitUntil(lambda: first.count > count + 1600, timeout=5000)
    settled = second.count
    qtbot.wait(100)
    assert second.count == settled


def test_a_failing_consumer_is_reported_not_raised_into_qt(
    audio: PulseServer, qtbot: QtBot, make_input: Callable[..., Any]
) -> None:
    errors: list[VoiceError] = []

    def broken(samples: np.ndarray) -> None:
        raise RuntimeError("consumer bug")

    mic = make_input("", on_error=errors.append)
    mic.start(broken)
    qtbot.waitUntil(lambda: bool(errors), timeout=5000)
    assert "consumer bug" in errors[0].message
    assert not mic.capturing
