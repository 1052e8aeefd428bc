"""The conversation store: conversations and messages in one SQLite file.

One connection serves the whole process; a re-entrant lock serialises the GUI's worker threads
on it. Every write runs in its own ``BEGIN IMMEDIATE`` transaction, so a write either lands whole
or raises before anything changed, and a reply being streamed survives a crash up to its last
update. The schema is versioned with ``PRAGMA user_version`` and grows only through the migrations in
`app.core.store_db`.

A damaged file is set aside at open (kept as a backup) and a fresh database takes its place,
with `Store.notice` telling the user where the backup went.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from app.core.conversation import ROLES, STATUSES, Conversation, Message, Role, SearchHit, Status
from app.core.store_db import SCHEMA_VERSION, open_database, translate
from app.errors import StoreError

log = logging.getLogger("hearth.store")

P = ParamSpec("P")
R = TypeVar("R")

_SNIPPET_TOKENS = 12
_CONVERSATION_COLUMNS = "id, title, system_prompt, created_at, updated_at, model_id"
_MESSAGE_COLUMNS = "id, conversation_id, role, content, status, created_at, model_id, meta"

__all__ = ["SCHEMA_VERSION", "Store", "fts_query"]


def _guarded(method: Callable[Concatenate[Store, P], R]) -> Callable[Concatenate[Store, P], R]:
    """Serialise a public method on the store's lock and translate SQLite errors on the way out."""

    @functools.wraps(method)
    def wrapper(self: Store, *args: P.args, **kwargs: P.kwargs) -> R:
        with self._lock:
            if self._conn is None:
                raise StoreError("The conversation database is closed.", "Restart Hearth.")
            try:
                return method(self, *args, **kwargs)
            except sqlite3.Error as exc:
                raise translate(exc, self.path) from exc

    return wrapper


def fts_query(text: str) -> str | None:
    """Turn whatever a person typed into a safe FTS5 query, or None when nothing is searchable.

    Every word becomes a quoted string, so FTS5 operators (AND, NOT, *, -, column filters) are
    taken literally; the last word matches as a prefix so results appear while typing.
    """
    words = [w for w in text.split() if any(ch.isalnum() for ch in w)]
    if not words:
        return None
    quoted = ['"' + w.replace('"', '""') + '"' for w in words]
    quoted[-1] += "*"
    return " ".join(quoted)


def _like_pattern(word: str) -> str:
    return "%" + re.sub(r"([\\%_])", r"\\\1", word) + "%"


def _conversation(row: sqlite3.Row) -> Conversation:
    return Conversation(
        id=row["id"],
        title=row["title"],
        system_prompt=row["system_prompt"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        model_id=row["model_id"],
    )


def _message(row: sqlite3.Row) -> Message:
    try:
        meta = json.loads(row["meta"]) if row["meta"] else {}
    except ValueError:
        meta = {}  # a hand-edited or truncated value should not hide the message itself
    return Message(
        id=row["id"],
        conversation_id=row["conversation_id"],
        role=row["role"],
        content=row["content"],
        status=row["status"],
        created_at=row["created_at"],
        model_id=row["model_id"],
        meta=meta if isinstance(meta, dict) else {},
    )


def _dump_meta(meta: dict[str, Any] | None) -> str:
    return json.dumps(meta or {}, ensure_ascii=False)


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"unknown message status {status!r}; expected one of {STATUSES}")


class Store:
    """Conversations and messages, persisted; safe to call from several threads."""

    def __init__(self, path: Path, conn: sqlite3.Connection, notice: str | None = None) -> None:
        self.path = path
        self.notice = notice
        self._conn: sqlite3.Connection | None = conn
        self._lock = threading.RLock()

    @classmethod
    def open(cls, path: Path, busy_timeout_ms: int = 5000) -> Store:
        path = Path(path)
        conn, notice = open_database(path, busy_timeout_ms)
        return cls(path, conn, notice)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def _db(self) -> sqlite3.Connection:
        assert self._conn is not None, "checked by _guarded"
        return self._conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; the lock is taken up front so a busy database fails before any change."""
        conn = self._db
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    log.exception("rollback failed on %s", self.path)
            raise

    # -- conversations -----------------------------------------------------------------------

    @_guarded
    def create_conversation(
        self, title: str = "New conversation", system_prompt: str | None = None, model_id: str | None = None
    ) -> Conversation:
        now = time.time()
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO conversations (title, system_prompt, model_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                (title, system_prompt, model_id, now, now),
            )
        assert cur.lastrowid is not None
        return Conversation(cur.lastrowid, title, system_prompt, now, now, model_id)

    @_guarded
    def get_conversation(self, conversation_id: int) -> Conversation:
        row = self._db.execute(
            f"SELECT {_CONVERSATION_COLUMNS} FROM conversations WHERE id = ?", (conversation_id,)
        ).fetchone()
        if row is None:
            raise StoreError(f"Conversation {conversation_id} does not exist.", "It may have been deleted.")
        return _conversation(row)

    @_guarded
    def list_conversations(self) -> list[Conversation]:
        rows = self._db.execute(f"SELECT {_CONVERSATION_COLUMNS} FROM conversations ORDER BY updated_at DESC, id DESC")
        return [_conversation(row) for row in rows]

    @_guarded
    def rename_conversation(self, conversation_id: int, title: str) -> None:
        self._update_conversation(conversation_id, "title", title)

    @_guarded
    def set_system_prompt(self, conversation_id: int, prompt: str | None) -> None:
        self._update_conversation(conversation_id, "system_prompt", prompt)

    @_guarded
    def set_conversation_model(self, conversation_id: int, model_id: str | None) -> None:
        self._update_conversation(conversation_id, "model_id", model_id)

    def _update_conversation(self, conversation_id: int, column: str, value: str | None) -> None:
        # Settings changes leave updated_at alone: the list is ordered by conversation activity.
        with self._write() as conn:
            cur = conn.execute(f"UPDATE conversations SET {column} = ? WHERE id = ?", (value, conversation_id))
            if cur.rowcount == 0:
                raise StoreError(f"Conversation {conversation_id} does not exist.", "It may have been deleted.")

    @_guarded
    def delete_conversation(self, conversation_id: int) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    # -- messages ----------------------------------------------------------------------------

    @_guarded
    def add_message(
        self,
        conversation_id: int,
        role: str,
        content: str,
        status: str = "complete",
        model_id: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Message:
        if role not in ROLES:
            raise ValueError(f"unknown message role {role!r}; expected one of {ROLES}")
        _check_status(status)
        now = time.time()
        with self._write() as conn:
            bumped = conn.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (now, conversation_id))
            if bumped.rowcount == 0:
                raise StoreError(f"Conversation {conversation_id} does not exist.", "It may have been deleted.")
            cur = conn.execute(
                "INSERT INTO messages (conversation_id, role, content, status, created_at, model_id, meta)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (conversation_id, role, content, status, now, model_id, _dump_meta(meta)),
            )
        assert cur.lastrowid is not None
        return Message(
            cur.lastrowid,
            conversation_id,
            cast(Role, role),
            content,
            cast(Status, status),
            now,
            model_id,
            dict(meta or {}),
        )

    @_guarded
    def update_message(
        self,
        message_id: int,
        *,
        content: str | None = None,
        status: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        """Change a message in place; `meta`, when given, replaces the stored dict whole."""
        changes: dict[str, Any] = {}
        if content is not None:
            changes["content"] = content
        if status is not None:
            _check_status(status)
            changes["status"] = status
        if meta is not None:
            changes["meta"] = _dump_meta(meta)
        with self._write() as conn:
            if not changes:
                cur = conn.execute("SELECT 1 FROM messages WHERE id = ?", (message_id,))
                found = cur.fetchone() is not None
            else:
                assignments = ", ".join(f"{column} = ?" for column in changes)
                cur = conn.execute(f"UPDATE messages SET {assignments} WHERE id = ?", (*changes.values(), message_id))
                found = cur.rowcount > 0
            if not found:
                raise StoreError(f"Message {message_id} does not exist.", "It may have been deleted.")

    @_guarded
    def get_message(self, message_id: int) -> Message:
        row = self._db.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?", (message_id,)).fetchone()
        if row is None:
            raise StoreError(f"Message {message_id} does not exist.", "It may have been deleted.")
        return _message(row)

    @_guarded
    def messages(self, conversation_id: int) -> list[Message]:
        rows = self._db.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? ORDER BY id", (conversation_id,)
        )
        return [_message(row) for row in rows]

    @_guarded
    def delete_messages_from(self, conversation_id: int, message_id: int) -> None:
        with self._write() as conn:
            owner = conn.execute("SELECT conversation_id FROM messages WHERE id = ?", (message_id,)).fetchone()
            # A mismatched pair would silently cut the wrong conversation short; refuse it instead.
            if owner is None or owner[0] != conversation_id:
                raise StoreError(
                    f"Message {message_id} is not part of conversation {conversation_id}.", "Reload the conversation."
                )
            conn.execute("DELETE FROM messages WHERE conversation_id = ? AND id >= ?", (conversation_id, message_id))

    # -- search and upkeep -------------------------------------------------------------------

    @_guarded
    def picture_addresses(self) -> set[str]:
        """The addresses of all pictures that some stored message holds (``meta["images"]``)."""
        rows = self._db.execute(
            """
            SELECT json_extract(picture.value, '$.sha256')
            FROM messages, json_each(messages.meta, '$.images') AS picture
            WHERE json_valid(messages.meta) AND json_type(messages.meta, '$.images') = 'array'
            """
        ).fetchall()
        return {row[0] for row in rows if isinstance(row[0], str)}

    @_guarded
    def search(self, query: str, limit: int = 50) -> list[SearchHit]:
        """Conversations whose title or messages match, title matches first, one hit per conversation."""
        words = [w for w in query.split() if w]
        if not words or limit <= 0:
            return []
        hits = self._search_titles(words, limit)
        match = fts_query(query)
        if match is not None and len(hits) < limit:
            seen = {hit.conversation_id for hit in hits}
            hits += [h for h in self._search_messages(match, limit) if h.conversation_id not in seen]
        return hits[:limit]

    def _search_titles(self, words: list[str], limit: int) -> list[SearchHit]:
        where = " AND ".join("title LIKE ? ESCAPE '\\'" for _ in words)
        rows = self._db.execute(
            f"SELECT id, title FROM conversations WHERE {where} ORDER BY updated_at DESC, id DESC LIMIT ?",
            (*(_like_pattern(w) for w in words), limit),
        )
        return [SearchHit(row["id"], None, row["title"], row["title"]) for row in rows]

    def _search_messages(self, match: str, limit: int) -> list[SearchHit]:
        # Rank first, then build snippets only for the winners: snippet() is costly on large histories.
        best = self._db.execute(
            """
            SELECT conversation_id, message_id, title FROM (
                SELECT m.conversation_id, m.id AS message_id, c.title, messages_fts.rank AS score,
                       ROW_NUMBER() OVER (PARTITION BY m.conversation_id ORDER BY messages_fts.rank, m.id DESC) AS n
                FROM messages_fts
                JOIN messages m ON m.id = messages_fts.rowid
                JOIN conversations c ON c.id = m.conversation_id
                WHERE messages_fts MATCH ? AND m.role != 'marker'
            ) WHERE n = 1 ORDER BY score, message_id DESC LIMIT ?
            """,
            (match, limit),
        ).fetchall()
        if not best:
            return []
        ids = [row["message_id"] for row in best]
        snippets = dict(
            self._db.execute(
                f"SELECT rowid, snippet(messages_fts, 0, '', '', '…', {_SNIPPET_TOKENS}) FROM messages_fts"
                f" WHERE messages_fts MATCH ? AND rowid IN ({', '.join('?' * len(ids))})",
                (match, *ids),
            ).fetchall()
        )
        return [
            SearchHit(row["conversation_id"], row["message_id"], row["title"], snippets.get(row["message_id"], ""))
            for row in best
        ]

    @_guarded
    def mark_interrupted(self) -> int:
        """Mark replies a crash left half-written; call once at start-up, before any new reply begins."""
        with self._write() as conn:
            cur = conn.execute("UPDATE messages SET status = 'interrupted' WHERE status = 'streaming'")
        return cur.rowcount

    @_guarded
    def integrity_check(self) -> str:
        """'ok', or the problems SQLite found in the file or the search index."""
        problems = [str(row[0]) for row in self._db.execute("PRAGMA integrity_check")]
        if problems == ["ok"]:
            problems = []
        try:
            self._db.execute("INSERT INTO messages_fts(messages_fts, rank) VALUES ('integrity-check', 1)")
        except sqlite3.DatabaseError as exc:
            problems.append(f"search index: {exc}")
        return "\n".join(problems) if problems else "ok"
