"""Playing through QtAudioOutput onto AppSpeaker, recorded from its monitor: sound, counters, reference, stop()."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from pytestqt.qtbot import QtBot

from app.errors import VoiceError
from app.voice.audio import ReferenceTap
from tests.audio.signals import chirp, envelope, loud_span, peak_frequency, rms_db, tone
from tests.pulse import PulseServer

pytestmark = pytest.mark.audio

TONE_DB = 20 * np.log10(0.5 / np.sqrt(2))


class LoggingTap(ReferenceTap):
    """A reference tap that also keeps a log of every push, with its time.

    It holds up to 3 s (the loop's tap holds 0.5 s), so a test can read back all it was given."""

    def __init__(self) -> None:
        super().__init__(cap_s=3.0)
        self.log: list[tuple[float, np.ndarray]] = []
        self._log_lock = threading.Lock()

    def push(self, samples: np.ndarray) -> None:
        with self._log_lock:
            self.log.append((time.monotonic(), samples.copy()))
        super().push(samples)

    def pushed(self, since: float = 0.0) -> np.ndarray:
        with self._log_lock:
            parts = [chunk for at, chunk in self.log if at >= since]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)


@pytest.mark.parametrize("native_format", [False, True], ids=["16k-mono", "device-format"])
def test_a_tone_played_is_heard_on_the_speaker(
    audio: PulseServer, qtbot: QtBot, make_output: Callable[..., Any], native_format: bool
) -> None:
    errors: list[VoiceError] = []
    tap = LoggingTap()
    speaker = make_output("", on_error=errors.append, native_format=native_format, reference=tap)
    speaker.start()
    if native_format:
        assert (speaker.format.sampleRate(), speaker.format.channelCount()) != (16000, 1)
    sound = tone(1000, 0.5)
    with audio.record() as recording:
        recording.wait_for_audio()
        tap.clear()  # the silence written so far
        speaker.play(sound)
        assert speaker.pending_samples == len(sound)
        qtbot.waitUntil(lambda: speaker.played_samples == len(sound), timeout=3000)
        assert speaker.pending_samples == 0
        qtbot.wait(250)  # let the device buffer drain
    # Everything written since clear() is waiting in the reference (silence, the tone, silence);
    # take no more than that, or the reader runs ahead of the device.
    reference = speaker.take_reference(len(sound) + 3200)
    heard = recording.samples
    assert errors == []
    span = loud_span(heard, threshold=0.1)
    assert span is not None, f"nothing heard ({rms_db(heard):.1f} dBFS)"
    start, end = span
    assert 0.45 < (end - start) / 16000 < 0.55, (
        f"tone heard from {start / 16:.0f} to {end / 16:.0f} ms: {envelope(heard).round(2).tolist()}"
    )
    steady = heard[start + 800 : end - 800]
    assert abs(peak_frequency(steady) - 1000) < 10
    assert abs(rms_db(steady) - TONE_DB) < 1.5
    # The reference holds exactly what was written: the tone, surrounded by silence.
    ref_span = loud_span(reference, threshold=0.1)
    assert ref_span is not None
    first = int(np.argmax(np.abs(reference) > 0)) - 1  # the tone's own first sample is 0
    assert first < 800  # handed over within one device buffer of play()
    np.testing.assert_allclose(reference[first : first + len(sound)], sound, atol=1e-6)
    assert not reference[first + len(sound) :].any()


def test_a_chirp_keeps_its_shape(audio: PulseServer, qtbot: QtBot, make_output: Callable[..., Any]) -> None:
    speaker = make_output("")
    speaker.start()
    sound = chirp(300, 3000, 0.6)
    with audio.record() as recording:
        recording.wait_for_audio()
        speaker.play(sound)
        qtbot.waitUntil(lambda: speaker.pending_samples == 0, timeout=3000)
        qtbot.wait(250)
    heard = recording.samples
    span = loud_span(heard, threshold=0.1)
    assert span is not None
    start = span[0]
    # Early part low, late part high: the frequency sweep survived the trip.
    assert peak_frequency(heard[start : start + 1600]) < 700
    assert peak_frequency(heard[start + 8000 : start + 9600]) > 2300


def test_stop_silences_at_once(audio: PulseServer, qtbot: QtBot, make_output: Callable[..., Any]) -> None:
    speaker = make_output("")
    speaker.start()
    sound = tone(1000, 3.0)
    with audio.record() as recording:
        recording.wait_for_audio()
        speaker.play(sound)
        played_at = time.monotonic()
        qtbot.wait(500)
        stopped_at = time.monotonic()
        speaker.stop()
        assert speaker.pending_samples == 0  # at once, not after the audio thread caught up
        assert speaker.played_samples == 0
        qtbot.wait(500)
    heard = recording.samples
    span = loud_span(heard, threshold=0.05, window=80)
    assert span is not None
    start, end = span
    silence_after_ms = (recording.time_of(end) - stopped_at) * 1000
    sound_after_ms = (recording.time_of(start) - played_at) * 1000
    heard_ms = (end - start) / 16
    allowed_ms = (stopped_at - played_at) * 1000
    print(
        f"\nplay() → sound {sound_after_ms:.0f} ms; stop() → silence {silence_after_ms:.0f} ms "
        f"(heard {heard_ms:.0f} ms of the {allowed_ms:.0f} ms between play() and stop())"
    )
    assert silence_after_ms < 150
    assert heard_ms < allowed_ms + 150
    tail = envelope(heard[end + 160 :])
    assert len(tail) > 20 and tail.max() < 0.01  # and stays silent
    assert speaker.pending_samples == 0 and speaker.played_samples == 0


def test_stop_from_another_thread_then_play_again(
    audio: PulseServer, qtbot: QtBot, make_output: Callable[..., Any]
) -> None:
    speaker = make_output("")
    speaker.start()
    speaker.play(tone(500, 2.0))
    qtbot.wait(200)
    stopper = threading.Thread(target=speaker.stop)
    stopper.start()
    stopper.join()
    assert speaker.pending_samples == 0
    sound = tone(1000, 0.3)
    with audio.record() as recording:
        recording.wait_for_audio()
        speaker.play(sound)
        qtbot.waitUntil(lambda: speaker.played_samples == len(sound), timeout=3000)
        qtbot.wait(250)
    heard = recording.samples
    span = loud_span(heard, threshold=0.1)
    assert span is not None
    assert abs(peak_frequency(heard[span[0] + 400 : span[1] - 400]) - 1000) < 10


def test_the_reference_runs_in_lockstep_while_idle(
    audio: PulseServer, qtbot: QtBot, make_output: Callable[..., Any]
) -> None:
    """Silence is written (and referenced) while nothing plays, at the device's pace."""
    tap = LoggingTap()
    speaker = make_output("", reference=tap)
    speaker.start()
    qtbot.wait(200)
    begin = time.monotonic()
    qtbot.wait(1000)
    end = time.monotonic()
    pushed = tap.pushed(since=begin)
    print(f"\nidle: {len(pushed) / 16:.0f} ms of silence referenced in {(end - begin) * 1000:.0f} ms")
    assert abs(len(pushed) / 16000 - (end - begin)) < 0.05
    assert not pushed.any()
    assert not speaker.take_reference(8000).any()
    assert speaker.played_samples == 0  # silence does not count as played


def test_the_echo_follows_the_reference_through_a_loopback(
    audio: PulseServer, qtbot: QtBot, make_output: Callable[..., Any], make_input: Callable[..., Any]
) -> None:
    """Speaker into microphone (200 ms loopback), read as an echo canceller reads: one reference
    chunk per microphone chunk. The echo must come after its reference, by a steady delay."""
    speaker = make_output("")
    speaker.start()
    mic_chunks: list[np.ndarray] = []
    ref_chunks: list[np.ndarray] = []
    lock = threading.Lock()

    def sink(chunk: np.ndarray) -> None:
        with lock:
            mic_chunks.append(chunk.copy())
            ref_chunks.append(speaker.take_reference(len(chunk)))

    with audio.loopback(latency_msec=200):
        mic = make_input("")
        speaker.reference.clear()  # start the reader in step: no backlog from before the microphone
        mic.start(sink)
        qtbot.wait(600)  # the loopback settles
        burst = np.concatenate([tone(800, 0.2), np.zeros(8000, np.float32), chirp(400, 2000, 0.3)])
        speaker.play(burst)
        qtbot.waitUntil(lambda: speaker.pending_samples == 0, timeout=3000)
        qtbot.wait(900)
        mic.stop()
    with lock:
        heard, reference = np.concatenate(mic_chunks), np.concatenate(ref_chunks)
    ref_span = loud_span(reference, threshold=0.05)
    mic_span = loud_span(heard, threshold=0.05)
    assert ref_span is not None and mic_span is not None
    # Cross-correlate around the onsets for the delay, in samples.
    window = slice(max(0, ref_span[0] - 1600), ref_span[1] + 16000)
    r, m = reference[window], heard[window]
    corr = np.correlate(m, r[: ref_span[1] - window.start], mode="valid")
    delay_ms = int(np.argmax(np.abs(corr))) / 16
    print(f"\necho: the microphone hears the speaker {delay_ms:.0f} ms after the reference (loopback latency 200 ms)")
    assert 150 < delay_ms < 600
