"""The SQLite memory store (spec ``memory_storage.md``).

Three tables under the store's prefix (named ``ms_*`` so that other families may share the
prefix):

* ``ms_memories``: one row per memory, keyed by its id (unique in the store, MS-3), with
  indexes on (user, updated_at DESC, id) and (user, created_at, id) that serve ``last_n``,
  ``first_n`` and search in their order (MS-5, MS-13) without sorting;
* ``ms_summaries``: one row per (user, session) (MS-14);
* ``ms_messages``: one row per message; an ``AUTOINCREMENT`` sequence number is the save
  order (MS-18), indexed per (user, session, seq) so that saving is one index insert and
  reading the newest N reads N rows (MS-19), and per (user, created_at) for retention (MS-22).
  The message is stored as its JSON form (G-15).

Every operation is one transaction. Texts are validated before the transaction (MS-1), and
times are read from the clock inside the write transaction, so stamps follow commit order.
Search filters the user's memories in Python (``str.casefold`` has no SQL equivalent) while
walking the ``last_n`` index, stopping at the limit; semantic retrieval reads the user's
memories and embeds them with the query in one call (cost: one embedding per memory).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from agentstores.conformance.backend import StoreContext
from agentstores.spec.errors import AlreadyExists, NotFound, NotSupported
from agentstores.spec.memory_storage import (
    ConversationMessage,
    Embedder,
    MemoryRetrieval,
    SessionSummary,
    UserMemory,
)
from agentstores.spec.messages import Message, message_to_json
from agentstores.spec.values import Clock, check_id, dump_json, system_clock

from .. import memory_storage_rules as rules
from .._records import assemble, decode_message
from ._db import DEFAULT_BUSY_TIMEOUT, Migration, Synchronous, context_location
from ._store import SQLiteStore

__all__ = ["MIGRATIONS", "SQLiteMemoryStorage", "open_store"]

#: The memory-storage schema, version by version (see :class:`~._db.Database`).
MIGRATIONS: tuple[Migration, ...] = (
    """
    CREATE TABLE "{prefix}ms_memories" (
        id TEXT PRIMARY KEY NOT NULL,
        user_id TEXT NOT NULL,
        memory TEXT NOT NULL,
        input TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX "{prefix}ms_memories_last_n"
        ON "{prefix}ms_memories" (user_id, updated_at DESC, id);
    CREATE INDEX "{prefix}ms_memories_first_n"
        ON "{prefix}ms_memories" (user_id, created_at, id);

    CREATE TABLE "{prefix}ms_summaries" (
        user_id TEXT NOT NULL,
        session_id TEXT NOT NULL,
        summary TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (user_id, session_id)
    ) WITHOUT ROWID;

    CREATE TABLE "{prefix}ms_messages" (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        session_id TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        message TEXT NOT NULL
    );
    CREATE INDEX "{prefix}ms_messages_by_conversation"
        ON "{prefix}ms_messages" (user_id, session_id, seq);
    CREATE INDEX "{prefix}ms_messages_by_time" ON "{prefix}ms_messages" (user_id, created_at);
    """,
)

_MEMORY_COLUMNS = "id, user_id, memory, input, created_at, updated_at"
_ORDER = {
    MemoryRetrieval.LAST_N: "updated_at DESC, id",
    MemoryRetrieval.FIRST_N: "created_at, id",
}


def _memory(row: Sequence[Any]) -> UserMemory:
    """A memory from a row of ``_MEMORY_COLUMNS``."""
    return UserMemory(str(row[0]), str(row[1]), str(row[2]), str(row[3]), int(row[4]), int(row[5]))


def _message(row: Sequence[Any], session_id: str, user_id: str) -> ConversationMessage:
    """A stored message from a row of (id, created_at, message): the text this store wrote,
    decoded (:func:`~._records.decode_message`)."""
    return assemble(
        ConversationMessage,
        {
            "id": str(row[0]),
            "session_id": session_id,
            "user_id": user_id,
            "message": decode_message(str(row[2])),
            "created_at": int(row[1]),
        },
    )


class SQLiteMemoryStorage(SQLiteStore):
    """A :class:`~agentstores.spec.memory_storage.MemoryStorage` in an SQLite database file.

    Args:
        path: the database file (its directory must exist); several stores, families and
            processes may share it.
        prefix: the table prefix, the seed's ``SetTablePrefix`` (MS-29); ASCII letters,
            digits and underscores.
        clock: the source of every time the store stamps (G-6).
        embedder: enables ``semantic`` retrieval (MS-7); without it semantic is NotSupported.
        synchronous: ``"FULL"`` (default, durable on power loss) or ``"NORMAL"``.
        busy_timeout: seconds a write waits while another connection or process holds
            the database's write lock, then StorageUnavailable with nothing written (G-22).

    The schema is created or upgraded when the database is first used (MS-28). Use
    ``async with SQLiteMemoryStorage(path) as store:`` or ``await store.close()`` at the end.

    Its tables, reached through :attr:`database`: ``database.table("ms_memories")``,
    ``"ms_summaries"`` and ``"ms_messages"`` (see :data:`MIGRATIONS`).
    """

    _family = "memory_storage"
    _migrations = MIGRATIONS

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        prefix: str = "",
        clock: Clock = system_clock,
        embedder: Embedder | None = None,
        synchronous: Synchronous = "FULL",
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    ) -> None:
        super().__init__(
            path, prefix=prefix, clock=clock, synchronous=synchronous, busy_timeout=busy_timeout
        )
        self._embedder = embedder
        self._memories = self._db.table("ms_memories")
        self._summaries = self._db.table("ms_summaries")
        self._messages = self._db.table("ms_messages")
        self._insert_message = (
            f"INSERT INTO {self._messages} (id, user_id, session_id, created_at, message) "
            "VALUES (?, ?, ?, ?, ?)"
        )

    # --- lifecycle (MS-26 .. MS-28; close, MS-27, comes from SQLiteStore) ------------------

    async def health(self) -> None:
        """Return if the database answers a query; StorageUnavailable otherwise (MS-26)."""
        await self._db.read(lambda conn: conn.execute("SELECT 1").fetchone())

    async def migrate(self) -> None:
        """Create or upgrade the schema; idempotent (MS-28)."""
        await self._db.open()

    # --- user memories (MS-3 .. MS-13) -----------------------------------------------------

    async def save_user_memory(self, memory: UserMemory) -> UserMemory:
        """Store a new memory stamped now; AlreadyExists if its id is taken (MS-3)."""
        rules.check_memory(memory)

        def write(conn: sqlite3.Connection) -> UserMemory:
            now = self._clock()
            cursor = conn.execute(
                f"INSERT INTO {self._memories} ({_MEMORY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO NOTHING",
                (memory.id, memory.user_id, memory.memory, memory.input, now, now),
            )
            if cursor.rowcount == 0:
                raise AlreadyExists(f"memory {memory.id!r} exists")
            return UserMemory(memory.id, memory.user_id, memory.memory, memory.input, now, now)

        return await self._db.write(write)

    async def get_user_memories(
        self,
        user_id: str,
        limit: int = 0,
        retrieval: MemoryRetrieval = MemoryRetrieval.LAST_N,
        query: str | None = None,
    ) -> list[UserMemory]:
        """The user's memories by retrieval, at most ``limit`` (MS-4 .. MS-8)."""
        check_id(user_id, what="user id")
        limit = rules.check_limit(limit)
        chosen, checked_query = rules.check_retrieval(retrieval, query)
        if chosen is MemoryRetrieval.SEMANTIC:
            if self._embedder is None:
                raise NotSupported("this store has no embedder: semantic retrieval is off")
            assert checked_query is not None
            everything = await self._select_memories(user_id, MemoryRetrieval.LAST_N, 0)
            ranked = await rules.rank_semantic(self._embedder, checked_query, everything)
            return rules.take(ranked, limit)
        return await self._select_memories(user_id, chosen, limit)

    async def _select_memories(
        self, user_id: str, retrieval: MemoryRetrieval, limit: int
    ) -> list[UserMemory]:
        sql = (
            f"SELECT {_MEMORY_COLUMNS} FROM {self._memories} WHERE user_id = ? "
            f"ORDER BY {_ORDER[retrieval]} LIMIT ?"
        )

        def read(conn: sqlite3.Connection) -> list[UserMemory]:
            rows = conn.execute(sql, (user_id, limit if limit else -1)).fetchall()
            return [_memory(row) for row in rows]

        return await self._db.read(read)

    async def update_user_memory(self, memory: UserMemory) -> UserMemory:
        """Replace text and input of the user's memory; NotFound otherwise (MS-9)."""
        rules.check_memory(memory)

        def write(conn: sqlite3.Connection) -> UserMemory:
            now = self._clock()
            row = conn.execute(
                f"UPDATE {self._memories} SET memory = ?, input = ?, updated_at = ? "
                "WHERE id = ? AND user_id = ? RETURNING created_at",
                (memory.memory, memory.input, now, memory.id, memory.user_id),
            ).fetchone()
            if row is None:
                raise NotFound(f"user {memory.user_id!r} has no memory {memory.id!r}")
            return UserMemory(
                memory.id, memory.user_id, memory.memory, memory.input, int(row[0]), now
            )

        return await self._db.write(write)

    async def delete_user_memory(self, memory_id: str) -> None:
        """Delete the memory with this id, whoever owns it; missing is a no-op (MS-10)."""
        check_id(memory_id, what="memory id")
        sql = f"DELETE FROM {self._memories} WHERE id = ?"
        await self._db.write(lambda conn: conn.execute(sql, (memory_id,)))

    async def delete_user_memories_by_ids(self, user_id: str, memory_ids: Sequence[str]) -> None:
        """Delete the listed memories of ``user_id`` in one transaction (MS-11)."""
        check_id(user_id, what="user id")
        ids = rules.check_memory_ids(memory_ids)
        sql = f"DELETE FROM {self._memories} WHERE id = ? AND user_id = ?"
        await self._db.write(lambda conn: conn.executemany(sql, [(i, user_id) for i in ids]))

    async def clear_user_memories(self, user_id: str) -> None:
        """Delete every memory of ``user_id`` (MS-12)."""
        check_id(user_id, what="user id")
        sql = f"DELETE FROM {self._memories} WHERE user_id = ?"
        await self._db.write(lambda conn: conn.execute(sql, (user_id,)))

    async def search_user_memories(
        self, user_id: str, query: str, limit: int = 0
    ) -> list[UserMemory]:
        """The user's memories containing ``query`` caselessly, in last_n order (MS-13)."""
        check_id(user_id, what="user id")
        needle = rules.check_text(query, what="query").casefold()
        limit = rules.check_limit(limit)
        sql = (
            f"SELECT {_MEMORY_COLUMNS} FROM {self._memories} WHERE user_id = ? "
            f"ORDER BY {_ORDER[MemoryRetrieval.LAST_N]}"
        )

        def read(conn: sqlite3.Connection) -> list[UserMemory]:
            found: list[UserMemory] = []
            for row in conn.execute(sql, (user_id,)):
                memory = _memory(row)
                if rules.matches(memory, needle):
                    found.append(memory)
                    if len(found) == limit:
                        break
            return found

        return await self._db.read(read)

    # --- session summaries (MS-14 .. MS-16) ------------------------------------------------

    async def save_session_summary(self, summary: SessionSummary) -> SessionSummary:
        """Create or replace the summary of (session, user) (MS-14)."""
        rules.check_summary(summary)
        return await self._db.write(lambda conn: self._upsert_summary(conn, summary, False))

    async def update_session_summary(self, summary: SessionSummary) -> SessionSummary:
        """Replace an existing summary; NotFound if there is none (MS-16)."""
        rules.check_summary(summary)
        return await self._db.write(lambda conn: self._upsert_summary(conn, summary, True))

    def _upsert_summary(
        self, conn: sqlite3.Connection, summary: SessionSummary, existing_only: bool
    ) -> SessionSummary:
        now = self._clock()
        key = (summary.user_id, summary.session_id)
        if existing_only:
            row = conn.execute(
                f"UPDATE {self._summaries} SET summary = ?, updated_at = ? "
                "WHERE user_id = ? AND session_id = ? RETURNING created_at",
                (summary.summary, now, *key),
            ).fetchone()
            if row is None:
                raise NotFound(f"no summary of session {summary.session_id!r}")
        else:
            row = conn.execute(
                f"INSERT INTO {self._summaries} "
                "(user_id, session_id, summary, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (user_id, session_id) DO UPDATE "
                "SET summary = excluded.summary, updated_at = excluded.updated_at "
                "RETURNING created_at",
                (*key, summary.summary, now, now),
            ).fetchone()
        return SessionSummary(
            summary.session_id, summary.user_id, summary.summary, int(row[0]), now
        )

    async def get_session_summary(self, session_id: str, user_id: str) -> SessionSummary | None:
        """The summary of (session, user), or None (MS-15)."""
        rules.check_pair(session_id, user_id)

        def read(conn: sqlite3.Connection) -> SessionSummary | None:
            row = conn.execute(
                f"SELECT summary, created_at, updated_at FROM {self._summaries} "
                "WHERE user_id = ? AND session_id = ?",
                (user_id, session_id),
            ).fetchone()
            if row is None:
                return None
            return SessionSummary(session_id, user_id, str(row[0]), int(row[1]), int(row[2]))

        return await self._db.read(read)

    async def delete_session_summary(self, session_id: str, user_id: str) -> None:
        """Delete the summary of (session, user); missing is a no-op (MS-15)."""
        rules.check_pair(session_id, user_id)
        sql = f"DELETE FROM {self._summaries} WHERE user_id = ? AND session_id = ?"
        await self._db.write(lambda conn: conn.execute(sql, (user_id, session_id)))

    # --- messages (MS-17 .. MS-23) ---------------------------------------------------------

    async def save_message(
        self, session_id: str, user_id: str, message: Message
    ) -> ConversationMessage:
        """Append the message to (session, user): one index insert (MS-17, MS-18)."""
        checked = rules.check_message_args(session_id, user_id, message)
        text = dump_json(message_to_json(checked))
        message_id = rules.new_message_id()
        sql = self._insert_message

        def write(conn: sqlite3.Connection) -> int:
            now = self._clock()
            conn.execute(sql, (message_id, user_id, session_id, now, text))
            return now

        written = self._db.start_write(write)
        try:
            # While the worker commits: the caller's copy, not theirs (G-7).
            stored = decode_message(text)
        finally:
            now = await written
        return ConversationMessage(message_id, session_id, user_id, stored, now)

    async def get_messages(
        self, session_id: str, user_id: str, limit: int = 0
    ) -> list[ConversationMessage]:
        """The newest ``limit`` messages (all for 0), oldest first; reads only them (MS-19)."""
        rules.check_pair(session_id, user_id)
        limit = rules.check_limit(limit)
        sql = (
            f"SELECT id, created_at, message FROM {self._messages} "
            "WHERE user_id = ? AND session_id = ? ORDER BY seq DESC LIMIT ?"
        )

        def read(conn: sqlite3.Connection) -> list[Any]:
            return conn.execute(sql, (user_id, session_id, limit if limit else -1)).fetchall()

        rows = await self._db.query(read)  # one statement: its own snapshot
        return [_message(row, session_id, user_id) for row in reversed(rows)]

    async def delete_messages(self, session_id: str, user_id: str) -> None:
        """Delete the conversation of (session, user) (MS-20)."""
        rules.check_pair(session_id, user_id)
        sql = f"DELETE FROM {self._messages} WHERE user_id = ? AND session_id = ?"
        await self._db.write(lambda conn: conn.execute(sql, (user_id, session_id)))

    async def get_message_count(self, user_id: str, session_id: str) -> int:
        """The number of messages of (session, user); user first, as in the seed (MS-21)."""
        rules.check_pair(session_id, user_id)
        sql = f"SELECT count(*) FROM {self._messages} WHERE user_id = ? AND session_id = ?"

        def read(conn: sqlite3.Connection) -> int:
            return int(conn.execute(sql, (user_id, session_id)).fetchone()[0])

        return await self._db.read(read)

    async def cleanup_old_messages(self, user_id: str, before: int) -> None:
        """Delete the user's messages with created_at < before, all sessions (MS-22)."""
        check_id(user_id, what="user id")
        before = rules.check_before(before)
        sql = f"DELETE FROM {self._messages} WHERE user_id = ? AND created_at < ?"
        await self._db.write(lambda conn: conn.execute(sql, (user_id, before)))

    async def cleanup_messages_by_limit(
        self, user_id: str, session_id: str, keep_limit: int
    ) -> None:
        """Keep the newest ``keep_limit`` messages of one conversation (MS-23)."""
        rules.check_pair(session_id, user_id)
        keep = rules.check_keep_limit(keep_limit)
        # The seq of the newest message to drop; NULL (nothing to drop) if there are <= keep.
        sql = (
            f"DELETE FROM {self._messages} WHERE user_id = ? AND session_id = ? AND seq <= ("
            f"SELECT seq FROM {self._messages} WHERE user_id = ? AND session_id = ? "
            "ORDER BY seq DESC LIMIT 1 OFFSET ?)"
        )
        args = (user_id, session_id, user_id, session_id, keep)
        await self._db.write(lambda conn: conn.execute(sql, args))


def open_store(ctx: StoreContext) -> AbstractAsyncContextManager[SQLiteMemoryStorage]:
    """The kit's opener: the context's database file and prefix; ``options["embedder"]``."""
    path, prefix = context_location(ctx)
    return SQLiteMemoryStorage(
        path, prefix=prefix, clock=ctx.clock, embedder=ctx.options.get("embedder")
    )
