"""Text to speech with Piper voices (VITS models in ONNX, phonemes from espeak-ng).

`Voice` loads one voice (`<name>.onnx` beside its `<name>.onnx.json`) and streams speech: text is
cut into sentences lazily — overly long ones at commas, then at spaces — and each piece is
synthesised and yielded as soon as it is ready, so the first words play while the rest is still
being made, and even a book-length text never becomes one giant array before it is heard.

Chunks come at the voice's own rate (22,050 Hz for medium voices) from `synthesize`, or at
Hearth's internal 16 kHz from `synthesize_16k` (one streaming resampler per call, so chunk edges
are seamless). Empty or blank text gives no chunks.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from app.errors import ModelError, VoiceError
from app.settings import physical_cores
from app.voice.audio import RATE, Samples
from app.voice.audiofile import resample_stream
from app.voice.speech_text import iter_sentences

log = logging.getLogger("hearth.voice.tts")

RATE_RANGE = (0.5, 2.0)  # speaking rates a person can still follow (the settings allow the same)
MAX_PIECE_CHARS = 400  # espeak and the voice handle sentences up to this length well
VOLUME = 0.9  # Piper normalises each sentence to full scale; leave headroom for resampling

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\ufeff]")
_EMOJI = re.compile(
    "[\U0001f000-\U0001faff\U0001fb00-\U0001fbff\u2600-\u27bf\u2b00-\u2bff\u2300-\u23ff"
    "\ufe0e\ufe0f\u200d\u20e3\U000e0020-\U000e007f]"
)


class Voice:
    """A loaded Piper voice."""

    def __init__(self, onnx_path: Path, *, speaking_rate: float = 1.0, threads: int | None = None) -> None:
        self.onnx_path = Path(onnx_path)
        self.config_path = Path(f"{self.onnx_path}.json")
        self.threads = threads or physical_cores()
        self._lock = threading.Lock()
        self._speaking_rate = check_rate(speaking_rate)
        self._voice = self._load()
        self.sample_rate = int(self._voice.config.sample_rate)
        log.info("voice: %s at %d Hz (%d threads)", self.onnx_path.name, self.sample_rate, self.threads)

    def _load(self) -> Any:
        hint = "Fetch the voice again with `hearth models fetch ID` (see `hearth models list`)."
        for path in (self.onnx_path, self.config_path):
            if not path.is_file():
                raise ModelError(f"The voice file {path} does not exist.", hint)
        try:
            import onnxruntime
            from piper import PiperVoice
            from piper.config import PiperConfig
        except ImportError as exc:
            raise ModelError(
                "Speech output is not installed (the piper-tts package is missing).",
                "Reinstall Hearth with its voice dependencies.",
            ) from exc
        try:
            config = PiperConfig.from_dict(json.loads(self.config_path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(
                f"The voice settings {self.config_path} cannot be read ({type(exc).__name__}: {exc}).", hint
            ) from exc
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # errors only: onnxruntime's warnings are not for users
        try:
            session = onnxruntime.InferenceSession(
                str(self.onnx_path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types for damaged or foreign files
            raise ModelError(
                f"The voice {self.onnx_path} cannot be loaded ({type(exc).__name__}: {exc}).", hint
            ) from exc
        return PiperVoice(session=session, config=config)

    # ------------------------------------------------------------ rate

    @property
    def speaking_rate(self) -> float:
        return self._speaking_rate

    def set_rate(self, rate: float) -> None:
        """Speaking speed from now on: 1 is the voice's natural pace, 2 twice as fast."""
        self._speaking_rate = check_rate(rate)

    # ------------------------------------------------------------ speaking

    def synthesize(self, text: str) -> Iterator[Samples]:
        """Speech for `text` at the voice's native rate, one float32 chunk per sentence, as it is made."""
        from piper.config import SynthesisConfig

        for piece in split_for_speech(text):
            config = SynthesisConfig(length_scale=1.0 / self._speaking_rate, volume=VOLUME)
            try:
                with self._lock:  # one session run at a time; phonemising also shares espeak's global state
                    chunks = list(self._voice.synthesize(piece, syn_config=config))
            except Exception as exc:  # espeak or onnxruntime failing on one piece: say which
                raise VoiceError(
                    f"The voice could not speak “{piece[:60]}”: {type(exc).__name__}: {exc}",
                    "Try rephrasing the text, or choose another voice.",
                ) from exc
            for chunk in chunks:
                audio = np.asarray(chunk.audio_float_array, dtype=np.float32).reshape(-1)
                if len(audio):
                    yield audio

    def synthesize_16k(self, text: str) -> Iterator[Samples]:
        """`synthesize` converted to Hearth's 16 kHz, chunk by chunk."""
        for chunk in resample_stream(self.synthesize(text), self.sample_rate, RATE):
            yield np.clip(chunk, -1.0, 1.0)

    def speak_all(self, text: str, *, at_16k: bool = False) -> Samples:
        """The whole of `text` as one array (native rate, or 16 kHz with `at_16k`); empty for blank text."""
        chunks = list(self.synthesize_16k(text) if at_16k else self.synthesize(text))
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)


def clean_text(text: str) -> str:
    """Text without control characters or emoji, which voices either spell out or choke on."""
    return _EMOJI.sub("", _CONTROL.sub(" ", text))


def split_for_speech(text: str, max_chars: int = MAX_PIECE_CHARS) -> Iterator[str]:
    """Sentences of `text`, lazily, none longer than `max_chars` (cut at commas, then spaces)."""
    for sentence in iter_sentences(text):
        yield from _short_pieces(sentence, max_chars)


def _short_pieces(sentence: str, max_chars: int) -> Iterator[str]:
    sentence = " ".join(clean_text(sentence).split())
    if not any(ch.isalnum() for ch in sentence):
        return
    while len(sentence) > max_chars:
        window = sentence[: max_chars + 1]
        cut = max(window.rfind(", "), window.rfind("; "), window.rfind(": "))
        if cut < max_chars // 3:  # no comma in a useful place: cut at the last space instead
            cut = window.rfind(" ")
        if cut <= 0:  # one enormous "word": cut it anywhere
            cut = max_chars
        head, sentence = sentence[: cut + 1].strip(), sentence[cut + 1 :].strip()
        if any(ch.isalnum() for ch in head):
            yield head
    if any(ch.isalnum() for ch in sentence):
        yield sentence


def check_rate(rate: float) -> float:
    """`rate` when it is a speaking rate a voice can use; VoiceError otherwise."""
    low, high = RATE_RANGE
    if not isinstance(rate, int | float) or not low <= rate <= high:
        raise VoiceError(
            f"A speaking rate of {rate!r} is out of range.",
            f"Use a rate from {low} (slow) to {high} (fast); 1 is the voice's natural pace.",
        )
    return float(rate)
