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

    It cannot when the speaker has been silent for longer than any room's echo (`TAIL_S`), or when,
    during a reply, the microphone stayed quiet while the speaker played: headphones, or speakers
    turned down. The test is made for every delay the echo could have (up to `MAX_DELAY`): an echo
    arriving that late after the speaker played loudly would have filled the microphone, so the
    delay is ruled out when, most of the times the speaker was loud that long ago, the microphone
    was at least 30 dB quieter than it. Once every delay is ruled out the verdict holds until the
    reply ends: the user speaking over a reply fills the microphone too, but only after the
    verdict, so their words do not make an echo appear. With a real echo the delay it comes at is
    never ruled out, even when that delay changes (a device catching up after an underrun).
    """

    TAIL_S = 0.6
    PLAYING_DB = -50.0  # a 10 ms frame of the reference this loud is being played
    LOUD_DB = -45.0  # ...and this loud all around a moment, a moment whose echo would be heard
    COUPLED_DB = -30.0
    MAX_DELAY = 45  # frames: 450 ms, speaker to microphone, device buffers included
    SPREAD = 2  # frames either side of a delay: its echo is smeared by the room and by jitter
    QUIET_SHARE = 0.6
    MIN_EVIDENCE = 3  # loud frames seen at each delay before it can be ruled out

    def __init__(self) -> None:
        self._since_playing = 10**9  # frames since the speaker last played something
        self._reference_db = np.full(self.MAX_DELAY + 2 * self.SPREAD + 1, -100.0)  # newest last
        self._mic_db = np.full(self.SPREAD + 1, -100.0)
        self._loud = np.zeros(self.MAX_DELAY + 1, dtype=np.int64)  # per delay
        self._quiet = np.zeros(self.MAX_DELAY + 1, dtype=np.int64)
        self._ruled_out = False

    def note(self, mic: Samples, reference: Samples) -> None:
        played = _frame_db(reference)
        if played > self.PLAYING_DB:
            self._since_playing = 0
        else:
            self._since_playing += 1
            if self._tail_over():
                self._forget()
                return
        self._reference_db = np.roll(self._reference_db, -1)
        self._reference_db[-1] = played
        self._mic_db = np.roll(self._mic_db, -1)
        self._mic_db[-1] = _frame_db(mic)
        if self._ruled_out:
            return
        # The microphone frame SPREAD frames ago, against the reference around each delay before it.
        heard = self._mic_db[0]
        windows = np.lib.stride_tricks.sliding_window_view(self._reference_db, 2 * self.SPREAD + 1)
        around = windows.min(axis=1)[::-1]  # index: delay in frames
        loud = around > self.LOUD_DB
        self._loud += loud
        self._quiet += loud & (heard < around + self.COUPLED_DB)
        if np.all(self._loud >= self.MIN_EVIDENCE) and np.all(self._quiet >= self.QUIET_SHARE * self._loud):
            self._ruled_out = True

    def absent(self) -> bool:
        return self._tail_over() or self._ruled_out

    def _tail_over(self) -> bool:
        return self._since_playing * FRAME > self.TAIL_S * RATE

    def _forget(self) -> None:
        """The reply is over: the next one is judged afresh (headphones may be off by then)."""
        if self._ruled_out or self._loud.any():
            self._reference_db.fill(-100.0)
            self._mic_db.fill(-100.0)
            self._loud.fill(0)
            self._quiet.fill(0)
            self._ruled_out = False

    def __repr__(self) -> str:
        ruled = int(np.sum((self._loud >= self.MIN_EVIDENCE) & (self._quiet >= self.QUIET_SHARE * self._loud)))
        return (
            f"EchoPath(quiet for {self._since_playing * FRAME / RATE:.2f} s, "
            f"{ruled} of {self.MAX_DELAY + 1} delays ruled out)"
        )


def _frame_db(samples: Samples) -> float:
    energy = float(np.dot(samples, samples)) / max(len(samples), 1)
    return 10.0 * float(np.log10(energy)) if energy > 1e-10 else -100.0


def _to_int16(samples: Samples) -> np.ndarray:
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)


def rms_db(samples: Samples) -> float:
    """Level in dBFS (−100 for silence)."""
    if len(samples) == 0:
        return -100.0
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return max(-100.0, 20.0 * float(np.log10(rms))) if rms > 0 else -100.0
