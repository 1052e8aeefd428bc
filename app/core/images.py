"""Images a user attaches: checked, normalised and stored by content.

Whatever arrives (a phone photo lying on its side, a transparent logo, a CMYK scan, a 16-bit
PNG, an animated GIF) leaves as one upright RGB PNG no larger than `max_side`, so engines
and the chat view see one kind of picture. Each is stored under its own sha256, so a
conversation keeps its pictures after the original file moves or is deleted.
Nothing here imports Qt.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from app.errors import ImageError

MAX_PIXELS = 100_000_000  # larger is a decompression bomb or nothing a chat needs
DEFAULT_MAX_SIDE = 2048
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")  # JPEG covers cameras' MPO files too
_ACCEPTED_HINT = "Hearth reads PNG, JPEG, WebP, GIF, BMP and TIFF pictures."
_SHA256 = re.compile(r"[0-9a-f]{64}")

# Pillow warns above its limit and refuses at twice it; tie both to ours. The size check in
# `_open` refuses anything over MAX_PIXELS before a single pixel is decoded.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a cut-off file is an error, not a grey half-picture


@dataclass(frozen=True)
class NormalisedImage:
    data: bytes  # the encoded picture, in `format`
    width: int
    height: int
    format: str  # always "PNG" today
    original_format: str  # what the file was: "JPEG", "GIF", ...
    sha256: str  # of `data`: the picture's address in the ImageStore

    @property
    def mime_type(self) -> str:
        return f"image/{self.format.lower()}"


def normalise(data: bytes | Path, max_side: int = DEFAULT_MAX_SIDE, *, name: str | None = None) -> NormalisedImage:
    """Decode `data` (bytes or a file), or raise ImageError saying what is wrong and what to do."""
    label = name or (data.name if isinstance(data, Path) else "the image")
    raw = _read(data, label)
    image = _open(raw, label)
    original_format = image.format or "unknown"
    picture = _fit(_to_rgb(_upright(image, label)), max_side)
    encoded = io.BytesIO()
    picture.save(encoded, format="PNG", optimize=False)
    png = encoded.getvalue()
    return NormalisedImage(
        data=png,
        width=picture.width,
        height=picture.height,
        format="PNG",
        original_format=original_format,
        sha256=hashlib.sha256(png).hexdigest(),
    )


def _read(data: bytes | Path, label: str) -> bytes:
    if isinstance(data, bytes):
        raw = data
    else:
        try:
            raw = data.read_bytes()
        except OSError as exc:
            raise ImageError(
                f"Hearth cannot read the picture '{label}' ({exc.strerror or exc}).",
                "Check that the file still exists and that you may read it.",
            ) from exc
    if not raw:
        raise ImageError(
            f"The picture '{label}' is empty (0 bytes).",
            "The file may still be copying or downloading: wait, then attach it again.",
        )
    return raw


def _open(raw: bytes, label: str) -> Image.Image:
    """Open lazily: only the header is read, so the size can be refused before any decoding."""
    try:
        image = Image.open(io.BytesIO(raw), formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise _too_large(label, None) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"'{label}' is not a picture Hearth can read.", _ACCEPTED_HINT) from exc
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise _too_large(label, (width, height))
    return image


def _too_large(label: str, size: tuple[int, int] | None) -> ImageError:
    shown = f" ({size[0]}×{size[1]} pixels)" if size else ""
    return ImageError(
        f"The picture '{label}'{shown} is too large to open safely: Hearth's limit is {MAX_PIXELS // 1_000_000} megapixels.",
        "Scale it down in an image editor, or attach a screenshot of the part that matters.",
    )


def _upright(image: Image.Image, label: str) -> Image.Image:
    """The first frame, decoded, turned the way the camera's EXIF says it was held."""
    try:
        image.seek(0)
        image.load()
        turned = ImageOps.exif_transpose(image)
    except Image.DecompressionBombError as exc:
        raise _too_large(label, None) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(
            f"The picture '{label}' is damaged or cut off ({exc}).",
            "Open it in another program to check it, or save or download it again.",
        ) from exc
    return turned if turned is not None else image


def _to_rgb(image: Image.Image) -> Image.Image:
    """Plain 8-bit RGB: transparency composited on white, 16-bit and float scaled down."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        image = _deep_to_8bit(image)
    if _has_transparency(image):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _has_transparency(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def _deep_to_8bit(image: Image.Image) -> Image.Image:
    """Scale a 16-bit or 32-bit grey picture into 0..255 (a plain convert would clip it to white)."""
    if image.mode.startswith("I;16"):
        full_scale = 65535.0
        image = image.convert("I")
    else:
        extrema = image.getextrema()
        high = extrema[1] if isinstance(extrema[1], int | float) else 255
        full_scale = float(max(high, 255))  # a 32-bit picture has no fixed white: use its brightest pixel
        image = image.convert("F")
    scaled = image.point(lambda value: value * (255.0 / full_scale))
    return scaled.convert("L")


def _fit(image: Image.Image, max_side: int) -> Image.Image:
    if max(image.size) <= max_side:
        return image
    fitted = image.copy()
    fitted.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return fitted


class ImageStore:
    """Pictures by content: `<folder>/<sha[:2]>/<sha>.png`, written once, never half-written."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path_for(self, sha256: str) -> Path:
        if not _SHA256.fullmatch(sha256):
            raise ImageError(f"'{sha256}' is not an image address.", "This is a bug in Hearth; please report it.")
        return self.folder / sha256[:2] / f"{sha256}.png"

    def put(self, image: NormalisedImage) -> Path:
        """Store `image` and return its path; storing the same picture again writes nothing."""
        path = self.path_for(image.sha256)
        if path.is_file():
            with contextlib.suppress(OSError):
                os.utime(path)  # in use again: a clean-up now must not take it (see forget_unused_pictures)
            return path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, image.data)
        except OSError as exc:
            raise ImageError(
                f"Hearth cannot store the picture in {self.folder} ({exc.strerror or exc}).",
                "Free up some disk space, or check the data folder's permissions.",
            ) from exc
        return path

    def get(self, sha256: str) -> Path:
        """The stored picture's path, or ImageError when it is not (or no longer) there."""
        path = self.path_for(sha256)
        if not path.is_file():
            raise ImageError(
                f"The picture {sha256[:12]}… is missing from {self.folder}.",
                "It may have been deleted by hand; attach the picture again.",
            )
        return path

    def addresses(self) -> dict[str, Path]:
        """Every stored picture, by address."""
        found: dict[str, Path] = {}
        for path in self.folder.glob("[0-9a-f][0-9a-f]/*.png"):
            if _SHA256.fullmatch(path.stem):
                found[path.stem] = path
        return found

    def __contains__(self, sha256: object) -> bool:
        return isinstance(sha256, str) and _SHA256.fullmatch(sha256) is not None and self.path_for(sha256).is_file()


def write_atomically(path: Path, data: bytes) -> None:
    """A unique temporary file, then one rename: the final name never holds half a picture.

    Two writers of the same picture race harmlessly, since both hold the same bytes.
    """
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem[:8]}-", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
