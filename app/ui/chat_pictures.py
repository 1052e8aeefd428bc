"""How a message's pictures look in the conversation: thumbnails with names, and what was read.

Every thumbnail is a link (``hearth-action:picture:<message>:<index>``) that opens the picture;
under them a disclosure (``hearth-action:read:<message>``) shows, word for word, the text Hearth
read from each picture and gave the model. All of it is HTML for the chat's QTextDocument, and
every name and every word read is escaped: both come from outside Hearth.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QImage

from app.core.attachments import Attachment
from app.core.thumbnails import Thumbnails

ACTION_SCHEME = "hearth-action"  # Hearth's own links in the chat (see app.ui.chat_view)
BOX = (160, 120)  # the largest a thumbnail is shown, in device-independent pixels
PER_ROW = 4
NAME_CHARS = 24
TIP_CHARS = 600


def display_size(width: int, height: int) -> tuple[int, int]:
    """The picture's size in the chat: fitted into `BOX`, never enlarged."""
    if width <= 0 or height <= 0:
        return BOX
    scale = min(1.0, BOX[0] / width, BOX[1] / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def fit_thumbnail(image: QImage, ratio: float) -> QImage:
    """A thumbnail scaled smoothly to exactly the screen pixels it covers (the painter would not smooth it)."""
    width, height = display_size(image.width(), image.height())
    target_w, target_h = round(width * ratio), round(height * ratio)
    if (target_w, target_h) != (image.width(), image.height()) and target_w < image.width():
        image = image.scaled(
            target_w, target_h, Qt.AspectRatioMode.IgnoreAspectRatio, Qt.TransformationMode.SmoothTransformation
        )
    image.setDevicePixelRatio(ratio)
    return image


def pictures_html(message_id: int, attachments: list[Attachment], thumbnails: Thumbnails | None, reading: bool) -> str:
    if not attachments:
        return ""
    cells = [_cell(message_id, n, a, thumbnails) for n, a in enumerate(attachments)]
    rows = ["<tr>" + "".join(cells[i : i + PER_ROW]) + "</tr>" for i in range(0, len(cells), PER_ROW)]
    table = f"<table cellspacing='6' cellpadding='0' style='margin-top:6px'>{''.join(rows)}</table>"
    return table + _reading_html(message_id, attachments, reading)


def _cell(message_id: int, index: int, attachment: Attachment, thumbnails: Thumbnails | None) -> str:
    name = html.escape(_short(attachment.name))
    href = f"{ACTION_SCHEME}:picture:{message_id}:{index}"
    path = thumbnails.path_for(attachment.sha256) if thumbnails is not None else None
    if path is not None and path.is_file():
        width, height = display_size(attachment.width, attachment.height)
        src = html.escape(
            QUrl.fromLocalFile(str(path)).toString(QUrl.ComponentFormattingOption.FullyEncoded), quote=True
        )
        picture = f"<img src='{src}' width='{width}' height='{height}' alt='{name}'>"
    else:
        picture = "<span style='color:gray'>[picture missing]</span>"
    return (
        f"<td valign='bottom'><a href='{href}'>{picture}</a><br>"
        f"<span style='font-size:small; color:gray'>{name}</span></td>"
    )


def _reading_html(message_id: int, attachments: list[Attachment], reading: bool) -> str:
    href = f"{ACTION_SCHEME}:read:{message_id}"
    toggle = (
        f"<p style='font-size:small; margin-top:2px'><a href='{href}'>{'▾' if reading else '▸'} What was read</a></p>"
    )
    if not reading:
        return toggle
    parts = [toggle]
    for attachment in attachments:
        facts = f"{attachment.width}×{attachment.height} {attachment.format}"
        parts.append(
            f"<p style='font-size:small; margin-bottom:0'><b>{html.escape(attachment.name)}</b> · {html.escape(facts)}</p>"
        )
        text = attachment.ocr_text.strip()
        if text:
            parts.append(f"<pre style='white-space:pre-wrap; margin-top:2px'>{html.escape(text)}</pre>")
        else:
            parts.append(
                "<p style='font-size:small; color:gray; margin-top:2px'>No text was found in this picture.</p>"
            )
    return "".join(parts)


def picture_tip(attachment: Attachment) -> str:
    """A thumbnail's tooltip: its name and size, and the start of the text read from it."""
    text = attachment.ocr_text.strip()
    shown = text if len(text) <= TIP_CHARS else text[: TIP_CHARS - 1] + "…"
    read = f"Read: {html.escape(shown)}" if shown else "No text was found in it."
    facts = f"{attachment.width}×{attachment.height} {attachment.format}"
    return (
        f"<p style='white-space:pre-wrap'><b>{html.escape(attachment.name)}</b> · {html.escape(facts)}<br>"
        f"{read}<br><i>Click to enlarge.</i></p>"
    )


def parse_picture_link(target: str) -> tuple[int, int] | None:
    """(message id, index) from the part after ``picture:`` of a thumbnail's link."""
    message, _, index = target.partition(":")
    if message.isdigit() and index.isdigit():
        return int(message), int(index)
    return None


def _short(name: str) -> str:
    if len(name) <= NAME_CHARS:
        return name
    stem, dot, suffix = name.rpartition(".")
    keep = NAME_CHARS - len(suffix) - 2
    return f"{stem[:keep]}…{dot}{suffix}" if dot and keep > 4 else name[: NAME_CHARS - 1] + "…"


def is_inside(url: QUrl, folder: Path) -> bool:
    if not url.isLocalFile():
        return False
    return Path(os.path.realpath(url.toLocalFile())).is_relative_to(os.path.realpath(folder))
