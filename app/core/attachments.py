"""Pictures attached to a user's message, and how a text-only model gets to "see" them.

Each picture is normalised, stored by content and read (OCR) once, when the message is sent.
The message's ``meta["images"]`` records what the prompt needs — the stored picture's address,
its name and size, and the text read from it — so the history survives the original file
moving, OCR never runs again, and a message renders to the same prompt text on every turn
(which keeps the KV cache reusable).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from app.core.conversation import Message
from app.core.images import ImageStore, NormalisedImage, normalise
from app.engines.ocr import TextReader, describe_read_text

ImageSource = Path | bytes
IMAGE_ONLY_TEXT = "(image)"  # the stored text of a message that is only pictures
UNNAMED = "image"


@dataclass(frozen=True)
class Attachment:
    """One picture as a message records it in ``meta["images"]``."""

    sha256: str  # the picture's address in the ImageStore
    name: str  # the file name the user attached, for the prompt and the chat
    width: int
    height: int
    format: str  # what the file was ("JPEG", "GIF", ...); the stored copy is always PNG
    ocr_text: str  # the text read from it, as read: fencing happens when the prompt is built

    def to_meta(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_meta(cls, record: dict[str, Any]) -> Attachment:
        return cls(
            sha256=str(record["sha256"]),
            name=str(record.get("name") or UNNAMED),
            width=int(record.get("width", 0)),
            height=int(record.get("height", 0)),
            format=str(record.get("format", "unknown")),
            ocr_text=str(record.get("ocr_text", "")),
        )

    def describe(self) -> str:
        return describe_read_text(self.name, self.width, self.height, self.format, self.ocr_text)


def attach(
    images: Sequence[ImageSource], image_store: ImageStore | None, reader: TextReader | None
) -> list[Attachment]:
    """Normalise and read every picture, then store them; ImageError for any bad one, before storing any."""
    if not images:
        return []
    if image_store is None or reader is None:
        raise ValueError("attaching pictures needs an ImageStore and a TextReader")
    prepared = [_prepare(source, index, len(images), reader) for index, source in enumerate(images)]
    for picture, _ in prepared:
        image_store.put(picture)
    return [attachment for _, attachment in prepared]


def _prepare(source: ImageSource, index: int, count: int, reader: TextReader) -> tuple[NormalisedImage, Attachment]:
    name = source.name if isinstance(source, Path) else (f"{UNNAMED} {index + 1}" if count > 1 else UNNAMED)
    picture = normalise(source, name=name)
    text = reader.read(picture).text
    attachment = Attachment(picture.sha256, name, picture.width, picture.height, picture.original_format, text)
    return picture, attachment


def attachments_of(message: Message) -> list[Attachment]:
    return [Attachment.from_meta(record) for record in message.meta.get("images", [])]


def picture_addresses(message: Message) -> tuple[str, ...]:
    """The stored pictures of a user's message, in order (none for anything else)."""
    return tuple(a.sha256 for a in attachments_of(message)) if message.role == "user" else ()


def prompt_text(message: Message) -> str:
    """What the model reads for `message`: its text, then what each attached picture contains."""
    attachments = attachments_of(message) if message.role == "user" else []
    if not attachments:
        return message.content
    return "\n\n".join([message.content, *(attachment.describe() for attachment in attachments)])
