"""The conversation store against real SQLite files: schema, search, damage and lock handling."""

from __future__ import annotations

import random
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core import store_db
from app.core.store import Store, fts_query
from app.errors import StoreBusyError, StoreError


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "hearth.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    with Store.open(db_path) as opened:
        yield opened


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


# -- conversations ---------------------------------------------------------------------------


def test_create_and_get_conversation(store: Store) -> None:
    conv = store.create_conversation("Trip plans", system_prompt="Be brief.", model_id="smollm2")
    got = store.get_conversation(conv.id)
    assert got == conv
    assert store.create_conversation().title == "New conversation"


def test_missing_conversation_is_a_store_error(store: Store) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        store.get_conversation(999)
    with pytest.raises(StoreError):
        store.rename_conversation(999, "x")
    with pytest.raises(StoreError):
        store.add_message(999, "user", "hello")


def test_list_is_most_recently_updated_first(store: Store) -> None:
    first = store.create_conversation("first")
    second = store.create_conversation("second")
    assert [c.id for c in store.list_conversations()] == [second.id, first.id]
    store.add_message(first.id, "user", "bump")
    assert [c.id for c in store.list_conversations()] == [first.id, second.id]
    assert store.get_conversation(first.id).updated_at >= store.get_conversation(second.id).updated_at


def test_rename_prompt_and_model(store: Store) -> None:
    conv = store.create_conversation()
    store.rename_conversation(conv.id, "Renamed ✨")
    store.set_system_prompt(conv.id, "Answer in French.")
    store.set_conversation_model(conv.id, "llama-3.2-1b")
    got = store.get_conversation(conv.id)
    assert (got.title, got.system_prompt, got.model_id) == ("Renamed ✨", "Answer in French.", "llama-3.2-1b")
    store.set_system_prompt(conv.id, None)
    store.set_conversation_model(conv.id, None)
    got = store.get_conversation(conv.id)
    assert got.system_prompt is None and got.model_id is None


def test_delete_conversation_cascades_to_messages(store: Store) -> None:
    conv = store.create_conversation("doomed")
    keep = store.create_conversation("kept")
    message = store.add_message(conv.id, "user", "unique zebra words")
    store.add_message(keep.id, "user", "other zebra")
    store.delete_conversation(conv.id)
    assert [c.id for c in store.list_conversations()] == [keep.id]
    assert store.messages(conv.id) == []
    with pytest.raises(StoreError):
        store.get_message(message.id)
    assert [hit.conversation_id for hit in store.search("zebra")] == [keep.id]
    assert store.integrity_check() == "ok"


# -- messages --------------------------------------------------------------------------------


def test_add_get_update_messages(store: Store) -> None:
    conv = store.create_conversation()
    user = store.add_message(conv.id, "user", "Hi there")
    reply = store.add_message(conv.id, "assistant", "", status="streaming", model_id="m1", meta={"tokens": 0})
    assert store.get_message(user.id) == user
    assert store.get_message(reply.id) == reply
    store.update_message(reply.id, content="Hello!", status="complete", meta={"tokens": 3, "note": "naïve ☕"})
    got = store.get_message(reply.id)
    assert (got.content, got.status, got.model_id) == ("Hello!", "complete", "m1")
    assert got.meta == {"tokens": 3, "note": "naïve ☕"}
    store.update_message(reply.id, status="stopped")
    assert store.get_message(reply.id).content == "Hello!"  # untouched fields stay
    assert [m.id for m in store.messages(conv.id)] == [user.id, reply.id]


def test_message_validation(store: Store) -> None:
    conv = store.create_conversation()
    with pytest.raises(ValueError):
        store.add_message(conv.id, "system", "nope")
    with pytest.raises(ValueError):
        store.add_message(conv.id, "user", "nope", status="done")
    with pytest.raises(StoreError):
        store.update_message(12345, content="x")
    with pytest.raises(StoreError):
        store.get_message(12345)
    assert store.messages(conv.id) == []


def test_meta_round_trips_and_defaults_to_empty(store: Store) -> None:
    conv = store.create_conversation()
    plain = store.add_message(conv.id, "user", "a")
    rich = store.add_message(conv.id, "assistant", "b", meta={"nested": {"list": [1, 2.5, None, True]}})
    assert store.get_message(plain.id).meta == {}
    assert store.get_message(rich.id).meta == {"nested": {"list": [1, 2.5, None, True]}}


def test_delete_messages_from(store: Store) -> None:
    conv = store.create_conversation()
    other = store.create_conversation()
    ids = [store.add_message(conv.id, role, f"turn {i}").id for i, role in enumerate(["user", "assistant"] * 3)]
    other_msg = store.add_message(other.id, "user", "elsewhere")
    store.delete_messages_from(conv.id, ids[2])
    assert [m.id for m in store.messages(conv.id)] == ids[:2]
    assert [m.id for m in store.messages(other.id)] == [other_msg.id]
    with pytest.raises(StoreError):
        store.delete_messages_from(conv.id, other_msg.id)  # wrong conversation: nothing deleted
    assert [m.id for m in store.messages(other.id)] == [other_msg.id]
    assert store.search("turn 5") == []  # deleted messages leave the search index too
    assert store.search("turn 1")[0].message_id == ids[1]


def test_mark_interrupted(store: Store) -> None:
    conv = store.create_conversation()
    done = store.add_message(conv.id, "assistant", "finished")
    cut = store.add_message(conv.id, "assistant", "half a rep", status="streaming")
    assert store.mark_interrupted() == 1
    assert store.get_message(cut.id).status == "interrupted"
    assert store.get_message(done.id).status == "complete"
    assert store.mark_interrupted() == 0


def test_threads_share_the_store(store: Store) -> None:
    conv = store.create_conversation()

    def write(n: int) -> None:
        for i in range(25):
            store.add_message(conv.id, "user", f"thread {n} message {i}")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(store.messages(conv.id)) == 100


def test_closed_store_raises_store_error(db_path: Path) -> None:
    opened = Store.open(db_path)
    opened.close()
    opened.close()  # closing twice is harmless
    with pytest.raises(StoreError, match="closed"):
        opened.list_conversations()


# -- search ----------------------------------------------------------------------------------


def test_search_finds_messages_with_snippet(store: Store) -> None:
    conv = store.create_conversation("Cooking")
    store.add_message(conv.id, "user", "How long should I boil an egg for a soft yolk?")
    msg = store.add_message(conv.id, "assistant", "About six minutes for a soft-boiled egg. " + "Filler text. " * 40)
    hits = store.search("soft boiled")
    assert len(hits) == 1
    hit = hits[0]
    assert (hit.conversation_id, hit.title) == (conv.id, "Cooking")
    assert hit.message_id is not None and "soft" in hit.snippet.lower()
    assert len(hit.snippet) < 200
    assert store.search("six minu")[0].message_id == msg.id  # prefix on the last word


def test_search_one_hit_per_conversation_title_first(store: Store) -> None:
    by_title = store.create_conversation("Python tips")
    by_text = store.create_conversation("Misc")
    store.add_message(by_title.id, "user", "python lists")
    store.add_message(by_text.id, "user", "python dicts")
    store.add_message(by_text.id, "assistant", "python sets and python tuples")
    hits = store.search("python")
    assert [h.conversation_id for h in hits] == [by_title.id, by_text.id]
    assert hits[0].message_id is None
    assert store.search("python", limit=1) == hits[:1]


def test_search_ignores_markers_and_accents(store: Store) -> None:
    conv = store.create_conversation()
    store.add_message(conv.id, "marker", "Earlier messages left the context")
    assert store.search("earlier") == []
    store.add_message(conv.id, "user", "Un café crème, s'il vous plaît")
    assert store.search("cafe creme")[0].conversation_id == conv.id


ODD_QUERIES = '" "" AND OR NOT * c++ -x 😀 ( ) ^ \' \\ % _ NEAR(a content:x'.split() + ["", "   ", "a AND", "NEAR(a b)"]


@pytest.mark.parametrize("query", ODD_QUERIES)
def test_odd_queries_never_raise(store: Store, query: str) -> None:
    conv = store.create_conversation("Odd")
    store.add_message(conv.id, "user", "I like c++ and AND gates, not -x flags 😀")
    hits = store.search(query)
    assert isinstance(hits, list)
    if not query.strip():
        assert hits == []


def test_odd_queries_match_literally(store: Store) -> None:
    conv = store.create_conversation("Chat")
    store.add_message(conv.id, "user", "I like c++ and AND gates")
    assert [h.conversation_id for h in store.search("c++")] == [conv.id]
    assert [h.conversation_id for h in store.search("AND gates")] == [conv.id]
    assert store.search("NOT") == []
    assert store.search("%") == [] and store.search("_") == []  # LIKE wildcards are escaped


def test_fts_query_quotes_every_word() -> None:
    assert fts_query("") is None
    assert fts_query('" * -') is None
    assert fts_query('say "hi" AND go') == '"say" """hi""" "AND" "go"*'


def test_search_follows_updates_and_deletes(store: Store) -> None:
    conv = store.create_conversation()
    msg = store.add_message(conv.id, "assistant", "", status="streaming")
    store.update_message(msg.id, content="The answer involves quantum kittens")
    assert store.search("quantum")[0].message_id == msg.id
    store.update_message(msg.id, content="Now about classical dogs")
    assert store.search("quantum") == []
    assert store.search("classical")[0].message_id == msg.id
    store.delete_messages_from(conv.id, msg.id)
    assert store.search("classical") == []
    assert store.integrity_check() == "ok"


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
    statements = store_db.split_script(store_db.MIGRATIONS[0])  # type: ignore[arg-type]
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
