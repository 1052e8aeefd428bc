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
