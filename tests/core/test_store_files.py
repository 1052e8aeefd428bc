"""The store's file handling: schema migrations, damaged files, locks and unusable folders."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from app.core import store_db
from app.core.store import Store
from app.errors import StoreBusyError, StoreError


def _backups(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".corrupt-" in p.name)


def _schema(path: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()
    finally:
        conn.close()


def _user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


# -- schema and migrations -------------------------------------------------------------------


def test_wal_and_pragmas_are_on(store: Store, db_path: Path) -> None:
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
    assert store._db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL


def test_migrates_an_empty_file_and_reopens_idempotently(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"")
    with Store.open(db_path) as first:
        assert first.notice is None
        conv = first.create_conversation("survives")
        first.add_message(conv.id, "user", "still here")
    schema = _schema(db_path)
    assert _user_version(db_path) == store_db.SCHEMA_VERSION == 1
    with Store.open(db_path) as second:
        assert [m.content for m in second.messages(conv.id)] == ["still here"]
    assert _schema(db_path) == schema
    assert _user_version(db_path) == 1


def test_failed_migration_rolls_back_whole(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)

    def broken(c: sqlite3.Connection) -> None:
        c.execute("CREATE TABLE half (x)")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store_db.apply_migrations(conn, ["CREATE TABLE a (x); CREATE TABLE b (y);", broken])
    assert store_db.schema_version(conn) == 1
    names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert names == {"a", "b"}
    store_db.apply_migrations(conn, ["CREATE TABLE a (x); CREATE TABLE b (y);", "CREATE TABLE c (z)"])
    assert store_db.schema_version(conn) == 2
    conn.close()


def test_split_script_keeps_triggers_whole() -> None:
    script = store_db.MIGRATIONS[0]
    assert isinstance(script, str)
    statements = store_db.split_script(script)
    triggers = [s for s in statements if s.startswith("CREATE TRIGGER")]
    assert len(triggers) == 3 and all(s.endswith("END;") for s in triggers)


def test_newer_schema_is_refused_with_a_hint(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreError) as raised:
        Store.open(db_path)
    assert not isinstance(raised.value, StoreBusyError)
    assert "newer version of Hearth" in raised.value.message and "Update Hearth" in raised.value.hint
    assert _user_version(db_path) == 99 and _backups(db_path.parent) == []  # left alone, not set aside


# -- damage, locks, unwritable folders -------------------------------------------------------


def _assert_set_aside(db_path: Path, opened: Store) -> None:
    backups = _backups(db_path.parent)
    assert backups and backups[0].startswith("hearth.db.corrupt-")
    assert opened.notice is not None and str(db_path.parent / backups[0]) in opened.notice
    assert opened.list_conversations() == [] and opened.integrity_check() == "ok"


def test_garbage_file_is_set_aside(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    garbage = b"this is not a database at all " * 300
    db_path.write_bytes(garbage)
    with Store.open(db_path) as opened:
        _assert_set_aside(db_path, opened)
        opened.create_conversation("fresh start")
    backup = db_path.parent / _backups(db_path.parent)[0]
    assert backup.read_bytes() == garbage  # the backup is the untouched original
    with Store.open(db_path) as again:  # no crash loop: the next start is clean
        assert again.notice is None
        assert [c.title for c in again.list_conversations()] == ["fresh start"]
    assert len(_backups(db_path.parent)) == 1


def test_damaged_pages_are_set_aside(db_path: Path) -> None:
    with Store.open(db_path) as opened:
        for n in range(3):
            conv = opened.create_conversation(f"conversation {n}")
            for i in range(150):
                opened.add_message(conv.id, "user", f"message {i} with enough words to fill pages " * 4)
    data = bytearray(db_path.read_bytes())
    noise = random.Random(7)
    for offset in range(4096 * 3, len(data) - 4096, 4096 * 4):  # keep page 1 (the header) intact
        data[offset : offset + 4096] = noise.randbytes(4096)
    db_path.write_bytes(bytes(data))
    with Store.open(db_path) as reopened:
        _assert_set_aside(db_path, reopened)
    with Store.open(db_path) as again:
        assert again.notice is None


def test_wal_siblings_travel_with_the_backup(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"garbage" * 1000)
    db_path.with_name("hearth.db-wal").write_bytes(b"old wal")
    with Store.open(db_path) as opened:
        _assert_set_aside(db_path, opened)
    backup = _backups(db_path.parent)
    assert any(name.endswith("-wal") for name in backup)
    wal_backup = next(name for name in backup if name.endswith("-wal"))
    assert (db_path.parent / wal_backup).read_bytes() == b"old wal"


def test_locked_database_raises_busy_and_retry_succeeds(db_path: Path) -> None:
    with Store.open(db_path, busy_timeout_ms=100) as opened:
        conv = opened.create_conversation("locked")
        opened.add_message(conv.id, "user", "before the lock")
        other = sqlite3.connect(db_path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreBusyError) as raised:
            opened.add_message(conv.id, "user", "during the lock")
        assert "Another program is using Hearth's database" in raised.value.message
        assert "close other hearth windows" in raised.value.hint.lower()
        other.execute("ROLLBACK")
        other.close()
        opened.add_message(conv.id, "user", "during the lock")  # the caller's retry
        assert [m.content for m in opened.messages(conv.id)] == ["before the lock", "during the lock"]
        assert opened.integrity_check() == "ok"


def test_locked_at_open_is_busy_not_damage(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    other = sqlite3.connect(db_path, isolation_level=None)  # rollback journal: exclusive blocks readers
    other.execute("BEGIN EXCLUSIVE")
    other.execute("CREATE TABLE someone_elses (x)")
    with pytest.raises(StoreBusyError):
        Store.open(db_path, busy_timeout_ms=100)
    assert _backups(db_path.parent) == []
    other.execute("COMMIT")
    other.close()
    with Store.open(db_path, busy_timeout_ms=100) as opened:
        assert opened.notice is None
        opened.create_conversation("after the lock")


def test_unusable_folder_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the data folder should be")
    with pytest.raises(StoreError) as raised:
        Store.open(blocker / "hearth.db")
    assert raised.value.hint and not isinstance(raised.value, StoreBusyError)
    folder_as_db = tmp_path / "dir.db"
    folder_as_db.mkdir()
    with pytest.raises(StoreError):
        Store.open(folder_as_db)
    assert folder_as_db.is_dir() and _backups(tmp_path) == []
