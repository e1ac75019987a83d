"""The SQLite session store (spec ``session_store.md``).

Tables under the store's prefix:

* ``ss_sessions``: one row per session. The queried values are columns (type, times, the
  message count and the next message position); the rest is the session's JSON form
  (:func:`~agentstores.reference.session_store_rules.session_to_json`) in ``record``, whose
  ``updated_at`` and ``message_count`` are ignored in favour of the columns, so that
  ``add_message`` updates three integers and never rewrites the record (SS-8). No index but
  the key: the listings return every session, so an index in ``updated_at`` order would save
  them nothing and cost every append two index writes.
* ``ss_messages``: one row per message, keyed by an integer ``id`` (the full-text index's
  rowid) and unique on (session, position); ``position`` only grows, so a conversation loads
  in append order (SS-8) and an append is one INSERT whatever the conversation's length. The
  message is JSON text; ``created_at`` is a column for truncate and the date filters (not
  indexed: truncate reads the one session's messages, and a search filters its candidates);
  ``search_text`` is :func:`~agentstores.reference.session_store_rules.index_text`.
* ``ss_messages_fts``: an FTS5 index over ``search_text`` with the ``trigram`` tokenizer, case
  sensitive (the text is lower-cased already, by Python's rules, SS-20). A trigram phrase query
  finds exactly the texts that contain the word as a substring, for words of three or more
  code points; shorter words (and words with NUL) are searched with ``instr`` over the same
  column or the stored message. Every candidate is checked again in Python with the spec's
  rule before it is returned.
* ``ss_fts_state``: one row, ``indexed_upto``: the messages with ``id <= indexed_upto`` are in
  the full-text index, the newer ones (fewer than ``batch``, 64) are not yet. FTS5 writes a
  new index segment per transaction, which was half the cost of an append; so the insert
  trigger indexes the pending messages together once ``batch`` of them have accumulated, and
  a search reads the pending ones directly (an ``id`` range of fewer than ``batch`` rows).
  Triggers keep the rule exact: deleting an indexed message deletes it from the index, and
  ``indexed_upto`` never exceeds the largest ``id``, so a new message (``id`` = largest + 1)
  is always pending.
* ``ss_ids``: the per-day counter of session ids (SS-4); a counter only ever grows, so an id is
  never reused, not even after its session is deleted.

Every operation is one transaction; arguments are validated and serialised before it starts
(G-5, G-7, SS-15). ``add_message`` is three statements: BEGIN IMMEDIATE, one UPDATE of the
session row that counts the message, stamps ``updated_at`` and returns the position (or
nothing: NotFound), one INSERT, and COMMIT.
"""

from __future__ import annotations

import copy
import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from typing import Any

from agentstores.conformance.backend import StoreContext
from agentstores.spec.errors import NotFound, StorageUnavailable
from agentstores.spec.messages import Message, message_to_json
from agentstores.spec.session_store import (
    ChatHistoryMatch,
    Session,
    SessionInsights,
    SessionType,
)
from agentstores.spec.values import Clock, check_timestamp, dump_json, load_json, system_clock

from .. import session_store_rules as rules
from .._records import decode_message
from ._db import DEFAULT_BUSY_TIMEOUT, Migration, Synchronous, context_location
from ._store import SQLiteStore

__all__ = ["MIGRATIONS", "SQLiteSessionStore", "open_store"]

#: The session-store schema, version by version (see :class:`~._db.Database`).
MIGRATIONS: tuple[Migration, ...] = (
    """
    CREATE TABLE "{prefix}ss_sessions" (
        session_id TEXT PRIMARY KEY NOT NULL,
        session_type TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        message_count INTEGER NOT NULL,
        next_position INTEGER NOT NULL,
        record TEXT NOT NULL
    );
    -- list_sessions (SS-6): updated_at descending, then id; by type or over all types.
    CREATE INDEX "{prefix}ss_sessions_by_updated"
        ON "{prefix}ss_sessions" (updated_at DESC, session_id);
    CREATE INDEX "{prefix}ss_sessions_by_type"
        ON "{prefix}ss_sessions" (session_type, updated_at DESC, session_id);

    CREATE TABLE "{prefix}ss_messages" (
        id INTEGER PRIMARY KEY,
        session_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        created_at INTEGER,
        search_text TEXT NOT NULL,
        message TEXT NOT NULL,
        UNIQUE (session_id, position)
    );
    CREATE INDEX "{prefix}ss_messages_by_time" ON "{prefix}ss_messages" (created_at);

    CREATE VIRTUAL TABLE "{prefix}ss_messages_fts" USING fts5(
        search_text,
        content = '{prefix}ss_messages',
        content_rowid = 'id',
        tokenize = 'trigram case_sensitive 1'
    );
    CREATE TRIGGER "{prefix}ss_messages_fts_insert" AFTER INSERT ON "{prefix}ss_messages"
    BEGIN
        INSERT INTO "{prefix}ss_messages_fts" (rowid, search_text)
            VALUES (new.id, new.search_text);
    END;
    CREATE TRIGGER "{prefix}ss_messages_fts_delete" AFTER DELETE ON "{prefix}ss_messages"
    BEGIN
        INSERT INTO "{prefix}ss_messages_fts" ("{prefix}ss_messages_fts", rowid, search_text)
            VALUES ('delete', old.id, old.search_text);
    END;

    CREATE TABLE "{prefix}ss_ids" (
        day TEXT PRIMARY KEY NOT NULL,
        last INTEGER NOT NULL
    );
    """,
    # Version 2: fewer pages written per append (see the module docstring).
    """
    DROP INDEX "{prefix}ss_sessions_by_updated";
    DROP INDEX "{prefix}ss_sessions_by_type";
    DROP INDEX "{prefix}ss_messages_by_time";
    DROP TRIGGER "{prefix}ss_messages_fts_insert";
    DROP TRIGGER "{prefix}ss_messages_fts_delete";

    CREATE TABLE "{prefix}ss_fts_state" (
        indexed_upto INTEGER NOT NULL,
        batch INTEGER NOT NULL
    );
    -- Version 1 indexed every message as it was inserted.
    INSERT INTO "{prefix}ss_fts_state" (indexed_upto, batch)
        SELECT coalesce(max(id), 0), 64 FROM "{prefix}ss_messages";

    CREATE TRIGGER "{prefix}ss_messages_fts_catch_up" AFTER INSERT ON "{prefix}ss_messages"
    WHEN new.id - (SELECT indexed_upto FROM "{prefix}ss_fts_state")
        >= (SELECT batch FROM "{prefix}ss_fts_state")
    BEGIN
        INSERT INTO "{prefix}ss_messages_fts" (rowid, search_text)
            SELECT id, search_text FROM "{prefix}ss_messages"
            WHERE id > (SELECT indexed_upto FROM "{prefix}ss_fts_state");
        UPDATE "{prefix}ss_fts_state"
            SET indexed_upto = (SELECT max(id) FROM "{prefix}ss_messages");
    END;

    CREATE TRIGGER "{prefix}ss_messages_fts_delete" AFTER DELETE ON "{prefix}ss_messages"
    BEGIN
        INSERT INTO "{prefix}ss_messages_fts" ("{prefix}ss_messages_fts", rowid, search_text)
            SELECT 'delete', old.id, old.search_text
            WHERE old.id <= (SELECT indexed_upto FROM "{prefix}ss_fts_state");
        -- Every message up to the largest id left is indexed, so lowering the mark to it keeps
        -- the rule, and the next id (largest + 1) is above it: pending, as it must be.
        UPDATE "{prefix}ss_fts_state"
            SET indexed_upto = coalesce((SELECT max(id) FROM "{prefix}ss_messages"), 0)
            WHERE indexed_upto > coalesce((SELECT max(id) FROM "{prefix}ss_messages"), 0);
    END;
    """,
)

#: Words shorter than this have no trigram: they are searched with instr().
_TRIGRAM = 3

_SessionRow = tuple[int, int, str]  # updated_at, message_count, record (session_id in record)
_MessageRow = tuple[int | None, str, str]  # created_at, search_text, message JSON


def _corrupt(what: str, exc: Exception) -> StorageUnavailable:
    return StorageUnavailable(f"corrupt {what} in the database: {exc}")


def _session(row: _SessionRow, conversation: tuple[Message, ...] | None = None) -> Session:
    updated_at, message_count, record = row
    try:
        session = rules.session_from_json(
            load_json(record), message_count=int(message_count), conversation=conversation
        )
    except ValueError as exc:  # JSONDecodeError and InvalidArgument are ValueErrors
        raise _corrupt("session", exc) from exc
    return rules.touched(session, int(updated_at))


def _message(text: str) -> Message:
    """A message read back: the text this store wrote, decoded (checked before it was
    written; a damaged row is StorageUnavailable)."""
    return decode_message(text)


def _message_rows(messages: Sequence[Message]) -> list[_MessageRow]:
    """Serialise checked messages before the transaction (later changes to the caller's
    objects do not reach the store, G-7)."""
    return [(m.created_at, rules.index_text(m), dump_json(message_to_json(m))) for m in messages]


def _fts_phrase(word: str) -> str:
    """``word`` as an FTS5 string (a phrase): inside double quotes, quotes doubled."""
    return '"' + word.replace('"', '""') + '"'


class SQLiteSessionStore(SQLiteStore, rules.SessionUpdates, rules.SessionQueries):
    """A :class:`~agentstores.spec.session_store.SessionStore` in an SQLite database file.

    Args:
        path: the database file (its directory must exist); several stores, families and
            processes may share it.
        prefix: the table prefix that isolates this store from others in the file (G-19).
        clock: the source of every time the store stamps (G-6).
        synchronous: ``"FULL"`` (default, durable on power loss) or ``"NORMAL"``.
        busy_timeout: seconds a write waits while another connection or process holds
            the database's write lock, then StorageUnavailable with nothing written (G-22).

    Use ``async with SQLiteSessionStore(path) as store:``, or call methods directly (the
    database opens on first use) and ``await store.close()`` at the end.

    Its tables, reached through :attr:`database`: ``database.table("ss_sessions")``,
    ``"ss_messages"``, ``"ss_ids"`` and ``"ss_fts_state"`` (see :data:`MIGRATIONS`).
    """

    _family = "session_store"
    _migrations = MIGRATIONS

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        prefix: str = "",
        clock: Clock = system_clock,
        synchronous: Synchronous = "FULL",
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    ) -> None:
        super().__init__(
            path, prefix=prefix, clock=clock, synchronous=synchronous, busy_timeout=busy_timeout
        )
        self._sessions = self._db.table("ss_sessions")
        self._messages = self._db.table("ss_messages")
        self._fts = self._db.table("ss_messages_fts")
        self._fts_state = self._db.table("ss_fts_state")
        self._ids = self._db.table("ss_ids")
        # The statements of the hot paths, built once (sqlite3 caches them by their text).
        self._insert_messages = (
            f"INSERT INTO {self._messages} "
            "(session_id, position, created_at, search_text, message) VALUES (?, ?, ?, ?, ?)"
        )
        self._count_message = (
            f"UPDATE {self._sessions} SET message_count = message_count + 1, "
            "next_position = next_position + 1, updated_at = ? WHERE session_id = ? "
            "RETURNING next_position"
        )

    def _now(self) -> int:
        return check_timestamp(self._clock(), what="clock reading")

    # --- helpers that run in the worker thread ---------------------------------------------

    def _row(self, conn: sqlite3.Connection, session_id: str) -> _SessionRow:
        row = conn.execute(
            f"SELECT updated_at, message_count, record FROM {self._sessions} WHERE session_id = ?",
            (session_id,),
        ).fetchone()
        if row is None:
            raise NotFound(f"no session {session_id!r}")
        return (int(row[0]), int(row[1]), str(row[2]))

    def _conversation(self, conn: sqlite3.Connection, session_id: str) -> list[str]:
        rows = conn.execute(
            f"SELECT message FROM {self._messages} WHERE session_id = ? ORDER BY position",
            (session_id,),
        ).fetchall()
        return [str(row[0]) for row in rows]

    def _new_id(self, conn: sqlite3.Connection, now: int) -> str:
        day = rules.day_of(now)
        row = conn.execute(
            f"INSERT INTO {self._ids} (day, last) VALUES (?, 1) "
            "ON CONFLICT (day) DO UPDATE SET last = last + 1 RETURNING last",
            (day,),
        ).fetchone()
        return rules.format_session_id(day, int(row[0]))

    def _insert_session(
        self, conn: sqlite3.Connection, session: Session, messages: Sequence[_MessageRow]
    ) -> None:
        conn.execute(
            f"INSERT INTO {self._sessions} (session_id, session_type, created_at, updated_at, "
            "message_count, next_position, record) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                session.id,
                session.session_type.value,
                session.created_at,
                session.updated_at,
                len(messages),
                len(messages),
                dump_json(rules.session_to_json(session)),
            ),
        )
        self._insert(conn, session.id, messages)

    def _insert(
        self, conn: sqlite3.Connection, session_id: str, messages: Sequence[_MessageRow]
    ) -> None:
        """Insert ``messages`` at positions 0, 1...; the caller counts them in the session."""
        if messages:
            conn.executemany(
                self._insert_messages,
                [
                    (session_id, position, created_at, text, message)
                    for position, (created_at, text, message) in enumerate(messages)
                ],
            )

    async def _update_fields(self, session_id: str, fields: Mapping[str, Any]) -> None:
        """Set ``fields`` of the record and ``updated_at = now`` in one transaction (SS-14): the
        write of the partial updates (:class:`~..session_store_rules.SessionUpdates`)."""
        fields = copy.deepcopy(dict(fields))  # G-7: not the caller's dicts
        now = self._now()

        def write(conn: sqlite3.Connection) -> None:
            session = rules.with_fields(_session(self._row(conn, session_id)), fields, now)
            conn.execute(
                f"UPDATE {self._sessions} SET updated_at = ?, record = ? WHERE session_id = ?",
                (now, dump_json(rules.session_to_json(session)), session_id),
            )

        await self._db.write(write)

    # --- sessions (SS-3 .. SS-7, SS-16) -----------------------------------------------------

    async def create_session(
        self, working_dir: str, name: str, session_type: SessionType = SessionType.USER
    ) -> Session:
        """Create an empty session with a new id (SS-3, SS-4)."""
        working_dir, name, session_type = rules.check_new_session(working_dir, name, session_type)
        now = self._now()

        def write(conn: sqlite3.Connection) -> Session:
            session = rules.new_session(
                self._new_id(conn, now), working_dir, name, session_type, now
            )
            self._insert_session(conn, session, ())
            return session

        return await self._db.write(write)

    async def get_session(self, session_id: str, include_messages: bool = False) -> Session:
        """The session; its conversation only if asked, else messages are not read (SS-5)."""
        rules.check_session_id(session_id)
        rules.check_include_messages(include_messages)

        def read(conn: sqlite3.Connection) -> tuple[_SessionRow, list[str] | None]:
            row = self._row(conn, session_id)
            texts = self._conversation(conn, session_id) if include_messages else None
            return row, texts

        row, texts = await self._db.read(read)
        conversation = None if texts is None else tuple(_message(t) for t in texts)
        return _session(row, conversation)

    async def _list(self, types: frozenset[SessionType]) -> list[Session]:
        """The listings' query (:class:`~..session_store_rules.SessionQueries`): one SELECT,
        in SS-6 order."""
        values = sorted(t.value for t in types)
        marks = ", ".join("?" for _ in values)

        def read(conn: sqlite3.Connection) -> list[_SessionRow]:
            rows = conn.execute(
                f"SELECT updated_at, message_count, record FROM {self._sessions} "
                f"WHERE session_type IN ({marks}) ORDER BY updated_at DESC, session_id",
                values,
            ).fetchall()
            return [(int(r[0]), int(r[1]), str(r[2])) for r in rows]

        return [_session(row) for row in await self._db.read(read)]

    async def delete_session(self, session_id: str) -> None:
        """Delete the session and its messages in one transaction (SS-7)."""
        rules.check_session_id(session_id)

        def write(conn: sqlite3.Connection) -> None:
            self._row(conn, session_id)
            conn.execute(f"DELETE FROM {self._messages} WHERE session_id = ?", (session_id,))
            conn.execute(f"DELETE FROM {self._sessions} WHERE session_id = ?", (session_id,))

        await self._db.write(write)

    async def get_insights(self) -> SessionInsights:
        """Session count and token total over every session (SS-16)."""

        def read(conn: sqlite3.Connection) -> list[_SessionRow]:
            rows = conn.execute(
                f"SELECT updated_at, message_count, record FROM {self._sessions}"
            ).fetchall()
            return [(int(r[0]), int(r[1]), str(r[2])) for r in rows]

        # Counters are u64 (kept in JSON): summing them in SQL would overflow.
        return rules.insights(_session(row) for row in await self._db.read(read))

    # --- conversation (SS-8 .. SS-10) --------------------------------------------------------

    async def add_message(self, session_id: str, message: Message) -> None:
        """Append one message and set updated_at, in one transaction: one UPDATE that counts it
        and returns its position, one INSERT (SS-8)."""
        rules.check_session_id(session_id)
        ((created_at, text, stored),) = _message_rows(rules.check_conversation([message]))
        now = self._now()

        def write(conn: sqlite3.Connection) -> None:
            counted = conn.execute(self._count_message, (now, session_id)).fetchall()
            if not counted:
                raise NotFound(f"no session {session_id!r}")
            position = int(counted[0][0]) - 1
            conn.execute(self._insert_messages, (session_id, position, created_at, text, stored))

        await self._db.write(write)

    async def replace_conversation(self, session_id: str, conversation: Sequence[Message]) -> None:
        """Replace the whole conversation and set updated_at, atomically (SS-9)."""
        rules.check_session_id(session_id)
        rows = _message_rows(rules.check_conversation(conversation))
        now = self._now()

        def write(conn: sqlite3.Connection) -> None:
            if not conn.execute(
                f"UPDATE {self._sessions} SET message_count = ?, next_position = ?, "
                "updated_at = ? WHERE session_id = ? RETURNING 1",
                (len(rows), len(rows), now, session_id),
            ).fetchall():
                raise NotFound(f"no session {session_id!r}")
            conn.execute(f"DELETE FROM {self._messages} WHERE session_id = ?", (session_id,))
            self._insert(conn, session_id, rows)

        await self._db.write(write)

    async def truncate_conversation(self, session_id: str, timestamp: int) -> None:
        """Delete the messages created at or after ``timestamp``; set updated_at (SS-10)."""
        rules.check_session_id(session_id)
        check_timestamp(timestamp, what="timestamp")
        now = self._now()

        def write(conn: sqlite3.Connection) -> None:
            cursor = conn.execute(
                f"DELETE FROM {self._messages} WHERE session_id = ? AND created_at >= ?",
                (session_id, timestamp),
            )
            if not conn.execute(
                f"UPDATE {self._sessions} SET message_count = message_count - ?, updated_at = ? "
                "WHERE session_id = ? RETURNING 1",
                (cursor.rowcount, now, session_id),
            ).fetchall():
                raise NotFound(f"no session {session_id!r}")  # rolls the DELETE back

        await self._db.write(write)

    # --- export, import, copy (SS-17 .. SS-19) -----------------------------------------------

    async def _snapshot(self, session_id: str) -> tuple[Session, tuple[Message, ...]]:
        """The session and its conversation, read in one transaction."""

        def read(conn: sqlite3.Connection) -> tuple[_SessionRow, list[str]]:
            return self._row(conn, session_id), self._conversation(conn, session_id)

        row, texts = await self._db.read(read)
        return _session(row), tuple(_message(t) for t in texts)

    async def export_session(self, session_id: str) -> str:
        """The session and its conversation as a version-1 document (SS-17)."""
        rules.check_session_id(session_id)
        session, conversation = await self._snapshot(session_id)
        return rules.export_document(session, conversation)

    async def import_session(self, document: str) -> Session:
        """Create a new session from an export document (SS-18)."""
        template, conversation = rules.parse_export(document)
        rows = _message_rows(conversation)
        now = self._now()

        def write(conn: sqlite3.Connection) -> Session:
            session = rules.imported_session(template, self._new_id(conn, now), now)
            self._insert_session(conn, session, rows)
            return session

        created = await self._db.write(write)
        return replace(created, message_count=len(rows))

    async def copy_session(self, session_id: str, new_name: str) -> Session:
        """A new session with what SS-19 lists, read and written in one transaction."""
        rules.check_session_id(session_id)
        name = rules.check_name(new_name, what="new_name")
        now = self._now()

        def write(conn: sqlite3.Connection) -> Session:
            source = _session(self._row(conn, session_id))
            copied = rules.copied_session(source, self._new_id(conn, now), name, now)
            self._insert_session(conn, copied, ())
            # The messages are copied row by row inside the database, never parsed.
            cursor = conn.execute(
                f"INSERT INTO {self._messages} "
                "(session_id, position, created_at, search_text, message) "
                "SELECT ?, row_number() OVER (ORDER BY position) - 1, created_at, "
                f"search_text, message FROM {self._messages} WHERE session_id = ?",
                (copied.id, session_id),
            )
            count = max(cursor.rowcount, 0)
            conn.execute(
                f"UPDATE {self._sessions} SET message_count = ?, next_position = ? "
                "WHERE session_id = ?",
                (count, count, copied.id),
            )
            return replace(copied, message_count=count)

        return await self._db.write(write)

    # --- search (SS-20 .. SS-22) -------------------------------------------------------------

    async def _search(self, request: rules.SearchRequest) -> list[ChatHistoryMatch]:
        """The search's query (:class:`~..session_store_rules.SessionQueries`): one SELECT
        through FTS5, in SS-22 order (SS-20 .. SS-22)."""
        conditions, params = self._text_condition(request.words)
        if request.after_date is not None:
            conditions.append("m.created_at >= ?")
            params.append(request.after_date)
        if request.before_date is not None:
            conditions.append("m.created_at < ?")
            params.append(request.before_date)
        if request.exclude_session_id is not None:
            conditions.append("m.session_id <> ?")
            params.append(request.exclude_session_id)
        where = " AND ".join(conditions) if conditions else "1"
        sql = (
            f"SELECT m.session_id, m.position, m.message, s.record FROM {self._messages} AS m "
            f"LEFT JOIN {self._sessions} AS s ON s.session_id = m.session_id WHERE {where} "
            "ORDER BY m.created_at IS NULL, m.created_at DESC, m.session_id, m.position"
        )

        def read(conn: sqlite3.Connection) -> list[ChatHistoryMatch]:
            names: dict[str, str] = {}

            def candidates() -> Iterator[rules.Candidate]:
                for session_id, position, message, record in conn.execute(sql, params):
                    if record is None:  # a message outlived its session: say so, do not hide it
                        raise StorageUnavailable(
                            f"corrupt database: messages of a missing session {session_id!r}"
                        )
                    if session_id not in names:
                        names[session_id] = self._name(str(record))
                    yield rules.Candidate(
                        str(session_id), names[session_id], int(position), _message(message)
                    )

            # Rows come in the spec's order: stop reading after `limit` confirmed matches.
            return rules.select_matches(request, candidates(), ordered=True)

        return await self._db.read(read)

    def _text_condition(self, words: Sequence[str]) -> tuple[list[str], list[Any]]:
        """The SQL that proposes candidates for ``words`` (a superset of the matches)."""
        if any("\x00" in word for word in words):
            return [], []  # index_text has no NUL: check every message in Python
        if all(len(word) >= _TRIGRAM for word in words):
            # The index, and the few messages not indexed yet (see ss_fts_state) read directly.
            expression = " OR ".join(_fts_phrase(word) for word in words)
            pending = " OR ".join("instr(search_text, ?) > 0" for _ in words)
            return (
                [
                    f"m.id IN (SELECT rowid FROM {self._fts} WHERE {self._fts} MATCH ? "
                    f"UNION ALL SELECT id FROM {self._messages} "
                    f"WHERE id > (SELECT indexed_upto FROM {self._fts_state}) AND ({pending}))"
                ],
                [expression, *words],
            )
        tests = " OR ".join("instr(m.search_text, ?) > 0" for _ in words)
        return [f"({tests})"], list(words)

    @staticmethod
    def _name(record: str) -> str:
        try:
            name = load_json(record)["name"]
        except (ValueError, KeyError, TypeError) as exc:
            raise _corrupt("session", exc) from exc
        if not isinstance(name, str):
            raise StorageUnavailable("corrupt session in the database: name is not a str")
        return name


def open_store(ctx: StoreContext) -> AbstractAsyncContextManager[SQLiteSessionStore]:
    """The kit's opener: the context's database file and namespace prefix (an async CM)."""
    path, prefix = context_location(ctx)
    return SQLiteSessionStore(path, prefix=prefix, clock=ctx.clock)
