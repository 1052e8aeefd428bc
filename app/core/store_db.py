"""Opening Hearth's SQLite file: schema migrations, health check, and what SQLite errors mean.

`open_database` returns a connection that is checked (``PRAGMA quick_check``), in WAL mode and
migrated to `SCHEMA_VERSION`. A file that is damaged or not a database at all is moved aside to
``<name>.corrupt-YYYYmmdd-HHMMSS`` (with its ``-wal``/``-shm`` files) and a fresh one takes its
place, so a bad file costs the user a notice, never a crash loop. The store itself lives in
`app.core.store`.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from app.core.conversation import ROLES, STATUSES
from app.errors import StoreBusyError, StoreError

log = logging.getLogger("hearth.store")

# A migration is an SQL script or a function; each runs in one transaction with its version bump.
Migration = str | Callable[[sqlite3.Connection], None]


def _sql_list(values: Sequence[str]) -> str:
    return ", ".join(f"'{v}'" for v in values)


_V1 = f"""
CREATE TABLE conversations (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    system_prompt TEXT NULL,
    model_id TEXT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ({_sql_list(ROLES)})),
    content TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'complete' CHECK (status IN ({_sql_list(STATUSES)})),
    created_at REAL NOT NULL,
    model_id TEXT NULL,
    meta TEXT NOT NULL DEFAULT '{{}}'
);
CREATE INDEX messages_by_conversation ON messages(conversation_id, id);
-- Only replies cut off by a crash are 'streaming' at start-up; this keeps finding them instant.
CREATE INDEX messages_streaming ON messages(id) WHERE status = 'streaming';
CREATE VIRTUAL TABLE messages_fts USING fts5(
    content, content='messages', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
);
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
    INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
END;
"""

# Append only: entry i takes the schema from version i to i + 1. Never edit a released entry.
MIGRATIONS: list[Migration] = [_V1]
SCHEMA_VERSION = len(MIGRATIONS)

BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
DAMAGE_CODES = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


class Damaged(Exception):
    """The file is not a sound database; `open_database` sets it aside.

    It carries the still-open connection: closing it lets SQLite delete the ``-wal`` file, which
    belongs in the backup, so the backup is taken first.
    """

    def __init__(self, reason: str, conn: sqlite3.Connection) -> None:
        super().__init__(reason)
        self.conn = conn


def error_code(exc: sqlite3.Error) -> int:
    # Extended result codes (e.g. SQLITE_BUSY_SNAPSHOT) keep the primary code in the low byte.
    return int(getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF


def translate(exc: sqlite3.Error, path: Path) -> StoreError:
    """Turn an SQLite failure into an error a person can act on."""
    code = error_code(exc)
    if code in BUSY_CODES:
        return StoreBusyError(
            f"Another program is using Hearth's database ({path}) and did not let go in time.",
            "Close other Hearth windows and try again; nothing was changed.",
        )
    if code in DAMAGE_CODES:
        return StoreError(
            f"Hearth's database {path} is damaged ({exc}).",
            "Restart Hearth: it sets a damaged database aside, keeps it as a backup and starts a new one.",
        )
    if code == sqlite3.SQLITE_FULL:
        return StoreError(f"The disk holding Hearth's database {path} is full.", "Free up some space and try again.")
    return StoreError(
        f"Hearth could not read or write its database {path} ({exc}).",
        "Check that the data folder is writable and the disk is healthy, or set HEARTH_HOME to another folder.",
    )


def split_script(script: str) -> list[str]:
    """Split an SQL script into statements, keeping trigger bodies (which contain ';') whole."""
    statements: list[str] = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \t\r\n;"):
                statements.append(pending.strip())
            pending = ""
    return statements


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def apply_migrations(conn: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> None:
    """Bring the schema up to date, one transaction per step (the connection must be in autocommit)."""
    for target, migration in enumerate(migrations, start=1):
        if schema_version(conn) >= target:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another Hearth may have migrated while we waited for the write lock.
            if schema_version(conn) < target:
                if isinstance(migration, str):
                    for statement in split_script(migration):
                        conn.execute(statement)
                else:
                    migration(conn)
                conn.execute(f"PRAGMA user_version = {target}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


def _check_not_newer(conn: sqlite3.Connection, path: Path) -> None:
    version = schema_version(conn)
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"Hearth's database {path} was written by a newer version of Hearth "
            f"(schema {version}; this version knows up to {SCHEMA_VERSION}).",
            "Update Hearth to the newest version, or set HEARTH_HOME to another folder to start afresh.",
        )


def connect(path: Path, busy_timeout_ms: int) -> sqlite3.Connection:
    """Open, check and migrate the database; `Damaged` when the file is not a sound database."""
    try:
        # Autocommit: the store issues BEGIN IMMEDIATE / COMMIT itself, so it knows what is pending.
        conn = sqlite3.connect(path, timeout=busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise translate(exc, path) from exc
    conn.row_factory = sqlite3.Row
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        problems = [str(row[0]) for row in conn.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise Damaged("; ".join(problems[:5]), conn)
        _check_not_newer(conn, path)
        mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        if mode.lower() != "wal":
            log.warning("database %s stays in %s journal mode (WAL unavailable here)", path, mode)
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        apply_migrations(conn)
    except Damaged:
        raise
    except sqlite3.Error as exc:
        if error_code(exc) in DAMAGE_CODES:
            raise Damaged(str(exc), conn) from exc
        conn.close()
        raise translate(exc, path) from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _backup_name(path: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    backup = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while backup.exists():  # two failures in one second must not overwrite the first backup
        n += 1
        backup = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    return backup


def set_aside(path: Path, conn: sqlite3.Connection) -> Path:
    """Move a damaged database and its WAL/shared-memory files to a dated backup name.

    `conn` is the connection that found the damage; it is closed here, after the WAL is copied.
    """
    backup = _backup_name(path)
    try:
        try:
            for suffix in ("-wal", "-shm"):
                source = path.with_name(path.name + suffix)
                if source.exists():
                    shutil.copy2(source, backup.with_name(backup.name + suffix))
        finally:
            conn.close()
        # Whatever is left is moved too: a stale WAL next to the fresh database would be replayed into it.
        for suffix in ("", "-wal", "-shm"):
            source = path.with_name(path.name + suffix)
            if source.exists():
                source.replace(backup.with_name(backup.name + suffix))
    except OSError as exc:
        raise StoreError(
            f"Hearth's database {path} is damaged and could not be moved aside ({exc.strerror or exc}).",
            f"Move {path} and its -wal and -shm files out of the data folder yourself, then start Hearth again.",
        ) from exc
    return backup


def open_database(path: Path, busy_timeout_ms: int) -> tuple[sqlite3.Connection, str | None]:
    """A ready connection, plus a notice for the user when a damaged file had to be set aside."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"Hearth cannot create the folder for its database {path.parent} ({exc.strerror or exc}).",
            "Fix the folder's permissions, or set HEARTH_HOME to a writable folder.",
        ) from exc
    try:
        return connect(path, busy_timeout_ms), None
    except Damaged as damage:
        log.warning("database %s is damaged (%s); setting it aside", path, damage)
        backup = set_aside(path, damage.conn)
    try:
        conn = connect(path, busy_timeout_ms)
    except Damaged as damage:  # a fresh file failing too points at the disk, not the data: stop here
        damage.conn.close()
        raise StoreError(
            f"Hearth could not create a new database at {path} ({damage}).",
            "Check the disk for errors, or set HEARTH_HOME to another folder.",
        ) from damage
    notice = (
        "Hearth's conversation database was damaged and could not be read, so a new, empty one was started. "
        f"The old file was kept as a backup at {backup}."
    )
    return conn, notice
