"""Voice activity detection and echo cancellation: the two per-frame filters of the voice loop.

`SileroVad` runs the Silero v6 network that faster-whisper ships (`faster_whisper/assets/
silero_vad_v6.onnx`) one 32 ms window at a time, keeping the recurrent state and the 64-sample
context between windows, so it can follow a live microphone. `EchoCanceller` wraps WebRTC's AEC3
(pywebrtc-audio): it takes each 10 ms microphone frame together with the 10 ms that went to the
speaker and returns the microphone with Hearth's own voice removed; `EchoPath` says when none of
that voice can be in the microphone, so the raw signal can be trusted. All are used from one thread.
"""

from __future__ import annotations

import logging
from collections import deque
from pathlib import Path

import numpy as np

from app.errors import ModelError, VoiceError
from app.voice.audio import FRAME, RATE, Samples

log = logging.getLogger("hearth.voice")

WINDOW = 512  # 32 ms at 16 kHz: the window the network was trained on
CONTEXT = 64


def silero_model_path() -> Path:
    import faster_whisper

    return Path(faster_whisper.__file__).parent / "assets" / "silero_vad_v6.onnx"


class SileroVad:
    """Speech probability for each consecutive 512-sample window of a stream."""

    def __init__(self, model_path: Path | None = None) -> None:
        import onnxruntime

        path = model_path or silero_model_path()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self._session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelError(
                f"The voice detector could not be loaded from {path}: {exc}",
                "Reinstall Hearth (the detector ships with faster-whisper).",
            ) from exc
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)

    def __call__(self, window: Samples) -> float:
        """Probability (0–1) that `window` (exactly 512 samples) holds speech."""
        if len(window) != WINDOW:
            raise ValueError(f"the voice detector needs {WINDOW} samples, got {len(window)}")
        framed = np.concatenate([self._context, window.astype(np.float32, copy=False)])[None, :]
        prob, self._h, self._c = self._session.run(None, {"input": framed, "h": self._h, "c": self._c})
        self._context = framed[0, -CONTEXT:]
        return float(np.asarray(prob).reshape(-1)[0])


class EchoCanceller:
    """WebRTC AEC3 over 10 ms frames; estimates the speaker→microphone delay by itself."""

    def __init__(self) -> None:
        try:
            import pywebrtc_audio
        except ImportError as exc:
            raise VoiceError(
                "Echo cancellation is not available (pywebrtc-audio is not installed).",
                "Reinstall Hearth, or turn echo cancellation off in Settings › Voice and use headphones.",
            ) from exc
        self._aec = pywebrtc_audio.EchoCanceller(RATE, 1, 0)

    def process(self, near: Samples, far: Samples) -> Samples:
        """The microphone frame `near` with the echo of `far` (what was played) removed."""
        if len(near) != FRAME or len(far) != FRAME:
            raise ValueError(f"echo cancellation works on {FRAME}-sample frames")
        cleaned = self._aec.process(_to_int16(near), _to_int16(far))
        return np.asarray(cleaned, dtype=np.float32) / 32768.0

    def reset(self) -> None:
        self._aec.reset()


class EchoPath:
    """Whether any of the speaker can be in the microphone right now.

    It cannot when the speaker has been silent for longer than any room's echo (`TAIL_S`), or when
    the microphone stays far quieter than what is played: headphones, or speakers turned down.
    Energies are compared over quarter-second blocks, which the speaker-to-microphone delay
    (up to a few hundred ms) barely shifts. Only blocks that were playing for most of their length
    count, and each reply's first such block is skipped (its echo may not have arrived yet); the
    median of the last three seconds of playback decides.
    """

    TAIL_S = 0.6
    PLAYING_DB = -50.0
    COUPLED_DB = -30.0
    BLOCK = 25  # frames: 250 ms
    MIN_BLOCKS = 2

    def __init__(self) -> None:
        self._since_playing = 10**9  # frames since the speaker last played something
        self._blocks: deque[float] = deque(maxlen=12)
        self._mic_energy = 0.0
        self._played_energy = 0.0
        self._frames = 0
        self._playing_frames = 0
        self._weak = False
        self._was_playing = False

    def note(self, mic: Samples, reference: Samples) -> None:
        played = float(np.dot(reference, reference))
        if played > FRAME * 10 ** (self.PLAYING_DB / 10):
            self._since_playing = 0
            self._playing_frames += 1
        else:
            self._since_playing += 1
        self._mic_energy += float(np.dot(mic, mic))
        self._played_energy += played
        self._frames += 1
        if self._frames < self.BLOCK:
            return
        # A reply that begins near the end of a block leaves its echo in none of it: such a block
        # is not playing, and the next one, ahead of the echo still, is skipped.
        playing = self._playing_frames * 2 >= self.BLOCK
        if playing and self._was_playing:
            self._blocks.append(10 * float(np.log10(max(self._mic_energy, 1e-12) / self._played_energy)))
            if len(self._blocks) >= self.MIN_BLOCKS:
                self._weak = float(np.median(self._blocks)) < self.COUPLED_DB
        self._was_playing = playing
        self._mic_energy = self._played_energy = 0.0
        self._frames = self._playing_frames = 0

    def absent(self) -> bool:
        return self._since_playing * FRAME > self.TAIL_S * RATE or self._weak

    def __repr__(self) -> str:
        blocks = ", ".join(f"{b:.0f}" for b in self._blocks)
        return f"EchoPath(quiet for {self._since_playing * FRAME / RATE:.2f} s, coupling dB [{blocks}])"


def _to_int16(samples: Samples) -> np.ndarray:
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)


def rms_db(samples: Samples) -> float:
    """Level in dBFS (−100 for silence)."""
    if len(samples) == 0:
        return -100.0
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return max(-100.0, 20.0 * float(np.log10(rms))) if rms > 0 else -100.0
