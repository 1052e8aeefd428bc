"""Audio files for tests, written byte by byte (WAV) or by FFmpeg through PyAV (FLAC, MP3, Ogg, M4A)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_wav(path: Path, channels: np.ndarray, rate: int, kind: str = "pcm16") -> Path:
    """`channels` is (n,) or (n, channels) float in [-1, 1] (values beyond are clipped for integer kinds).

    kind: "pcm8" (unsigned), "pcm16", "pcm24", "pcm32", "float32" or "float64".
    """
    data = np.asarray(channels, dtype=np.float64)
    if data.ndim == 1:
        data = data[:, None]
    n, count = data.shape
    clipped = np.clip(data, -1.0, 1.0)
    if kind == "pcm8":
        payload, bits, tag = np.round(clipped * 127 + 128).astype(np.uint8).tobytes(), 8, 1
    elif kind == "pcm16":
        payload, bits, tag = np.round(clipped * 32767).astype("<i2").tobytes(), 16, 1
    elif kind == "pcm24":
        ints = np.round(clipped * 8388607).astype("<i4").reshape(-1)
        payload = b"".join(int(v).to_bytes(3, "little", signed=True) for v in ints)
        bits, tag = 24, 1
    elif kind == "pcm32":
        payload, bits, tag = np.round(clipped * 2147483647).astype("<i4").tobytes(), 32, 1
    elif kind == "float32":
        payload, bits, tag = data.astype("<f4").tobytes(), 32, 3
    elif kind == "float64":
        payload, bits, tag = data.astype("<f8").tobytes(), 64, 3
    else:
        raise ValueError(kind)
    block = count * bits // 8
    fmt = struct.pack("<HHIIHH", tag, count, rate, rate * block, block, bits)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(payload)) + payload
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks)
    assert n * block == len(payload)
    return path


def encode(path: Path, samples: np.ndarray, rate: int, codec: str, *, container: str | None = None) -> Path:
    """Mono float samples encoded with an FFmpeg codec (flac, libmp3lame, libopus, aac) into `path`."""
    import av

    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        frame_size = 960 if codec == "libopus" else 1152 if "mp3" in codec else 1024
        fmt = stream.codec_context.format.name
        for start in range(0, len(samples), frame_size):
            chunk = samples[start : start + frame_size]
            if fmt in ("s16", "s16p"):
                array = np.round(np.clip(chunk, -1, 1) * 32767).astype(np.int16)[None, :]
            elif fmt in ("s32", "s32p"):
                array = np.round(np.clip(chunk, -1, 1) * 2147483647).astype(np.int32)[None, :]
            else:
                array = chunk.astype(np.float32)[None, :]
            frame = av.AudioFrame.from_ndarray(array, format=fmt, layout="mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate / len(samples))
