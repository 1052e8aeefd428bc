"""Audio files in and out, and sample-rate conversion.

* `load_audio` reads anything PyAV (FFmpeg) decodes — WAV of any sample format, FLAC, MP3, Ogg, … —
  and returns Hearth's internal form: mono float32 in [-1, 1] at 16 kHz (`audio.RATE`). Channels are
  averaged; the rate is converted by FFmpeg's resampler. Every way a file can be unusable (missing,
  empty, not audio, no samples) raises `AudioError` with a hint.
* `Resampler` converts a stream chunk by chunk (Piper's 22,050 Hz to 16 kHz for playback). It is a
  polyphase windowed-sinc filter that keeps its history between chunks, so cutting a stream into
  chunks of any size gives the same samples as converting it in one piece: no clicks at chunk edges.
* `WavWriter` / `save_wav` write 16-bit PCM WAV atomically: a temporary file beside the target is
  renamed into place only when writing succeeded, so a failed or interrupted write leaves nothing.
* `describe` summarises samples (duration, peak, loudness, clipping) for logs and JSON output.
"""

from __future__ import annotations

import math
import os
import tempfile
import wave
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from app.errors import AudioError
from app.voice.audio import RATE, Samples

SILENCE_DBFS = -120.0  # loudness reported for silence (JSON has no -inf)
CLIP_LEVEL = 0.999  # a sample at or above this magnitude counts as clipped

_FORMATS_HINT = "Use a recording in a common audio format: WAV, FLAC, MP3, Ogg or M4A."


# ------------------------------------------------------------------ reading


def load_audio(path: Path | str) -> Samples:
    """The file's audio as mono float32 in [-1, 1] at 16 kHz; `AudioError` when there is none to read."""
    path = Path(path)
    _check_file(path)
    import av

    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise AudioError(
            f"{path} is not an audio file Hearth can read ({_ffmpeg_reason(exc)}).", _FORMATS_HINT
        ) from exc
    except OSError as exc:
        raise AudioError(
            f"{path} cannot be opened: {exc.strerror or exc}.", "Check that the file is readable."
        ) from exc
    try:
        if not container.streams.audio:
            raise AudioError(f"{path} is not an audio file: it holds no sound.", _FORMATS_HINT)
        samples = _decode(container, path)
    finally:
        container.close()
    if len(samples) == 0:
        raise AudioError(
            f"{path} contains no audio samples: the recording is zero seconds long.",
            "Record again, or pick another file.",
        )
    return samples


def _check_file(path: Path) -> None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise AudioError(f"The audio file {path} does not exist.", "Check the path and the file name.") from None
    except OSError as exc:
        raise AudioError(
            f"The audio file {path} cannot be read: {exc.strerror or exc}.", "Check the path and its permissions."
        ) from exc
    if path.is_dir():
        raise AudioError(f"{path} is a folder, not an audio file.", "Give the path of one recording.")
    if stat.st_size == 0:
        raise AudioError(f"The audio file {path} is empty (0 bytes).", "Record again, or pick another file.")


def _decode(container: Any, path: Path) -> Samples:
    """Decode the first audio stream to 16 kHz float, averaging the channels."""
    import av

    stream = container.streams.audio[0]
    resampler = av.AudioResampler(format="fltp", rate=RATE)  # keeps the channel layout; we average below
    parts: list[Samples] = []

    def take(frames: Iterable[Any]) -> None:
        for frame in frames:
            planes = frame.to_ndarray()  # (channels, n) float32 for planar formats
            parts.append(planes.mean(axis=0, dtype=np.float32) if planes.ndim == 2 else planes.astype(np.float32))

    try:
        for frame in container.decode(stream):
            frame.pts = None  # let the resampler count samples itself: damaged timestamps must not matter
            take(resampler.resample(frame))
        take(resampler.resample(None))
    except av.FFmpegError as exc:
        raise AudioError(f"{path} is damaged and cannot be decoded ({_ffmpeg_reason(exc)}).", _FORMATS_HINT) from exc
    if not parts:
        return np.zeros(0, dtype=np.float32)
    samples = np.concatenate(parts).astype(np.float32, copy=False)
    np.nan_to_num(samples, copy=False, nan=0.0, posinf=1.0, neginf=-1.0)
    return np.clip(samples, -1.0, 1.0, out=samples)


def _ffmpeg_reason(exc: Exception) -> str:
    reason = getattr(exc, "strerror", None) or str(exc)
    return str(reason).rstrip(".").lower() or type(exc).__name__


# ------------------------------------------------------------------ resampling


class Resampler:
    """Streaming sample-rate conversion with a polyphase windowed-sinc (Kaiser) low-pass filter.

    `process(chunk)` returns whatever output the input so far fully determines; `flush()` returns the
    rest (the filter's look-ahead, padded with silence) and makes the resampler ready for a new stream.
    Output length over a whole stream is `ceil(n_in * to_rate / from_rate)`, and the output is
    aligned with the input (no delay). The result does not depend on how the stream was chunked.
    """

    def __init__(self, from_rate: int, to_rate: int, *, zero_crossings: int = 16, rolloff: float = 0.94) -> None:
        if from_rate <= 0 or to_rate <= 0:
            raise ValueError(f"sample rates must be positive, not {from_rate} and {to_rate}")
        g = math.gcd(from_rate, to_rate)
        self.from_rate, self.to_rate = from_rate, to_rate
        self._up, self._down = to_rate // g, from_rate // g
        self._table, self._half = _kernel_table(self._up, self._down, zero_crossings, rolloff)
        self._taps = self._table.shape[1]
        self.reset()

    @property
    def delay_in(self) -> int:
        """Input samples the resampler holds back until more input (or `flush`) arrives."""
        return self._half

    def reset(self) -> None:
        """Forget the stream so far."""
        # The history starts with silence standing for the samples before the stream began.
        self._buf = np.zeros(self._half - 1 if self._half > 0 else 0, dtype=np.float32)
        self._buf_start = -len(self._buf)  # absolute input index of self._buf[0]
        self._n_in = 0  # input samples received
        self._n_out = 0  # output samples produced

    def process(self, samples: Samples) -> Samples:
        """Feed the next chunk; returns the output it completes (possibly empty)."""
        chunk = np.asarray(samples, dtype=np.float32).reshape(-1)
        if self._up == self._down:
            self._n_in += len(chunk)
            self._n_out += len(chunk)
            return chunk.copy()
        self._buf = np.concatenate([self._buf, chunk])
        self._n_in += len(chunk)
        # Output n needs input up to floor(n * down / up) + half; we have input up to n_in - 1.
        last_ready = ((self._n_in - self._half) * self._up - 1) // self._down
        return self._produce(last_ready)

    def flush(self) -> Samples:
        """The remaining output of the stream; the resampler then starts afresh."""
        if self._up == self._down:
            self.reset()
            return np.zeros(0, dtype=np.float32)
        total = -((-self._n_in * self._up) // self._down)  # ceil(n_in * up / down)
        self._buf = np.concatenate([self._buf, np.zeros(self._half + 1, dtype=np.float32)])
        out = self._produce(total - 1)
        self.reset()
        return out

    def _produce(self, last: int) -> Samples:
        first = self._n_out
        if last < first:
            return np.zeros(0, dtype=np.float32)
        pieces = []
        for start in range(first, last + 1, 4096):  # bounded memory for long chunks
            n = np.arange(start, min(start + 4096, last + 1), dtype=np.int64)
            base = (n * self._down) // self._up
            phase = (n * self._down) % self._up
            index = (base - (self._half - 1) - self._buf_start)[:, None] + np.arange(self._taps)[None, :]
            pieces.append(np.einsum("ij,ij->i", self._buf[index], self._table[phase]).astype(np.float32))
        self._n_out = last + 1
        # Drop history no later output can need.
        keep_from = ((self._n_out * self._down) // self._up) - (self._half - 1)
        drop = max(0, keep_from - self._buf_start)
        if drop:
            self._buf = self._buf[drop:]
            self._buf_start += drop
        return np.concatenate(pieces)


@lru_cache(maxsize=16)
def _kernel_table(up: int, down: int, zero_crossings: int, rolloff: float) -> tuple[np.ndarray, int]:
    """Filter weights per output phase: row p holds the taps for an output that falls p/up past an input sample."""
    if up == down:
        return np.ones((1, 1), dtype=np.float32), 0
    cutoff = min(1.0, up / down) * rolloff  # relative to the input's Nyquist frequency
    half = int(math.ceil(zero_crossings / cutoff))
    taps = 2 * half
    beta = 8.6  # Kaiser window: about 90 dB stop-band attenuation
    phases = np.arange(up, dtype=np.float64)[:, None] / up
    # Tap j sits at input index base - (half - 1) + j; the output lies at base + p/up.
    distance = phases + (half - 1) - np.arange(taps, dtype=np.float64)[None, :]
    window = np.i0(beta * np.sqrt(np.clip(1.0 - (distance / half) ** 2, 0.0, 1.0))) / np.i0(beta)
    weights = cutoff * np.sinc(cutoff * distance) * window
    weights /= weights.sum(axis=1, keepdims=True)  # unity gain at DC for every phase
    return weights.astype(np.float32), half


def resample(samples: Samples, from_rate: int, to_rate: int) -> Samples:
    """Convert a whole signal from one sample rate to another (mono float32)."""
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    if from_rate == to_rate:
        return samples.copy()
    resampler = Resampler(from_rate, to_rate)
    return np.concatenate([resampler.process(samples), resampler.flush()])


def resample_stream(chunks: Iterable[Samples], from_rate: int, to_rate: int = RATE) -> Iterator[Samples]:
    """Convert a stream of chunks, yielding each converted chunk as soon as it is ready (empty ones skipped)."""
    resampler = Resampler(from_rate, to_rate)
    for chunk in chunks:
        out = resampler.process(chunk)
        if len(out):
            yield out
    tail = resampler.flush()
    if len(tail):
        yield tail


# ------------------------------------------------------------------ writing


class WavWriter:
    """A mono 16-bit PCM WAV file written chunk by chunk, and put in place only once complete.

    Use as a context manager: leaving the block normally renames the temporary file onto `path`;
    leaving it with an exception (or calling `discard()`) deletes the temporary file instead.
    """

    def __init__(self, path: Path | str, rate: int) -> None:
        self.path = Path(path)
        self.rate = rate
        self.samples_written = 0
        folder = check_output_path(self.path)
        try:
            fd, temp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".part", dir=folder)
        except OSError as exc:
            raise AudioError(
                f"Cannot write in {folder}: {exc.strerror or exc}.", "Choose a folder you can write to."
            ) from exc
        self._temp = Path(temp)
        self._file = os.fdopen(fd, "wb")
        self._wav: wave.Wave_write | None = wave.open(self._file, "wb")
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(rate)

    def write(self, samples: Samples) -> None:
        assert self._wav is not None, "the writer is closed"
        self._wav.writeframes(to_pcm16(samples).tobytes())
        self.samples_written += len(samples)

    @property
    def duration_s(self) -> float:
        return self.samples_written / self.rate

    def commit(self) -> Path:
        """Finish the file and move it onto `path`."""
        assert self._wav is not None, "the writer is closed"
        try:
            self._wav.close()
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._temp, self.path)
        except OSError as exc:
            self.discard()
            raise AudioError(
                f"Cannot write {self.path}: {exc.strerror or exc}.",
                "Check the free disk space and the folder's permissions.",
            ) from exc
        finally:
            self._wav = None
        return self.path

    def discard(self) -> None:
        """Abandon the file; nothing is left behind."""
        if self._wav is not None:
            try:
                self._wav.close()
            except (OSError, wave.Error):  # the header may not be writable any more: the file goes anyway
                pass
            self._wav = None
        self._file.close()
        self._temp.unlink(missing_ok=True)

    def __enter__(self) -> WavWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            if self._wav is not None:
                self.commit()
        else:
            self.discard()


def check_output_path(path: Path) -> Path:
    """The folder a new file at `path` goes into; AudioError when no file can be written there."""
    folder = path.parent
    if not folder.is_dir():
        raise AudioError(
            f"Cannot write {path}: the folder {folder} does not exist.",
            "Create the folder first, or choose another output path.",
        )
    if path.is_dir():
        raise AudioError(f"Cannot write {path}: it is a folder.", "Give a file name ending in .wav.")
    if not os.access(folder, os.W_OK):
        raise AudioError(
            f"Cannot write {path}: the folder {folder} is not writable.", "Choose a folder you can write to."
        )
    return folder


def save_wav(path: Path | str, samples: Samples, rate: int = RATE) -> Path:
    """Write mono samples as a 16-bit PCM WAV file, atomically."""
    with WavWriter(path, rate) as writer:
        writer.write(samples)
    return Path(path)


def to_pcm16(samples: Samples) -> np.ndarray:
    """Float samples in [-1, 1] as little-endian int16, clipped and rounded."""
    x = np.nan_to_num(np.asarray(samples, dtype=np.float32).reshape(-1), nan=0.0, posinf=1.0, neginf=-1.0)
    return np.round(np.clip(x, -1.0, 1.0) * 32767.0).astype("<i2")


# ------------------------------------------------------------------ measuring


def dbfs(level: float) -> float:
    """A linear level (1.0 = full scale) in dBFS; silence reads as SILENCE_DBFS."""
    return max(SILENCE_DBFS, 20.0 * math.log10(level)) if level > 0 else SILENCE_DBFS


def describe(samples: Samples, rate: int = RATE) -> dict[str, float]:
    """Duration (s), peak (linear), RMS loudness (dBFS) and the fraction of clipped samples."""
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    if len(x) == 0:
        return {"duration_s": 0.0, "peak": 0.0, "rms_dbfs": SILENCE_DBFS, "clipped_fraction": 0.0}
    magnitude = np.abs(x)
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    return {
        "duration_s": round(len(x) / rate, 4),
        "peak": round(float(magnitude.max()), 4),
        "rms_dbfs": round(dbfs(rms), 2),
        "clipped_fraction": round(float(np.count_nonzero(magnitude >= CLIP_LEVEL)) / len(x), 6),
    }
