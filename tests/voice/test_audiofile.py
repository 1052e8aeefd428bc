"""Reading any audio file into 16 kHz mono, streaming resampling, writing WAV, and describing levels."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from app.errors import AudioError
from app.voice.audio import RATE
from app.voice.audiofile import (
    SILENCE_DBFS,
    Resampler,
    WavWriter,
    describe,
    load_audio,
    resample,
    resample_stream,
    save_wav,
)
from tests.voice.audio_files import dominant_frequency, encode, tone, write_wav
from tests.voice.conftest import JFK, STEREO

# ------------------------------------------------------------------ load_audio: formats


def test_48k_stereo_is_downmixed_and_resampled(tmp_path: Path) -> None:
    left, right = tone(440, 1.0, 48000, 0.6), tone(440, 1.0, 48000, 0.2)
    audio = load_audio(write_wav(tmp_path / "stereo48k.wav", np.stack([left, right], axis=1), 48000))
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) == RATE
    assert dominant_frequency(audio, RATE) == pytest.approx(440, abs=2)
    assert describe(audio)["peak"] == pytest.approx(0.4, abs=0.01)  # the average of the two channels


def test_opposite_channels_average_to_silence(tmp_path: Path) -> None:
    left = tone(300, 0.5, 16000)
    audio = load_audio(write_wav(tmp_path / "cancel.wav", np.stack([left, -left], axis=1), 16000))
    assert np.abs(audio).max() < 1e-3


@pytest.mark.parametrize("kind", ["pcm8", "pcm16", "pcm24", "pcm32", "float32", "float64"])
@pytest.mark.parametrize("rate", [8000, 22050, 44100])
def test_every_wav_sample_format_and_rate(tmp_path: Path, kind: str, rate: int) -> None:
    audio = load_audio(write_wav(tmp_path / f"{kind}.wav", tone(500, 0.5, rate, 0.5), rate, kind))
    assert len(audio) == RATE // 2
    assert dominant_frequency(audio, RATE) == pytest.approx(500, abs=3)
    assert describe(audio)["peak"] == pytest.approx(0.5, abs=0.02)
    assert abs(float(audio.mean())) < 0.01  # 8-bit is unsigned: it must come back centred on zero


def test_clipped_audio_is_fine(tmp_path: Path) -> None:
    audio = load_audio(write_wav(tmp_path / "clipped.wav", tone(200, 0.5, 16000, 3.0), 16000))
    stats = describe(audio)
    assert stats["peak"] == pytest.approx(1.0, abs=1e-3)
    assert stats["clipped_fraction"] > 0.5


def test_float_samples_beyond_full_scale_and_nan_are_tamed(tmp_path: Path) -> None:
    data = tone(200, 0.5, 16000, 4.0).astype(np.float64)
    data[100] = np.nan
    audio = load_audio(write_wav(tmp_path / "hot.wav", data, 16000, "float32"))
    assert np.isfinite(audio).all()
    assert np.abs(audio).max() <= 1.0


@pytest.mark.parametrize(
    ("name", "codec", "container", "rate"),
    [("a.flac", "flac", None, 44100), ("a.mp3", "libmp3lame", None, 44100), ("a.ogg", "libopus", "ogg", 48000)],
)
def test_compressed_formats(tmp_path: Path, name: str, codec: str, container: str | None, rate: int) -> None:
    audio = load_audio(encode(tmp_path / name, tone(440, 1.0, rate), rate, codec, container=container))
    assert len(audio) == pytest.approx(RATE, abs=RATE // 20)
    assert dominant_frequency(audio, RATE) == pytest.approx(440, abs=3)


def test_the_speech_fixtures() -> None:
    jfk = load_audio(JFK)
    assert describe(jfk)["duration_s"] == pytest.approx(11.0, abs=0.05)
    stereo = load_audio(STEREO)
    assert describe(stereo)["duration_s"] == pytest.approx(5.0, abs=0.05)


def test_a_truncated_wav_gives_what_is_there(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "cut.wav", tone(440, 1.0, 16000), 16000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    audio = load_audio(path)
    assert 0.4 < len(audio) / RATE < 0.55


# ------------------------------------------------------------------ load_audio: refusals


def _refused(path: Path, *phrases: str) -> AudioError:
    with pytest.raises(AudioError) as caught:
        load_audio(path)
    error = caught.value
    assert error.hint, "every refusal says what to do"
    for phrase in phrases:
        assert phrase in error.message, error.message
    return error


def test_missing_file(tmp_path: Path) -> None:
    _refused(tmp_path / "nope.wav", "does not exist")


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "zero.wav"
    path.write_bytes(b"")
    _refused(path, "empty")


def test_wav_with_no_samples(tmp_path: Path) -> None:
    path = tmp_path / "silent.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
    _refused(path, "no audio samples")


def test_a_picture_is_not_audio(tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "photo.png"
    Image.new("RGB", (16, 16), "red").save(path)
    _refused(path, "not an audio file")


def test_text_is_not_audio(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("These are my notes, not a recording.\n" * 50, encoding="utf-8")
    _refused(path, "not an audio file")


def test_a_folder_is_not_audio(tmp_path: Path) -> None:
    _refused(tmp_path, "folder")


# ------------------------------------------------------------------ resampling


@pytest.mark.parametrize(
    ("source", "target"), [(22050, 16000), (48000, 16000), (16000, 48000), (44100, 16000), (8000, 16000)]
)
def test_streaming_equals_one_shot(source: int, target: int) -> None:
    rng = np.random.default_rng(source)
    signal = (rng.standard_normal(source * 2) * 0.2).astype(np.float32)
    one_shot = resample(signal, source, target)
    assert len(one_shot) == -(-len(signal) * target // source)
    resampler, pieces, i = Resampler(source, target), [], 0
    while i < len(signal):
        n = int(rng.integers(1, 900))
        pieces.append(resampler.process(signal[i : i + n]))
        i += n
    pieces.append(resampler.flush())
    streamed = np.concatenate(pieces)
    assert len(streamed) == len(one_shot)
    np.testing.assert_allclose(streamed, one_shot, atol=1e-6)


def test_no_discontinuities_at_chunk_edges() -> None:
    """A sine streamed in uneven chunks stays a clean sine: no sample jumps, no error at any edge."""
    source = tone(440, 2.0, 22050, 0.8)
    chunks = np.array_split(source, np.cumsum([37, 512, 1, 2048, 700, 3, 4410] * 3))
    out = np.concatenate(list(resample_stream(chunks, 22050, 16000)))
    expected = 0.8 * np.sin(2 * np.pi * 440 * np.arange(len(out)) / 16000)
    inner = slice(400, len(out) - 400)  # away from the start and end of the whole signal
    assert np.abs(out - expected)[inner].max() < 1e-3
    steepest = 0.8 * 2 * np.pi * 440 / 16000
    assert np.abs(np.diff(out)).max() < steepest * 1.05


def test_resampling_removes_what_the_new_rate_cannot_hold() -> None:
    out = resample(tone(10000, 1.0, 22050, 0.9), 22050, 16000)  # above the new 8 kHz Nyquist limit
    assert np.abs(out[200:-200]).max() < 1e-3
    kept = resample(tone(3000, 1.0, 22050, 0.9), 22050, 16000)
    assert np.abs(kept[200:-200]).max() == pytest.approx(0.9, abs=0.01)


def test_same_rate_is_a_copy_and_bad_rates_are_refused() -> None:
    signal = tone(100, 0.1, 16000)
    assert np.array_equal(resample(signal, 16000, 16000), signal)
    with pytest.raises(ValueError):
        Resampler(0, 16000)


def test_a_resampler_is_reusable_after_flush() -> None:
    resampler = Resampler(22050, 16000)
    signal = tone(300, 0.3, 22050)
    first = np.concatenate([resampler.process(signal), resampler.flush()])
    second = np.concatenate([resampler.process(signal), resampler.flush()])
    assert np.array_equal(first, second)


# ------------------------------------------------------------------ writing and describing


def test_save_wav_round_trip(tmp_path: Path) -> None:
    signal = tone(440, 0.5, 16000, 0.7)
    path = save_wav(tmp_path / "out.wav", signal, 16000)
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, 16000, len(signal))
    np.testing.assert_allclose(load_audio(path), signal, atol=2 / 32767)


def test_save_wav_keeps_the_given_rate_and_clips(tmp_path: Path) -> None:
    path = save_wav(tmp_path / "hot.wav", np.array([2.0, -2.0, 0.5], dtype=np.float32), 22050)
    with wave.open(str(path), "rb") as w:
        assert w.getframerate() == 22050
        frames = np.frombuffer(w.readframes(3), dtype="<i2")
    assert list(frames) == [32767, -32767, 16384]


def test_a_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "keep.wav"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), WavWriter(target, 16000) as writer:
        writer.write(tone(440, 0.1, 16000))
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.wav"]


def test_writing_into_a_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="does not exist"):
        save_wav(tmp_path / "no" / "such.wav", tone(440, 0.1, 16000))


def test_describe() -> None:
    assert describe(np.zeros(16000, dtype=np.float32)) == {
        "duration_s": 1.0,
        "peak": 0.0,
        "rms_dbfs": SILENCE_DBFS,
        "clipped_fraction": 0.0,
    }
    assert describe(np.zeros(0, dtype=np.float32))["duration_s"] == 0.0
    sine = describe(tone(1000, 1.0, 16000, 1.0))
    assert sine["rms_dbfs"] == pytest.approx(-3.01, abs=0.05)
    assert sine["clipped_fraction"] == pytest.approx(2 / 16)  # 16 samples a cycle, the two crests at full scale
    assert describe(tone(1000, 1.0, 22050), rate=22050)["duration_s"] == 1.0
