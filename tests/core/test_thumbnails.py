"""The small copies of stored pictures that the chat shows: made once, beside the store, from the stored copy."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from app.core.conversation import Message
from app.core.images import ImageStore, normalise
from app.core.thumbnails import Thumbnails
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
