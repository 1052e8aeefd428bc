"""Speech synthesis with the real Piper voice: streaming, rates, resampling, and a round trip through Whisper."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from app.errors import ModelError, VoiceError
from app.voice.audio import RATE
from app.voice.audiofile import describe, resample_stream
from app.voice.stt import Transcriber
from app.voice.tts import MAX_PIECE_CHARS, Voice, split_for_speech
from app.voice.wer import word_error_rate
from tests.voice.conftest import THREADS

pytestmark = pytest.mark.voice

THREE = "The quick brown fox jumps over the lazy dog. It was a sunny day in the park. Everyone had a good time."


def test_native_rate_chunks_one_per_sentence(voice: Voice) -> None:
    assert voice.sample_rate == 22050
    chunks = list(voice.synthesize(THREE))
    assert len(chunks) == 3
    for chunk in chunks:
        assert chunk.dtype == np.float32 and chunk.ndim == 1
        stats = describe(chunk, voice.sample_rate)
        assert stats["rms_dbfs"] > -30 and 0.3 < stats["peak"] <= 1.0
        assert 0.8 < stats["duration_s"] < 6


def test_16k_chunks_have_the_right_length(voice: Voice) -> None:
    native = list(voice.synthesize(THREE))
    converted = list(resample_stream(native, voice.sample_rate, RATE))
    n_native, n_16k = sum(map(len, native)), sum(map(len, converted))
    assert n_16k == -(-n_native * RATE // voice.sample_rate)
    # The voice varies its timing a little from one synthesis to the next.
    streamed = voice.speak_all(THREE, at_16k=True)
    assert len(streamed) / RATE == pytest.approx(n_native / voice.sample_rate, rel=0.1)
    assert np.abs(streamed).max() <= 1.0


def test_round_trip_through_speech_recognition(voice: Voice, transcriber: Transcriber) -> None:
    result = transcriber.transcribe(voice.speak_all(THREE, at_16k=True))
    assert word_error_rate(THREE, result.text) <= 0.05, result.text


@pytest.mark.parametrize("text", ["", "   ", "\n\t\n", "... !!! ???", "🎉🎉"])
def test_nothing_to_say_yields_nothing(voice: Voice, text: str) -> None:
    assert list(voice.synthesize(text)) == []
    assert list(voice.synthesize_16k(text)) == []
    assert len(voice.speak_all(text)) == 0


def test_huge_text_streams_from_the_first_sentence(voice: Voice) -> None:
    huge = "This is one ordinary sentence, spoken again and again. " * 4000  # about 220 KB
    assert len(huge) > 200_000
    stream = voice.synthesize_16k(huge)
    first = [next(stream) for _ in range(3)]
    stream.close()
    assert all(len(chunk) / RATE < 8 for chunk in first)  # sentence-sized pieces, not one giant array


def test_overly_long_sentences_are_cut_before_synthesis(voice: Voice) -> None:
    run_on = " ".join(f"word{i}" for i in range(600))  # about 4,500 characters, no punctuation
    pieces = list(split_for_speech(run_on))
    assert len(pieces) > 5 and all(len(p) <= MAX_PIECE_CHARS for p in pieces)
    assert " ".join(pieces) == run_on
    with_commas = ", ".join(["a clause with some words in it"] * 40) + "."
    assert all(p.endswith((",", ".")) for p in split_for_speech(with_commas))
    chunk = next(voice.synthesize(run_on))
    assert len(chunk) > 0


def test_emoji_and_control_characters_are_skipped(voice: Voice, transcriber: Transcriber) -> None:
    audio = voice.speak_all("Good \x00morning 🌞 everyone\x07!", at_16k=True)
    assert word_error_rate("Good morning everyone", transcriber.transcribe(audio).text) <= 0.34


def test_speaking_rate(piper_onnx: Path) -> None:
    voice = Voice(piper_onnx, speaking_rate=0.5, threads=THREADS)
    slow = len(voice.speak_all("The horizon seems extremely distant."))
    voice.set_rate(2.0)
    assert voice.speaking_rate == 2.0
    fast = len(voice.speak_all("The horizon seems extremely distant."))
    assert slow / fast > 2.5
    for bad in (0.0, 0.1, 5.0, float("nan")):
        with pytest.raises(VoiceError):
            voice.set_rate(bad)
    with pytest.raises(VoiceError, match="out of range"):
        Voice(piper_onnx, speaking_rate=3.0)


def test_two_threads_can_speak_at_once(voice: Voice) -> None:
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda: results.append(len(voice.speak_all("Hello from a thread.")))) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2 and all(n > voice.sample_rate // 2 for n in results)


# ------------------------------------------------------------------ voice files that cannot load


def test_missing_voice_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist") as caught:
        Voice(tmp_path / "nobody.onnx")
    assert "hearth models fetch" in caught.value.hint


def test_missing_voice_settings(tmp_path: Path, piper_onnx: Path) -> None:
    (tmp_path / "v.onnx").symlink_to(piper_onnx)
    with pytest.raises(ModelError, match=r"v\.onnx\.json does not exist"):
        Voice(tmp_path / "v.onnx")


def test_damaged_voice_settings(tmp_path: Path, piper_onnx: Path) -> None:
    (tmp_path / "v.onnx").symlink_to(piper_onnx)
    (tmp_path / "v.onnx.json").write_text("{ not json", encoding="utf-8")
    with pytest.raises(ModelError, match="cannot be read"):
        Voice(tmp_path / "v.onnx")


def test_damaged_voice_model(tmp_path: Path, piper_onnx: Path) -> None:
    (tmp_path / "v.onnx").write_bytes(b"not an onnx model" * 64)
    shutil.copy(f"{piper_onnx}.json", tmp_path / "v.onnx.json")
    with pytest.raises(ModelError, match="cannot be loaded"):
        Voice(tmp_path / "v.onnx")
