"""Pictures drawn with Pillow for tests: real PNG bytes, made on the spot."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from tests.conftest import require

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def plain_png(width: int = 64, height: int = 48, colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    return png_bytes(Image.new("RGB", (width, height), colour))


def text_png(text: str, size: int = 32) -> bytes:
    """Black `text` on white with a margin of one line height, in DejaVu Sans."""
    require(FONT.is_file(), f"{FONT} is missing (apt-get install fonts-dejavu-core)")
    font = ImageFont.truetype(str(FONT), size)
    left, top, right, bottom = font.getbbox(text)
    image = Image.new("RGB", (right - left + 2 * size, bottom - top + 2 * size), (255, 255, 255))
    ImageDraw.Draw(image).text((size - left, size - top), text, font=font, fill=(0, 0, 0))
    return png_bytes(image)


def noise_jpeg(width: int = 200, height: int = 150, seed: int = 1) -> bytes:
    """A photo-like JPEG: random pixels compress badly, as a real photo does."""
    import numpy as np

    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90)
    return out.getvalue()


def truncated_jpeg() -> bytes:
    """The first half of a JPEG, as a download cut off half-way leaves it."""
    whole = noise_jpeg()
    return whole[: len(whole) // 2]


def bomb_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A PNG that declares `width`×`height` 1-bit pixels in a few hundred bytes: a decompression bomb."""
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])
    rows = zlib.compress(b"\x00" * (1 + (width + 7) // 8) * 16)  # a few rows: nothing may decode the rest
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
