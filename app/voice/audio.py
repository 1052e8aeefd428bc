"""Audio in and out behind two small protocols, so the voice loop never knows what the device is.

Everything inside Hearth's voice path is mono float32 in [-1, 1] at `RATE` (16 kHz): what speech
recognition, voice detection and echo cancellation want. Devices convert at their edge.

* An `AudioInput` pushes captured samples to a callback, from its own thread, in chunks of any size.
* An `AudioOutput` accepts samples to play and plays them at real-time pace. It keeps a *reference*
  of what it sent to the device (also 16 kHz): the echo canceller subtracts it from the microphone.
  `stop()` silences it at once (barge-in); `played_samples` says how much of what was queued has
  gone to the device since the last `stop()`, which is how a cut reply knows what the user heard.

Implementations: `FileInput` / `RecordingOutput` here (CLI, tests, benchmarks — real-time paced or as
fast as possible), the Qt devices in `app/ui/audio_devices.py`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

import numpy as np

RATE = 16_000
FRAME = 160  # 10 ms: the echo canceller's unit

Samples = np.ndarray  # 1-D float32 at RATE
SampleSink = Callable[[Samples], None]


class AudioInput(Protocol):
    name: str

    def start(self, sink: SampleSink) -> None:
        """Begin capturing; `sink` is called from a capture thread with each new chunk."""

    def stop(self) -> None:
        """Stop capturing; no call to the sink happens after this returns."""


class AudioOutput(Protocol):
    name: str

    def play(self, samples: Samples) -> None:
        """Queue samples (16 kHz mono float32) after whatever is already queued. Never blocks."""

    def stop(self) -> None:
        """Drop everything queued and fall silent now."""

    @property
    def played_samples(self) -> int:
        """Samples handed to the device since the last stop() (or since creation)."""

    @property
    def pending_samples(self) -> int:
        """Samples queued but not yet handed to the device."""

    def take_reference(self, n: int) -> Samples:
        """The next `n` samples of what went to the device (zeros where nothing played)."""

    def reference_ready(self, n: int) -> bool:
        """Whether the next `n` samples of the reference have been written (or the device is idle)."""

    def clear_reference(self) -> None:
        """Forget the reference kept so far (a microphone starting now reads from here)."""


class SampleQueue:
    """Chunks of samples in order, read back `n` at a time (not thread-safe: callers hold a lock)."""

    def __init__(self) -> None:
        self._chunks: deque[Samples] = deque()
        self.size = 0

    def append(self, samples: Samples) -> None:
        self._chunks.append(samples.astype(np.float32, copy=False))
        self.size += len(samples)

    def drop_oldest(self) -> None:
        self.size -= len(self._chunks.popleft())

    def take_into(self, out: Samples) -> int:
        """Fill `out` from the front of the queue; returns how many samples there were."""
        filled = 0
        while filled < len(out) and self._chunks:
            head = self._chunks[0]
            used = min(len(out) - filled, len(head))
            out[filled : filled + used] = head[:used]
            filled += used
            if used == len(head):
                self._chunks.popleft()
            else:
                self._chunks[0] = head[used:]
        self.size -= filled
        return filled

    def clear(self) -> None:
        self._chunks.clear()
        self.size = 0


class ReferenceTap:
    """What an output sent to its device, kept for the echo canceller to read in lockstep.

    Writers append as they hand samples over; the reader takes exactly `n` at a time. Writer and
    reader run at the same real-time pace, so the backlog stays about constant; it is capped
    (oldest dropped) so the reference can never fall far behind the microphone, and the echo
    canceller follows the small remaining delay itself.

    The lockstep holds only if the reader never invents samples. A writer that is late (its thread
    did not get the processor for a while) has not stopped the device: the sound it wrote earlier
    is still playing. So `ready()` tells the reader to wait for it, and only a writer silent for
    `STALE_S` (an output that is closed or broken) lets `take()` fill with zeros. Filling a late
    writer's gap with zeros would shift every later sample of the reference behind its own echo,
    which no echo canceller can remove.
    """

    STALE_S = 0.25

    def __init__(self, cap_s: float = 0.5) -> None:
        self._queue = SampleQueue()
        self._cap = int(cap_s * RATE)
        self._lock = threading.Lock()
        self._pushed_at: float | None = None

    def push(self, samples: Samples) -> None:
        with self._lock:
            self._queue.append(samples)
            while self._queue.size > self._cap:
                self._queue.drop_oldest()
            self._pushed_at = time.monotonic()

    def ready(self, n: int) -> bool:
        """Whether `take(n)` would be all written samples, or the writer has gone quiet."""
        with self._lock:
            if self._queue.size >= n or self._pushed_at is None:
                return True
            return time.monotonic() - self._pushed_at > self.STALE_S

    def take(self, n: int) -> Samples:
        out = np.zeros(n, dtype=np.float32)
        with self._lock:
            self._queue.take_into(out)
        return out

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()


class FileInput:
    """Feeds a recording (already 16 kHz mono float32) to the sink, like a microphone would.

    `realtime=True` paces chunks by the wall clock, so timings match a live microphone; `tail_s`
    of silence follows the recording so end-of-speech can be detected. `sample_clock()` gives the
    wall-clock time at which a given sample was delivered (for measuring from the audio itself).
    """

    def __init__(
        self, samples: Samples, *, realtime: bool = True, chunk: int = FRAME, tail_s: float = 1.5, name: str = "file"
    ) -> None:
        self.name = name
        self._samples = np.concatenate([samples.astype(np.float32), np.zeros(int(tail_s * RATE), np.float32)])
        self._realtime = realtime
        self._chunk = chunk
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started_at: float | None = None
        self.finished = threading.Event()
        self._offset = 0

    @property
    def duration_s(self) -> float:
        return len(self._samples) / RATE

    @property
    def delivered(self) -> int:
        """Samples handed to the sink so far."""
        return self._offset

    def splice(self, at: int, samples: Samples) -> None:
        """Mix `samples` into the part of the recording not yet delivered, from index `at`."""
        if at < self._offset:
            raise ValueError("that part of the recording was already delivered")
        end = min(at + len(samples), len(self._samples))
        self._samples[at:end] += samples[: end - at].astype(np.float32)

    def start(self, sink: SampleSink) -> None:
        self._stop.clear()
        self.finished.clear()
        self._thread = threading.Thread(target=self._run, args=(sink,), name="hearth-file-input", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def sample_time(self, index: int) -> float:
        """Wall-clock time when sample `index` reached the sink (realtime mode)."""
        assert self.started_at is not None, "not started"
        return self.started_at + index / RATE

    def _run(self, sink: SampleSink) -> None:
        self.started_at = time.monotonic()
        for offset in range(0, len(self._samples), self._chunk):
            if self._stop.is_set():
                break
            if self._realtime:
                due = self.started_at + (offset + self._chunk) / RATE
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            self._offset = offset + self._chunk
            sink(self._samples[offset : offset + self._chunk].copy())
        self.finished.set()


class RecordingOutput:
    """A speaker that records: plays queued audio at real-time pace into one long timeline.

    The timeline starts at `start()` and holds silence wherever nothing was queued, so the
    recording lines up with the wall clock: `timeline_start + index / RATE` is when a sample
    "sounded". A device thread moves 10 ms at a time, as a sound card would.
    """

    def __init__(
        self, name: str = "recording", realtime: bool = True, loud: float = 0.01, reference: ReferenceTap | None = None
    ) -> None:
        self.name = name
        self._loud = loud
        self.first_loud: int | None = None  # timeline index of the first sample louder than `loud`
        self._realtime = realtime
        self._queue = SampleQueue()
        self._played = 0
        self._lock = threading.Lock()
        self._timeline: list[Samples] = []
        self._tap = reference if reference is not None else ReferenceTap()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.timeline_start: float | None = None
        self.stops: list[float] = []  # wall-clock times stop() took effect

    def fast_forward(self) -> None:
        """Stop pacing: play what is queued as fast as it comes (for tools that only want the audio)."""
        self._realtime = False

    def start(self) -> None:
        self._stop.clear()
        self.timeline_start = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="hearth-recording-output", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def play(self, samples: Samples) -> None:
        with self._lock:
            self._queue.append(samples)

    def stop(self) -> None:
        with self._lock:
            self._queue.clear()
            self._played = 0
            self.stops.append(time.monotonic())

    @property
    def played_samples(self) -> int:
        return self._played

    @property
    def pending_samples(self) -> int:
        return self._queue.size

    def take_reference(self, n: int) -> Samples:
        return self._tap.take(n)

    def reference_ready(self, n: int) -> bool:
        return self._tap.ready(n)

    def clear_reference(self) -> None:
        self._tap.clear()

    def segment(self, start: int, end: int) -> Samples:
        """Timeline samples [start, end), zeros where the timeline has not reached yet."""
        out = np.zeros(max(0, end - start), np.float32)
        with self._lock:
            first, last = max(start, 0) // FRAME, min(end, len(self._timeline) * FRAME)
            for index in range(first, (last + FRAME - 1) // FRAME):
                frame_start = index * FRAME
                lo, hi = max(start, frame_start), min(end, frame_start + FRAME)
                if hi > lo:
                    out[lo - start : hi - start] = self._timeline[index][lo - frame_start : hi - frame_start]
        return out

    def recording(self) -> Samples:
        with self._lock:
            return np.concatenate(self._timeline) if self._timeline else np.zeros(0, np.float32)

    def _next_frame(self) -> Samples:
        frame = np.zeros(FRAME, dtype=np.float32)
        with self._lock:
            self._played += self._queue.take_into(frame)
            if self.first_loud is None:
                loud = np.nonzero(np.abs(frame) > self._loud)[0]
                if len(loud):
                    self.first_loud = len(self._timeline) * FRAME + int(loud[0])
            self._timeline.append(frame)
        self._tap.push(frame)
        return frame

    def _run(self) -> None:
        assert self.timeline_start is not None
        frames = 0
        while not self._stop.is_set():
            if self._realtime:
                due = self.timeline_start + (frames + 1) * FRAME / RATE
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            elif not self._queue.size:
                time.sleep(0.002)
                continue
            self._next_frame()
            frames += 1
