"""Speech recognition with the real Whisper tiny.en model: real speech, silence, noise, failures."""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from app.errors import ModelError
from app.voice import stt
from app.voice.audio import RATE
from app.voice.audiofile import load_audio
from app.voice.stt import Transcriber, Transcript, keep_segment
from app.voice.tts import Voice
from app.voice.wer import word_error_rate
from tests.voice.conftest import JFK, JFK_TEXT, THREADS

pytestmark = pytest.mark.voice


def test_real_speech_golden_transcript(transcriber: Transcriber) -> None:
    result = transcriber.transcribe(load_audio(JFK))
    assert isinstance(result, Transcript)
    assert word_error_rate(JFK_TEXT, result.text) <= 0.05, result.text
    assert result.language == "en"
    assert result.duration_s == pytest.approx(11.0, abs=0.05)
    assert result.elapsed_s > 0
    assert result.segments and all(s.text for s in result.segments)
    assert result.segments[0].start == 0.0 and result.segments[-1].end <= result.duration_s + 0.01
    assert result.rtf == pytest.approx(result.elapsed_s / result.duration_s)


def _encoder_positions(transcriber: Transcriber, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many positions the encoder produced in each of the transcriber's calls from now on."""
    seen: list[int] = []
    model = transcriber._model
    encode = model.encode

    def counted(features: np.ndarray) -> object:
        out = encode(features)
        seen.append(int(out.shape[1]))
        return out

    monkeypatch.setattr(model, "encode", counted)
    return seen


def test_the_encoder_reads_the_clip_and_fifteen_seconds_of_padding(
    transcriber: Transcriber, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whisper's window is 30 s (1500 encoder positions); a 4 s turn is read as 4 + 15 s."""
    seen = _encoder_positions(transcriber, monkeypatch)
    result = transcriber.transcribe(load_audio(JFK)[: 4 * RATE])
    assert result.text.startswith("And so my fellow Americans"), result.text
    assert seen == [(4 * 100 + 1 + stt.PADDING_FRAMES) // 2]


def test_an_unsure_decode_is_done_again_over_the_full_window(
    transcriber: Transcriber, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stt, "LOG_PROB_THRESHOLD", 0.0)  # no decode is sure enough: each one falls back
    seen = _encoder_positions(transcriber, monkeypatch)
    result = transcriber.transcribe(load_audio(JFK)[: 4 * RATE])
    assert seen == [(4 * 100 + 1 + stt.PADDING_FRAMES) // 2, 1500]
    assert result.text.startswith("And so my fellow Americans"), result.text


def test_a_segment_the_filter_drops_is_tried_again_over_the_full_window(
    transcriber: Transcriber, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stt, "DROP_NO_SPEECH", -1.0)  # every segment counts as noise …
    monkeypatch.setattr(stt, "DROP_LOG_PROB", 1.0)  # … decoded without confidence: all are dropped
    seen = _encoder_positions(transcriber, monkeypatch)
    assert transcriber.transcribe(load_audio(JFK)[: 4 * RATE]).text == ""
    assert seen == [(4 * 100 + 1 + stt.PADDING_FRAMES) // 2, 1500]


def test_runs_on_the_cpu_in_int8_when_asked(transcriber: Transcriber) -> None:
    assert (transcriber.device, transcriber.compute_type) == ("cpu", "int8_float32")
    assert transcriber.multilingual is False and transcriber.languages == ("en",)


@pytest.mark.parametrize("seconds", [0.05, 1.0, 3.0])
def test_silence_gives_no_text(transcriber: Transcriber, seconds: float) -> None:
    assert transcriber.transcribe(np.zeros(int(seconds * RATE), dtype=np.float32)).text == ""


def _pink(n: int, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n)) / np.sqrt(np.arange(1, n // 2 + 2))
    x = np.fft.irfft(spectrum, n)
    return (x / np.std(x)).astype(np.float32)


@pytest.mark.parametrize("level", [0.001, 0.003, 0.01, 0.03])
@pytest.mark.parametrize("colour", ["white", "pink"])
def test_low_noise_gives_no_text(transcriber: Transcriber, level: float, colour: str) -> None:
    rng = np.random.default_rng(int(level * 1000))
    noise = rng.standard_normal(3 * RATE).astype(np.float32) if colour == "white" else _pink(3 * RATE, rng)
    result = transcriber.transcribe(noise * level)
    assert result.text == "", result.segments


def test_mains_hum_gives_no_text(transcriber: Transcriber) -> None:
    t = np.arange(2 * RATE) / RATE
    hum = (0.03 * np.sin(2 * np.pi * 50 * t) + 0.01 * np.sin(2 * np.pi * 150 * t)).astype(np.float32)
    assert transcriber.transcribe(hum).text == ""


def test_empty_clip(transcriber: Transcriber) -> None:
    result = transcriber.transcribe(np.zeros(0, dtype=np.float32))
    assert (result.text, result.duration_s, result.segments) == ("", 0.0, ())


@pytest.mark.parametrize(
    ("text", "no_speech", "log_prob", "level", "kept"),
    [
        ("Thank you.", 0.05, -0.1, -20.0, True),  # really said: confident, loud, clearly speech
        ("Thank you.", 0.40, -0.1, -20.0, False),  # the model doubts there was speech
        ("Thank you.", 0.05, -0.9, -20.0, False),  # the model doubts its words
        ("you", 0.05, -0.1, -60.0, False),  # near silence
        ("We're not going to do that.", 0.2, -0.6, -50.0, False),
        ("Turn the lights off.", 0.05, -0.2, -55.0, True),  # quiet, but not a stock phrase
        ("Turn the lights off.", 0.7, -0.9, -20.0, False),  # probably not speech, decoded with little confidence
        (" .", 0.0, -0.1, -20.0, False),
        ("[Music]", 0.0, -0.1, -20.0, False),
        ("(silence)", 0.0, -0.1, -20.0, False),
    ],
)
def test_segment_filter(text: str, no_speech: float, log_prob: float, level: float, kept: bool) -> None:
    assert keep_segment(text, no_speech, log_prob, level) is kept


def test_an_english_only_model_ignores_the_language(transcriber: Transcriber) -> None:
    result = transcriber.transcribe(load_audio(JFK)[: 4 * RATE], language="de")
    assert result.language == "en"
    assert "fellow americans" in result.text.lower()


def test_a_prompt_is_accepted(transcriber: Transcriber) -> None:
    result = transcriber.transcribe(load_audio(JFK), prompt="Kennedy's inaugural address.")
    assert word_error_rate(JFK_TEXT, result.text) <= 0.1


def test_concurrent_calls_are_serialised_and_both_right(transcriber: Transcriber) -> None:
    audio = load_audio(JFK)
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(transcriber.transcribe(audio).text)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2
    assert all(word_error_rate(JFK_TEXT, text) <= 0.05 for text in results)


def test_gpu_request_falls_back_to_the_cpu_when_there_is_none(
    whisper_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import ctranslate2

    caplog.set_level(logging.WARNING, logger="hearth.voice.stt")
    engine = Transcriber(whisper_dir, device="cuda", threads=THREADS)
    if ctranslate2.get_cuda_device_count() > 0:
        assert (engine.device, engine.compute_type) in (("cuda", "float16"), ("cpu", "int8_float32"))
    else:
        assert (engine.device, engine.compute_type) == ("cpu", "int8_float32")
        assert "cannot use the GPU" in caplog.text
    assert "fellow americans" in engine.transcribe(load_audio(JFK)[: 4 * RATE]).text.lower()


# ------------------------------------------------------------------ model files that cannot load


def test_missing_model_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist") as caught:
        Transcriber(tmp_path / "nowhere")
    assert "hearth models fetch" in caught.value.hint


def test_missing_tokenizer_is_refused_instead_of_downloaded(tmp_path: Path, whisper_dir: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("model.bin", "config.json", "vocabulary.txt"):
        (folder / name).symlink_to(whisper_dir / name)
    with pytest.raises(ModelError, match="tokenizer.json missing"):
        Transcriber(folder)


def test_damaged_weights(tmp_path: Path, whisper_dir: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(whisper_dir, folder, ignore=shutil.ignore_patterns("model.bin"))
    (folder / "model.bin").write_bytes(b"\x00not a model" * 100)
    with pytest.raises(ModelError, match="cannot be loaded") as caught:
        Transcriber(folder, device="cpu", threads=THREADS)
    assert caught.value.hint


def test_the_benchmark_compares_both_windows_on_the_same_speech(transcriber: Transcriber, voice: Voice) -> None:
    from app.bench.voice import _recognition
    from app.voice.utterances import espeak_utterance, piper_utterances

    sentences = ["The meeting has been moved to Thursday afternoon.", "How far away is the moon from the earth?"]
    utterances = [*piper_utterances(voice, sentences), espeak_utterance(sentences[0])]
    figures = _recognition(transcriber, utterances)
    assert len(figures["errors"]) == len(figures["full_errors"]) == 3
    assert max(figures["errors"][:2]) == max(figures["full_errors"][:2]) == 0.0, figures
    assert figures["audio_s"] == pytest.approx(sum(len(u.samples) for u in utterances) / RATE)
