"""Pictures in every format and mode a user may drop come out as one upright RGB PNG, or a clear error."""

from __future__ import annotations

import hashlib
import io
import zlib
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.core.images import MAX_PIXELS, ImageStore, normalise
from app.errors import HearthError, ImageError
from app.paths import DataPaths


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def left_right(width: int = 40, height: int = 20) -> Image.Image:
    """Red left half, blue right half: orientation and colour both show."""
    image = Image.new("RGB", (width, height), (255, 0, 0))
    image.paste((0, 0, 255), (width // 2, 0, width, height))
    return image


@pytest.mark.parametrize(
    ("fmt", "options"),
    [("PNG", {}), ("JPEG", {"quality": 95}), ("WEBP", {"lossless": True}), ("BMP", {}), ("TIFF", {}), ("GIF", {})],
)
def test_every_accepted_format_becomes_an_rgb_png(fmt: str, options: dict[str, object]) -> None:
    result = normalise(encode(left_right(), fmt, **options), name=f"picture.{fmt.lower()}")
    picture = decoded(result.data)
    assert (result.format, picture.format, picture.mode) == ("PNG", "PNG", "RGB")
    assert (result.width, result.height) == picture.size == (40, 20)
    assert result.original_format == fmt
    assert result.sha256 == hashlib.sha256(result.data).hexdigest()
    red, blue = picture.getpixel((5, 10)), picture.getpixel((35, 10))
    assert red[0] > 200 and red[2] < 60 and blue[2] > 200 and blue[0] < 60


def test_rgba_transparency_is_composited_on_white() -> None:
    image = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    image.paste((0, 128, 0, 255), (0, 0, 5, 10))
    picture = decoded(normalise(encode(image, "PNG")).data)
    assert picture.getpixel((8, 5)) == (255, 255, 255)
    assert picture.getpixel((2, 5)) == (0, 128, 0)


def test_palette_transparency_is_composited_on_white() -> None:
    image = Image.new("P", (10, 10), 0)
    image.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    image.paste(1, (0, 0, 5, 10))
    data = encode(image, "PNG", transparency=0)
    assert Image.open(io.BytesIO(data)).info.get("transparency") == 0
    picture = decoded(normalise(data).data)
    assert picture.getpixel((8, 5)) == (255, 255, 255)
    assert picture.getpixel((2, 5)) == (200, 30, 30)


def test_grey_with_alpha_is_composited_on_white() -> None:
    image = Image.new("LA", (4, 4), (0, 0))
    picture = decoded(normalise(encode(image, "PNG")).data)
    assert picture.getpixel((1, 1)) == (255, 255, 255)


def test_cmyk_jpeg_becomes_rgb() -> None:
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    data = encode(cmyk, "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    red = decoded(normalise(data).data).getpixel((8, 8))
    assert red[0] > 200 and red[1] < 60 and red[2] < 60


def test_16_bit_png_is_scaled_not_clipped_to_white() -> None:
    ramp = (np.arange(64, dtype=np.uint16) * 1040).reshape(1, 64).repeat(8, axis=0)  # 0 .. 65520
    data = encode(Image.fromarray(ramp), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I;16")
    picture = decoded(normalise(data).data)
    assert picture.getpixel((0, 4))[0] < 5
    assert 120 <= picture.getpixel((32, 4))[0] <= 136
    assert picture.getpixel((63, 4))[0] > 250


def test_32_bit_grey_is_scaled_by_its_brightest_pixel() -> None:
    ramp = (np.arange(16, dtype=np.int32) * 100_000).reshape(1, 16).repeat(4, axis=0)
    picture = decoded(normalise(encode(Image.fromarray(ramp, mode="I"), "TIFF")).data)
    assert picture.getpixel((0, 2))[0] == 0 and picture.getpixel((15, 2))[0] == 255


def test_one_bit_image_becomes_black_and_white_rgb() -> None:
    image = Image.new("1", (8, 8), 1)
    image.paste(0, (0, 0, 4, 8))
    picture = decoded(normalise(encode(image, "PNG")).data)
    assert picture.getpixel((1, 1)) == (0, 0, 0) and picture.getpixel((6, 1)) == (255, 255, 255)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animation_keeps_its_first_frame(fmt: str) -> None:
    frames = [Image.new("RGB", (12, 12), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    data = encode(
        frames[0],
        fmt,
        save_all=True,
        append_images=frames[1:],
        duration=100,
        loop=0,
        **({"lossless": True} if fmt == "WEBP" else {}),
    )
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    pixel = decoded(normalise(data).data).getpixel((6, 6))
    assert pixel[0] > 200 and pixel[1] < 60 and pixel[2] < 60


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    data = encode(left_right(40, 20), "JPEG", quality=95, exif=exif)
    result = normalise(data)
    assert (result.width, result.height) == (20, 40)
    picture = decoded(result.data)
    top, bottom = picture.getpixel((10, 5)), picture.getpixel((10, 35))
    assert top[0] > 200 and bottom[2] > 200  # the red left edge is now on top


def test_large_picture_is_scaled_down_keeping_its_shape() -> None:
    result = normalise(encode(Image.new("RGB", (4000, 1000), (10, 20, 30)), "PNG"))
    assert (result.width, result.height) == (2048, 512)
    small = normalise(encode(Image.new("RGB", (4000, 1000), (10, 20, 30)), "PNG"), max_side=400)
    assert (small.width, small.height) == (400, 100)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares `width`×`height` 1-bit pixels in a few hundred bytes: a decompression bomb."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])
    rows = zlib.compress(b"\x00" * (1 + (width + 7) // 8) * 16)  # only a few rows: nothing must decode them
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


@pytest.mark.parametrize("size", [(20_000, 20_000), (11_000, 10_000)])
def test_decompression_bomb_is_refused_before_decoding(size: tuple[int, int]) -> None:
    data = png_header_only(*size)
    assert len(data) < 10_000
    assert size[0] * size[1] > MAX_PIXELS
    # Pillow itself refuses at twice the limit; between the two it only warns, and Hearth refuses.
    pillow_refuses = size[0] * size[1] > 2 * MAX_PIXELS
    with nullcontext() if pillow_refuses else pytest.warns(Image.DecompressionBombWarning):
        with pytest.raises(ImageError) as raised:
            normalise(data, name="bomb.png")
    assert "bomb.png" in raised.value.message and "too large" in raised.value.message
    assert raised.value.hint


def test_bytes_that_are_not_a_picture_are_refused() -> None:
    with pytest.raises(ImageError) as raised:
        normalise(b"%PDF-1.7\nnot a picture at all\n", name="report.pdf")
    assert "report.pdf" in raised.value.message and "not a picture" in raised.value.message
    assert "PNG" in raised.value.hint


def test_truncated_jpeg_is_refused(tmp_path: Path) -> None:
    noise = Image.fromarray(np.random.default_rng(1).integers(0, 255, (200, 200, 3), dtype=np.uint8))
    whole = encode(noise, "JPEG", quality=90)
    cut = tmp_path / "holiday.jpg"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ImageError) as raised:
        normalise(cut)
    assert "holiday.jpg" in raised.value.message and "damaged or cut off" in raised.value.message
    assert raised.value.hint


def test_empty_file_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageError) as raised:
        normalise(empty)
    assert "empty.png" in raised.value.message and "0 bytes" in raised.value.message
    assert isinstance(raised.value, HearthError) and raised.value.hint


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="gone.png"):
        normalise(tmp_path / "gone.png")


def test_store_addresses_pictures_by_content(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    first = normalise(encode(left_right(), "PNG"))
    path = store.put(first)
    assert path == tmp_path / "images" / first.sha256[:2] / f"{first.sha256}.png"
    assert path.read_bytes() == first.data
    assert store.get(first.sha256) == path and first.sha256 in store

    # The same picture in another format normalises to the same bytes: stored once.
    again = normalise(encode(left_right(), "BMP"))
    assert again.sha256 == first.sha256
    inode = path.stat().st_ino
    assert store.put(again) == path and path.stat().st_ino == inode  # not written again
    assert [p.name for p in (tmp_path / "images").rglob("*") if p.is_file()] == [path.name]

    other = store.put(normalise(encode(Image.new("RGB", (3, 3), "white"), "PNG")))
    assert other != path and other.is_file()


def test_store_refuses_unknown_or_malformed_addresses(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    with pytest.raises(ImageError, match="missing"):
        store.get("0" * 64)
    with pytest.raises(ImageError):
        store.get("../../etc/passwd")
    assert "../x" not in store


def test_data_paths_create_the_image_folder(tmp_path: Path) -> None:
    paths = DataPaths(tmp_path / "home").ensure()
    assert paths.images == tmp_path / "home" / "images" and paths.images.is_dir()
