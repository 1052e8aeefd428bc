"""Test signals and measurements on 16 kHz mono float32 audio."""

from __future__ import annotations

import threading
import time

import numpy as np

RATE = 16_000


def tone(freq: float, seconds: float, amplitude: float = 0.5, rate: int = RATE) -> np.ndarray:
    """A sine with 5 ms fades, so its edges do not click."""
    n = int(seconds * rate)
    x = amplitude * np.sin(2 * np.pi * freq * np.arange(n) / rate)
    fade = min(n // 2, int(0.005 * rate))
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        x[:fade] *= ramp
        x[-fade:] *= ramp[::-1]
    return x.astype(np.float32)


def silence(seconds: float, rate: int = RATE) -> np.ndarray:
    return np.zeros(int(seconds * rate), dtype=np.float32)


def chirp(f0: float, f1: float, seconds: float, amplitude: float = 0.5, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * seconds))
    return (amplitude * np.sin(phase)).astype(np.float32)


def rms_db(x: np.ndarray) -> float:
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0
    return 20 * np.log10(rms) if rms > 0 else -120.0


def peak_frequency(x: np.ndarray, rate: int = RATE) -> float:
    windowed = x * np.hanning(len(x))
    spectrum = np.abs(np.fft.rfft(windowed))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[int(np.argmax(spectrum))])


def envelope(x: np.ndarray, window: int = 160) -> np.ndarray:
    """RMS per `window` samples (10 ms at 16 kHz)."""
    n = len(x) // window
    return np.sqrt(np.mean(np.square(x[: n * window].reshape(n, window), dtype=np.float64), axis=1))


def loud_span(x: np.ndarray, threshold: float = 0.05, window: int = 160) -> tuple[int, int] | None:
    """First and last sample index of the windows louder than `threshold` (RMS)."""
    env = envelope(x, window)
    loud = np.nonzero(env > threshold)[0]
    if len(loud) == 0:
        return None
    return int(loud[0] * window), int((loud[-1] + 1) * window)


class Collector:
    """An `AudioInput` sink that keeps every chunk with its arrival time (thread-safe)."""

    def __init__(self) -> None:
        self.chunks: list[np.ndarray] = []
        self.arrivals: list[tuple[int, float]] = []  # (samples so far, monotonic time)
        self.threads: set[str] = set()
        self._count = 0
        self._lock = threading.Lock()

    def __call__(self, samples: np.ndarray) -> None:
        now = time.monotonic()
        with self._lock:
            self.chunks.append(samples.copy())
            self._count += len(samples)
            self.arrivals.append((self._count, now))
            self.threads.add(threading.current_thread().name)

    @property
    def count(self) -> int:
        with self._lock:
            return self._count

    def samples(self) -> np.ndarray:
        with self._lock:
            return np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.float32)

    def time_of(self, index: int) -> float:
        """Monotonic time at which sample `index` reached the sink (least-delayed chunk fixes the clock)."""
        with self._lock:
            offset = min(at - count / RATE for count, at in self.arrivals)
        return offset + index / RATE
