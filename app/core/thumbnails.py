"""Small copies of stored pictures, for showing them in a conversation.

A conversation may hold many pictures of up to 2048 pixels a side; decoding those each time the
chat is drawn would stall the window. Each stored picture gets one small PNG beside the store,
``<images>/thumbs/<sha[:2]>/<sha>-<side>.png``, made off the GUI thread the first time the
picture is shown and kept from then on (the side is part of the name, so a new size never
picks up an old file). The chat view only ever reads these. Nothing here imports Qt.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable
from pathlib import Path

from app.core.attachments import attachments_of
from app.core.conversation import Message
from app.core.images import ImageStore, normalise, write_atomically
from app.errors import ImageError

log = logging.getLogger("hearth.images")

THUMBNAIL_SIDE = 320  # twice the size the chat shows, so a high-DPI screen gets sharp previews


class Thumbnails:
    def __init__(self, store: ImageStore, side: int = THUMBNAIL_SIDE) -> None:
        self.store = store
        self.side = side
        self.folder = store.folder / "thumbs"

    def path_for(self, sha256: str) -> Path:
        """Where the thumbnail of a stored picture lives (whether or not it is made yet)."""
        original = self.store.path_for(sha256)  # checks that this is a picture's address
        return self.folder / original.parent.name / f"{sha256}-{self.side}.png"

    def ensure(self, sha256: str) -> Path | None:
        """The thumbnail, made now if needed; None when the stored picture itself is gone."""
        path = self.path_for(sha256)
        if path.is_file():
            return path
        try:
            small = normalise(self.store.get(sha256), max_side=self.side)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, small.data)
        except (ImageError, OSError) as exc:
            log.warning("no thumbnail for picture %s: %s", sha256[:12], exc)
            return None
        return path

    def ensure_for(self, messages: Iterable[Message]) -> None:
        """Make sure every picture attached to `messages` has its thumbnail."""
        for message in messages:
            for attachment in attachments_of(message):
                self.ensure(attachment.sha256)


UNUSED_GRACE_S = 120.0  # a picture stored this recently may belong to a message being sent


def forget_unused_pictures(in_use: set[str], store: ImageStore, *, grace_s: float = UNUSED_GRACE_S) -> int:
    """Delete stored pictures (and their thumbnails) that no message holds any more.

    `in_use` comes from `Store.picture_addresses()`. A picture is stored a moment before its
    message is, so pictures younger than `grace_s` are kept: the next clean-up takes them.
    Returns how many pictures were deleted. Files that cannot be deleted are left and logged.
    """
    now = time.time()
    stored = store.addresses()
    removed = 0
    for sha256, path in list(stored.items()):
        if sha256 in in_use:
            continue
        try:
            if now - path.stat().st_mtime < grace_s:
                continue
            path.unlink()
        except OSError as exc:
            log.warning("could not delete unused picture %s: %s", sha256[:12], exc)
            continue
        del stored[sha256]
        removed += 1
    # One pass over the thumbnails: those of the pictures just deleted, and any left behind earlier.
    for thumb in Thumbnails(store).folder.glob("[0-9a-f][0-9a-f]/*-*.png"):
        sha256 = thumb.name.split("-", 1)[0]
        if sha256 not in in_use and sha256 not in stored:
            with contextlib.suppress(OSError):
                thumb.unlink()
    if removed:
        log.info("deleted %d picture(s) no conversation holds", removed)
    return removed
