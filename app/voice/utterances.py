"""Spoken test questions with known words and a known end of speech, for the benchmark and tests.

Speech is synthesised with the Piper voice (at several speeds) and, where installed, espeak-ng
(a different, harder voice). Each utterance starts with half a second of silence, because a real
microphone loses its first few hundred milliseconds; `end_index` is the last sample of speech,
found from the audio itself, so latency is measured from the true end of speech.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.voice.audio import RATE, Samples

LEAD_S = 0.5
SPEECH_DB = -40.0  # a 10 ms frame louder than this is speech

QUESTIONS = (
    "What is the capital of France?",
    "Tell me a short joke about computers.",
    "How many legs does a spider have?",
    "What colour is the sky on a clear day?",
    "Name three fruits that are red.",
    "Why do cats like boxes?",
    "What time of year do leaves fall from trees?",
    "Can you suggest a name for a small black dog?",
    "What is the opposite of cold?",
    "How do I boil an egg?",
    "Which planet is closest to the sun?",
    "Give me one tip for sleeping better.",
)

# Sentences for the word error rate: plain words, no numbers, so spelling is unambiguous.
WER_SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Please open the window before the meeting starts.",
    "She bought fresh bread and a bottle of milk this morning.",
    "Turn left at the second street and walk past the library.",
    "The children played in the garden until it was dark.",
    "We should water the plants while the weather is warm.",
    "My brother lives in a small house near the river.",
    "Remember to bring a warm coat because it will be cold tonight.",
)


@dataclass(frozen=True)
class Utterance:
    text: str
    samples: Samples  # 16 kHz mono, with LEAD_S of silence first
    start_index: int  # first sample of speech
    end_index: int  # last sample of speech
    voice: str

    @property
    def duration_s(self) -> float:
        return len(self.samples) / RATE


def speech_bounds(samples: Samples, frame: int = 160, threshold_db: float = SPEECH_DB) -> tuple[int, int]:
    """(first, last) sample index of the frames louder than `threshold_db`; (0, 0) for silence."""
    n = len(samples) // frame
    if n == 0:
        return 0, 0
    frames = samples[: n * frame].reshape(n, frame).astype(np.float64)
    rms = np.sqrt(np.mean(frames * frames, axis=1))
    loud = np.nonzero(20 * np.log10(np.maximum(rms, 1e-10)) > threshold_db)[0]
    if len(loud) == 0:
        return 0, 0
    return int(loud[0] * frame), int((loud[-1] + 1) * frame - 1)


def _utterance(text: str, speech: Samples, voice: str) -> Utterance:
    lead = np.zeros(int(LEAD_S * RATE), dtype=np.float32)
    samples = np.concatenate([lead, speech.astype(np.float32)])
    start, end = speech_bounds(samples)
    return Utterance(text, samples, start, end, voice)


def piper_utterances(
    voice: object, texts: Iterable[str] = QUESTIONS, rates: Iterable[float] = (1.0,)
) -> list[Utterance]:
    """Each text spoken by the Piper `Voice` (app.voice.tts.Voice) at each speaking rate."""
    result = []
    for rate in rates:
        voice.set_rate(rate)  # type: ignore[attr-defined]
        for text in texts:
            chunks = list(voice.synthesize_16k(text))  # type: ignore[attr-defined]
            result.append(_utterance(text, np.concatenate(chunks), f"piper×{rate:g}"))
    voice.set_rate(1.0)  # type: ignore[attr-defined]
    return result


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def espeak_utterance(text: str, words_per_minute: int = 160) -> Utterance:
    """`text` spoken by espeak-ng (US English), resampled to 16 kHz."""
    from app.voice.audiofile import load_audio

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        subprocess.run(
            ["espeak-ng", "-v", "en-us", "-s", str(words_per_minute), "-w", str(path), text],
            check=True,
            capture_output=True,
            timeout=60,
        )
        speech = load_audio(path)
    return _utterance(text, speech, "espeak-ng")
