"""Speech to text with faster-whisper (CTranslate2 Whisper models).

`Transcriber` loads a converted Whisper model folder (model.bin, config.json, tokenizer.json,
vocabulary.txt) once and turns 16 kHz mono utterances into a `Transcript`. It is tuned for a
conversation, where each call holds one short turn that the voice loop has already cut out with its
own voice detection:

* greedy decoding (beam 1), no timestamps for clips up to 30 s, no conditioning on earlier text, and
  no built-in voice filter; a modest temperature fallback for the rare garbled decode;
* the encoder reads the clip and 15 s of padding, not the full 30 s window Whisper was trained
  on: 1.7 times faster on a short turn, with the same words on the test speech. When the result
  is doubtful there (the decoder had to fall back from a repetition loop or a low-confidence
  decode, or our filter below drops a segment), the clip is transcribed again over the full
  window. With less padding, one-word answers ("Okay.", "Thanks.") come out doubled or lost;
* int8 weights with float32 arithmetic on the CPU (about a fifth faster than CTranslate2's plain
  "int8" here, same words), float16 on an NVIDIA GPU when CTranslate2 sees one — and back to the CPU, with a
  log line, when the GPU cannot load or run the model;
* Whisper invents words for silence and noise ("you", "Thank you."). Segments the model itself
  marks as probably-not-speech are dropped, and the stock phrases it produces for near-silence are
  dropped unless the audio and the model's confidence say they were really spoken. Silence in,
  empty text out.

One transcription runs at a time (a lock); any thread may call `transcribe`.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.errors import ModelError, VoiceError
from app.settings import physical_cores
from app.voice.audio import RATE, Samples

log = logging.getLogger("hearth.voice.stt")

MODEL_FILES = ("model.bin", "config.json", "tokenizer.json")
CPU_COMPUTE = "int8_float32"

# Decoding: latency first. Whisper's default ladder goes up to 1.0; three steps keep the worst case short.
TEMPERATURES = (0.0, 0.3, 0.6)
NO_SPEECH_THRESHOLD = 0.6  # faster-whisper skips a window above this when its log-probability is low too
LOG_PROB_THRESHOLD = -1.0
COMPRESSION_RATIO_THRESHOLD = 2.4
SHORT_FORM_S = 30.0  # one Whisper window: no timestamps needed to move through the audio
PADDING_FRAMES = 1500  # 15 s of the window's padding kept after the clip (100 frames a second)

# Our own filter on what is left.
DROP_NO_SPEECH = 0.5  # a segment this likely to be non-speech …
DROP_LOG_PROB = -0.7  # … and decoded with this little confidence is dropped
PHANTOM_NO_SPEECH = 0.25  # a stock phrase survives only with less no-speech probability than this …
PHANTOM_LOG_PROB = -0.5  # … more confidence than this …
PHANTOM_LEVEL_DBFS = -45.0  # … and audio louder than this (loudest 100 ms)
SILENT_PEAK = 10 ** (-70 / 20)  # below this the clip is digital silence: the model is not asked

# What tiny/base Whisper models say when there is nothing to hear (compared after normalising).
PHANTOM_PHRASES = frozenset(
    {
        "you",
        "thank you",
        "thank you very much",
        "thanks",
        "thanks for watching",
        "thank you for watching",
        "thanks for listening",
        "thank you for listening",
        "please subscribe",
        "subscribe",
        "bye",
        "bye bye",
        "goodbye",
        "so",
        "oh",
        "okay",
        "ok",
        "ah",
        "uh",
        "um",
        "hmm",
        "mm",
        "huh",
        "the end",
        "were not going to do that",
        "im going to go to sleep",
        "i dont know",
        "music",
        "applause",
        "silence",
        "laughter",
        "blank_audio",
    }
)

_WORDS = re.compile(r"[a-z0-9_]+(?:'[a-z]+)?")
_BRACKETED = re.compile(r"^\s*[\[(*♪].*[\])*♪]\s*$")


@dataclass(frozen=True)
class Segment:
    """One decoded stretch: times in seconds from the start of the clip, and the model's confidence."""

    start: float
    end: float
    text: str
    no_speech_prob: float
    avg_logprob: float


@dataclass(frozen=True)
class Transcript:
    """What was said in one clip ("" for nothing), its language, and how long the clip and the work took."""

    text: str
    language: str
    duration_s: float
    elapsed_s: float
    segments: tuple[Segment, ...] = ()

    @property
    def rtf(self) -> float:
        """Real-time factor: seconds of computing per second of audio (0 for an empty clip)."""
        return self.elapsed_s / self.duration_s if self.duration_s > 0 else 0.0


class Transcriber:
    """A loaded Whisper model that turns 16 kHz mono speech into text."""

    def __init__(
        self, model_dir: Path, *, device: str = "auto", threads: int | None = None, language: str | None = None
    ) -> None:
        self.model_dir = Path(model_dir)
        self.threads = threads or physical_cores()
        self.language = _language_or_none(language)
        self._lock = threading.Lock()
        _check_model_dir(self.model_dir)
        self._model, self.device, self.compute_type = self._load(device)
        self.multilingual = bool(self._model.model.is_multilingual)
        log.info(
            "speech recognition: %s on %s (%s, %d threads, %s)",
            self.model_dir.name,
            self.device,
            self.compute_type,
            self.threads,
            "multilingual" if self.multilingual else "English only",
        )

    # ------------------------------------------------------------ loading

    def _load(self, device: str) -> tuple[Any, str, str]:
        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, not {device!r}")
        if device == "auto":
            device = "cuda" if _cuda_devices() > 0 else "cpu"
        if device == "cuda":
            try:
                model = self._open("cuda", "float16")
                _probe(model)  # CUDA libraries load lazily: a missing cuBLAS only shows when the model runs
                return model, "cuda", "float16"
            except ModelError as exc:
                log.warning("speech recognition cannot use the GPU (%s); using the CPU instead", exc.message)
            except Exception as exc:  # a broken GPU set-up is not a reason to have no voice at all
                log.warning(
                    "speech recognition cannot use the GPU (%s: %s); using the CPU instead", type(exc).__name__, exc
                )
        return self._open("cpu", CPU_COMPUTE), "cpu", CPU_COMPUTE

    def _open(self, device: str, compute_type: str) -> Any:
        try:
            whisper_model = _whisper_model_class()
        except ImportError as exc:
            raise ModelError(
                "Speech recognition is not installed (the faster-whisper package is missing).",
                "Reinstall Hearth with its voice dependencies.",
            ) from exc
        try:
            return whisper_model(
                str(self.model_dir),
                device=device,
                compute_type=compute_type,
                cpu_threads=self.threads,
                num_workers=1,
                local_files_only=True,
            )
        except Exception as exc:  # CTranslate2 raises RuntimeError/ValueError for unreadable or foreign files
            raise ModelError(
                f"The speech recognition model in {self.model_dir} cannot be loaded ({type(exc).__name__}: {exc}).",
                "The files may be damaged or not a CTranslate2 Whisper model: fetch the model again (`hearth models fetch ID`).",
            ) from exc

    @property
    def languages(self) -> tuple[str, ...]:
        """Language codes the model transcribes ("en" alone for English-only models)."""
        return tuple(self._model.supported_languages)

    # ------------------------------------------------------------ using

    def warm_up(self) -> None:
        """Run one short transcription so the first real turn does not pay for first-call set-up."""
        noise = np.random.default_rng(0).standard_normal(RATE // 2).astype(np.float32) * 0.01
        with self._lock:
            segments, _ = self._model.transcribe(
                noise, language=None if self.multilingual else "en", **self._options(len(noise))
            )
            list(segments)

    def transcribe(
        self, audio: Samples, language: str | None = None, prompt: str | None = None, *, full_window: bool = False
    ) -> Transcript:
        """Text of a 16 kHz mono float32 clip; "" when nothing was said.

        `language` (a code such as "de") overrides the one given at construction; English-only
        models always transcribe English. `prompt` is text the speaker is likely to use (names, terms).
        `full_window` makes the encoder read the whole 30 s window every time (to compare against).
        """
        samples = np.nan_to_num(np.asarray(audio, dtype=np.float32).reshape(-1))
        duration = len(samples) / RATE
        lang = "en" if not self.multilingual else _language_or_none(language) or self.language
        if lang is not None and lang not in self.languages:
            raise VoiceError(
                f"'{lang}' is not a language this speech model knows.",
                "Use a code such as en, de, fr or es, or auto to detect it.",
            )
        if len(samples) == 0 or float(np.max(np.abs(samples))) < SILENT_PEAK:
            return Transcript("", lang or "en", duration, 0.0, ())
        started = time.monotonic()
        level = loudest_dbfs(samples)
        with self._lock:
            raw, info = self._decode(samples, lang, prompt, full_window)
            kept = _kept(raw, level)
            if not full_window and (len(kept) < len(raw) or any(_doubtful(s) for s in raw)):
                log.debug("an unsure decode over the short window; transcribing over the full window")
                raw, info = self._decode(samples, lang, prompt, full_window=True)
                kept = _kept(raw, level)
        elapsed = time.monotonic() - started
        text = " ".join(s.text for s in kept).strip()
        return Transcript(re.sub(r"\s+", " ", text), info.language, duration, elapsed, kept)

    def _decode(self, samples: Samples, language: str | None, prompt: str | None, full_window: bool = False) -> Any:
        self._model.full_window = full_window
        try:
            raw, info = self._model.transcribe(
                samples, language=language, initial_prompt=prompt or None, **self._options(len(samples))
            )
            return list(raw), info
        finally:
            self._model.full_window = False

    def _options(self, n_samples: int) -> dict[str, Any]:
        return {
            "beam_size": 1,
            "best_of": 1,
            "temperature": list(TEMPERATURES),
            "compression_ratio_threshold": COMPRESSION_RATIO_THRESHOLD,
            "log_prob_threshold": LOG_PROB_THRESHOLD,
            "no_speech_threshold": NO_SPEECH_THRESHOLD,
            "condition_on_previous_text": False,
            "without_timestamps": n_samples <= SHORT_FORM_S * RATE,
            "vad_filter": False,
            "suppress_blank": True,
        }


@functools.cache
def _whisper_model_class() -> type:
    """faster-whisper's model, with an encoder that reads the clip and `PADDING_FRAMES` of padding.

    faster-whisper pads every window's features with zeros to 30 s; the encoder's cost grows with
    its input, and a short turn is mostly padding. Frames after the last one with any non-zero value
    are that padding (a real frame of log-mel features is never all zeros).
    """
    from faster_whisper import WhisperModel

    class ShortWindowWhisper(WhisperModel):  # type: ignore[misc]
        full_window = False

        def encode(self, features: np.ndarray) -> Any:
            if not self.full_window:
                heard = np.flatnonzero(np.any(features != 0, axis=-2).reshape(-1, features.shape[-1]).any(axis=0))
                keep = min(features.shape[-1], (int(heard[-1]) + 1 if len(heard) else 0) + PADDING_FRAMES)
                features = features[..., :keep]
            return super().encode(features)

    return ShortWindowWhisper


def _kept(segments: list[Any], level_dbfs: float) -> tuple[Segment, ...]:
    return tuple(
        Segment(round(s.start, 3), round(s.end, 3), s.text.strip(), float(s.no_speech_prob), float(s.avg_logprob))
        for s in segments
        if keep_segment(s.text, float(s.no_speech_prob), float(s.avg_logprob), level_dbfs)
    )


def _doubtful(segment: Any) -> bool:
    """Whether faster-whisper had to fall back for a segment, or gave up on doing better."""
    return bool(
        segment.temperature
        or segment.compression_ratio > COMPRESSION_RATIO_THRESHOLD
        or segment.avg_logprob < LOG_PROB_THRESHOLD
    )


def keep_segment(text: str, no_speech_prob: float, avg_logprob: float, level_dbfs: float) -> bool:
    """Whether a decoded segment is speech worth returning (see the module notes)."""
    words = normalise(text)
    if not words or _BRACKETED.match(text):
        return False  # punctuation only, or a caption such as "[Music]" / "(silence)"
    if no_speech_prob > DROP_NO_SPEECH and avg_logprob < DROP_LOG_PROB:
        return False
    if words in PHANTOM_PHRASES:
        return no_speech_prob < PHANTOM_NO_SPEECH and avg_logprob > PHANTOM_LOG_PROB and level_dbfs > PHANTOM_LEVEL_DBFS
    return True


def normalise(text: str) -> str:
    """Lower-case words without punctuation, for comparing phrases."""
    return " ".join(m.group(0).replace("'", "") for m in _WORDS.finditer(text.lower().replace("’", "'")))


def loudest_dbfs(samples: Samples, window: int = RATE // 10) -> float:
    """RMS level of the loudest `window`-sample stretch, in dBFS."""
    from app.voice.audiofile import dbfs

    if len(samples) == 0:
        return dbfs(0.0)
    n = max(1, len(samples) // window)
    frames = samples[: n * window].reshape(n, -1) if len(samples) >= window else samples.reshape(1, -1)
    return dbfs(float(np.sqrt(np.max(np.mean(np.square(frames, dtype=np.float64), axis=1)))))


def _check_model_dir(folder: Path) -> None:
    hint = "Fetch the speech recognition model again with `hearth models fetch ID` (see `hearth models list`)."
    if not folder.is_dir():
        raise ModelError(f"The speech recognition model folder {folder} does not exist.", hint)
    missing = [name for name in MODEL_FILES if not (folder / name).is_file()]
    if missing:
        # Without tokenizer.json faster-whisper would try to download one: never go online behind the user's back.
        raise ModelError(f"The speech recognition model in {folder} is incomplete: {', '.join(missing)} missing.", hint)


def _probe(model: Any) -> None:
    segments, _ = model.transcribe(
        np.zeros(RATE // 4, dtype=np.float32),
        beam_size=1,
        without_timestamps=True,
        language="en" if not model.model.is_multilingual else None,
    )
    list(segments)


def _cuda_devices() -> int:
    try:
        import ctranslate2

        return int(ctranslate2.get_cuda_device_count())
    except Exception:  # no CUDA runtime at all reads as no GPU
        return 0


def _language_or_none(language: str | None) -> str | None:
    if language is None:
        return None
    language = language.strip().lower()
    return None if language in ("", "auto") else language
