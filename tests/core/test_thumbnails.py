"""The small copies of stored pictures that the chat shows: made once, beside the store, from the stored copy."""

from __future__ import annotations

import os
import time
from pathlib import Path

from PIL import Image

from app.core.conversation import Message
from app.core.images import ImageStore, normalise
from app.core.thumbnails import Thumbnails, forget_unused_pictures
from tests.pictures import noise_jpeg


def stored_picture(store: ImageStore, width: int = 1200, height: int = 800) -> str:
    picture = normalise(noise_jpeg(width, height), name="photo.jpg")
    store.put(picture)
    return picture.sha256


def test_a_thumbnail_is_made_once_and_fits_its_side(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    sha = stored_picture(store)
    thumbnails = Thumbnails(store, side=200)
    path = thumbnails.ensure(sha)
    assert path == tmp_path / "images" / "thumbs" / sha[:2] / f"{sha}-200.png"
    with Image.open(path) as thumbnail:
        assert thumbnail.size == (200, 133) and thumbnail.format == "PNG"
    made = path.stat().st_mtime_ns
    assert thumbnails.ensure(sha) == path and path.stat().st_mtime_ns == made  # not made again
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind


def test_a_small_picture_is_not_enlarged(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    sha = stored_picture(store, 90, 40)
    path = Thumbnails(store).ensure(sha)
    assert path is not None
    with Image.open(path) as thumbnail:
        assert thumbnail.size == (90, 40)


def test_no_thumbnail_when_the_stored_picture_is_gone(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    sha = stored_picture(store)
    store.get(sha).unlink()
    assert Thumbnails(store).ensure(sha) is None


def test_every_picture_of_the_messages_gets_one(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    first, second = stored_picture(store), stored_picture(store, 300, 600)
    messages = [
        Message(1, 1, "user", "two pictures", meta={"images": [{"sha256": first}, {"sha256": second}]}),
        Message(2, 1, "assistant", "I see them."),
    ]
    thumbnails = Thumbnails(store)
    thumbnails.ensure_for(messages)
    assert thumbnails.path_for(first).is_file() and thumbnails.path_for(second).is_file()


def _age(path: Path, seconds: float = 3600) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_pictures_no_message_holds_are_deleted_with_their_thumbnails(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    kept, dropped, fresh = stored_picture(store), stored_picture(store, 300, 600), stored_picture(store, 500, 500)
    thumbnails = Thumbnails(store)
    for sha in (kept, dropped, fresh):
        assert thumbnails.ensure(sha) is not None
    for sha in (kept, dropped):
        _age(store.get(sha))
    orphan_thumb = thumbnails.folder / "ab" / f"{'ab' * 32}-320.png"  # its picture went long ago
    orphan_thumb.parent.mkdir(parents=True, exist_ok=True)
    orphan_thumb.write_bytes(b"png")

    assert forget_unused_pictures({kept}, store) == 1
    assert kept in store and thumbnails.path_for(kept).is_file()
    assert dropped not in store and not thumbnails.path_for(dropped).exists()
    # Stored a moment ago, so maybe for a message on its way to the store: kept for now.
    assert fresh in store and thumbnails.path_for(fresh).is_file()
    assert not orphan_thumb.exists()
    assert forget_unused_pictures({kept}, store, grace_s=0) == 1 and fresh not in store


def test_storing_a_picture_again_protects_it_from_a_clean_up(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    picture = normalise(noise_jpeg(200, 100), name="again.jpg")
    path = store.put(picture)
    _age(path)
    assert store.put(picture) == path  # attached once more: its message is on its way
    assert forget_unused_pictures(set(), store) == 0 and picture.sha256 in store


def test_a_picture_that_cannot_be_deleted_is_left_and_the_rest_go_on(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    other = stored_picture(store)
    _age(store.get(other))
    stuck = "cd" * 32
    blocker = store.path_for(stuck)
    (blocker / "inside").mkdir(parents=True)  # a folder where the file should be: unlink fails, even for root
    _age(blocker)
    assert forget_unused_pictures(set(), store) == 1
    assert blocker.is_dir() and other not in store
