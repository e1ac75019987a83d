"""The SQLite thread/run store (spec ``thread_run.md``).

Three tables under the store's prefix:

* ``threads``: one row per thread; the metadata as JSON text, with its two times copied into
  INTEGER columns for the list_threads index (TR-5);
* ``messages``: one row per message, keyed by (thread, position), so a thread's list loads in
  order and is replaced with one DELETE and one INSERT batch (TR-7, TR-8);
* ``runs``: one row per run; the whole record as JSON text (its u64 counters do not fit
  SQLite's signed 64-bit integers, and JSON keeps big ints and ``-0.0`` exact), with the
  queried fields copied into columns and indexed for list_runs and latest_run (TR-14, TR-15).

Every operation is one transaction; checkpoint reads the stored thread and run, checks the
transition and writes everything in one ``BEGIN IMMEDIATE`` transaction (TR-18 .. TR-21).
Arguments are validated and serialised before the transaction starts, so bad input writes
nothing and later changes to the caller's objects do not reach the store (G-5, G-7).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

from agentstores.conformance.backend import StoreContext
from agentstores.spec.errors import AlreadyExists, NotFound, StorageUnavailable
from agentstores.spec.messages import Message, message_from_json, message_to_json
from agentstores.spec.thread_run import (
    RunPage,
    RunQuery,
    RunRecord,
    Thread,
    ThreadMetadata,
)
from agentstores.spec.values import (
    Clock,
    check_id,
    check_limit_offset,
    check_timestamp,
    dump_json,
    load_json,
    system_clock,
)

from .. import thread_run_rules as rules
from ._db import DEFAULT_BUSY_TIMEOUT, Migration, Synchronous, context_location
from ._store import SQLiteStore

__all__ = ["MIGRATIONS", "SQLiteThreadRunStore", "open_store"]

T = TypeVar("T")

#: The thread/run schema, version by version (see :class:`~._db.Database`).
MIGRATIONS: tuple[Migration, ...] = (
    """
    CREATE TABLE "{prefix}threads" (
        thread_id TEXT PRIMARY KEY NOT NULL,
        created_at INTEGER,
        updated_at INTEGER,
        metadata TEXT NOT NULL
    );
    -- list_threads: effective time descending, then id (TR-5); the query repeats this
    -- expression verbatim so that the planner uses the index.
    CREATE INDEX "{prefix}threads_by_time"
        ON "{prefix}threads" (coalesce(updated_at, created_at, 0) DESC, thread_id);

    CREATE TABLE "{prefix}messages" (
        thread_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        message TEXT NOT NULL,
        PRIMARY KEY (thread_id, position)
    );

    CREATE TABLE "{prefix}runs" (
        run_id TEXT PRIMARY KEY NOT NULL,
        thread_id TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        record TEXT NOT NULL
    );
    -- list_runs (TR-15) with no filter, a thread filter, a status filter, or both.
    CREATE INDEX "{prefix}runs_by_created" ON "{prefix}runs" (created_at, run_id);
    CREATE INDEX "{prefix}runs_by_thread" ON "{prefix}runs" (thread_id, created_at, run_id);
    CREATE INDEX "{prefix}runs_by_status" ON "{prefix}runs" (status, created_at, run_id);
    CREATE INDEX "{prefix}runs_by_thread_status"
        ON "{prefix}runs" (thread_id, status, created_at, run_id);
    -- latest_run (TR-14), read backwards; also serves delete_thread.
    CREATE INDEX "{prefix}runs_latest"
        ON "{prefix}runs" (thread_id, updated_at, created_at, run_id);
    """,
)

_THREAD_TIME = "coalesce(updated_at, created_at, 0)"


def _decode(what: str, text: str, parse: Callable[[Any], T]) -> T:
    """Parse stored JSON text; a row that does not parse is corrupt storage, not bad input."""
    try:
        return parse(load_json(text))
    except ValueError as exc:  # JSONDecodeError and InvalidArgument are ValueErrors
        raise StorageUnavailable(f"corrupt {what} in the database: {exc}") from exc


def _thread_metadata(text: str) -> ThreadMetadata:
    return _decode("thread metadata", text, rules.metadata_from_json)


def _run(text: str) -> RunRecord:
    return _decode("run", text, rules.run_from_json)


def _message(text: str) -> Message:
    return _decode("message", text, message_from_json)


def _run_row(run: RunRecord) -> tuple[str, str, str, int, int, str]:
    return (
        run.run_id,
        run.thread_id,
        run.status.value,
        run.created_at,
        run.updated_at,
        dump_json(rules.run_to_json(run)),
    )


class SQLiteThreadRunStore(SQLiteStore):
    """A :class:`~agentstores.spec.thread_run.ThreadRunStore` in an SQLite database file.

    Args:
        path: the database file (its directory must exist); several stores, families and
            processes may share it.
        prefix: the table prefix that isolates this store from others in the file (G-19);
            ASCII letters, digits and underscores.
        clock: the source of every time the store stamps (G-6).
        synchronous: ``"FULL"`` (default, durable on power loss) or ``"NORMAL"``.
        busy_timeout: seconds a write waits while another connection or process holds
            the database's write lock, then StorageUnavailable with nothing written (G-22).

    Use ``async with SQLiteThreadRunStore(path) as store:``, or call methods directly (the
    database opens on first use) and ``await store.close()`` at the end.

    Its tables, reached through :attr:`database`: ``database.table("threads")``,
    ``"messages"`` and ``"runs"`` (see :data:`MIGRATIONS`).
    """

    _family = "thread_run"
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
        self._threads = self._db.table("threads")
        self._messages = self._db.table("messages")
        self._runs = self._db.table("runs")

    # --- threads (TR-1 .. TR-6, TR-10) -------------------------------------------------------

    async def load_thread(self, thread_id: str) -> Thread | None:
        """The thread, or None (TR-1)."""
        check_id(thread_id, what="thread id")

        def read(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                f"SELECT metadata FROM {self._threads} WHERE thread_id = ?", (thread_id,)
            ).fetchone()
            return None if row is None else str(row[0])

        text = await self._db.read(read)
        return None if text is None else Thread(thread_id, _thread_metadata(text))

    async def save_thread(self, thread: Thread) -> None:
        """Create the thread or replace its metadata exactly (TR-2, TR-3); messages stay."""
        rules.check_thread(thread)
        row = self._thread_row(thread.id, thread.metadata)

        def write(conn: sqlite3.Connection) -> None:
            self._upsert_thread(conn, row)

        await self._db.write(write)

    async def delete_thread(self, thread_id: str) -> None:
        """Delete the thread with its messages and runs, atomically; missing is a no-op (TR-4)."""
        check_id(thread_id, what="thread id")

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(f"DELETE FROM {self._messages} WHERE thread_id = ?", (thread_id,))
            conn.execute(f"DELETE FROM {self._runs} WHERE thread_id = ?", (thread_id,))
            conn.execute(f"DELETE FROM {self._threads} WHERE thread_id = ?", (thread_id,))

        await self._db.write(write)

    async def list_threads(self, offset: int = 0, limit: int = 50) -> list[str]:
        """Thread ids by effective time descending, then id; paged without clamp (TR-5, TR-6)."""
        limit, offset = check_limit_offset(limit, offset)

        def read(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                f"SELECT thread_id FROM {self._threads} "
                f"ORDER BY {_THREAD_TIME} DESC, thread_id LIMIT ? OFFSET ?",
                (limit, offset),
            ).fetchall()
            return [str(row[0]) for row in rows]

        return await self._db.read(read)

    async def update_thread_metadata(self, thread_id: str, metadata: ThreadMetadata) -> None:
        """Replace the metadata exactly (TR-10); NotFound if the thread is missing."""
        check_id(thread_id, what="thread id")
        rules.check_metadata(metadata)
        _, created_at, updated_at, text = self._thread_row(thread_id, metadata)

        def write(conn: sqlite3.Connection) -> None:
            cursor = conn.execute(
                f"UPDATE {self._threads} SET created_at = ?, updated_at = ?, metadata = ? "
                "WHERE thread_id = ?",
                (created_at, updated_at, text, thread_id),
            )
            if cursor.rowcount == 0:
                raise NotFound(f"no thread {thread_id!r}")

        await self._db.write(write)

    # --- messages (TR-7 .. TR-9) -------------------------------------------------------------

    async def load_messages(self, thread_id: str) -> list[Message] | None:
        """The saved messages in order; None if the thread does not exist (TR-7)."""
        check_id(thread_id, what="thread id")

        def read(conn: sqlite3.Connection) -> list[str] | None:
            if not self._thread_exists(conn, thread_id):
                return None
            rows = conn.execute(
                f"SELECT message FROM {self._messages} WHERE thread_id = ? ORDER BY position",
                (thread_id,),
            ).fetchall()
            return [str(row[0]) for row in rows]

        texts = await self._db.read(read)
        return None if texts is None else [_message(text) for text in texts]

    async def save_messages(self, thread_id: str, messages: Sequence[Message]) -> None:
        """Replace the thread's messages (TR-8); NotFound if the thread is missing."""
        check_id(thread_id, what="thread id")
        rows = self._message_rows(thread_id, rules.check_messages(messages))

        def write(conn: sqlite3.Connection) -> None:
            if not self._thread_exists(conn, thread_id):
                raise NotFound(f"no thread {thread_id!r}")
            self._replace_messages(conn, thread_id, rows)

        await self._db.write(write)

    async def delete_messages(self, thread_id: str) -> None:
        """Empty the thread's message list (TR-9); NotFound if the thread is missing."""
        check_id(thread_id, what="thread id")

        def write(conn: sqlite3.Connection) -> None:
            if not self._thread_exists(conn, thread_id):
                raise NotFound(f"no thread {thread_id!r}")
            conn.execute(f"DELETE FROM {self._messages} WHERE thread_id = ?", (thread_id,))

        await self._db.write(write)

    # --- runs (TR-11 .. TR-17) ---------------------------------------------------------------

    async def create_run(self, record: RunRecord) -> None:
        """Store a new run with any status (TR-12); AlreadyExists if the run id is taken."""
        row = _run_row(rules.check_run(record))

        def write(conn: sqlite3.Connection) -> None:
            cursor = conn.execute(
                f"INSERT INTO {self._runs} "
                "(run_id, thread_id, status, created_at, updated_at, record) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_id) DO NOTHING",
                row,
            )
            if cursor.rowcount == 0:
                raise AlreadyExists(f"run {record.run_id!r} already exists")

        await self._db.write(write)

    async def load_run(self, run_id: str) -> RunRecord | None:
        """The run, or None (TR-13)."""
        check_id(run_id, what="run id")

        def read(conn: sqlite3.Connection) -> str | None:
            return self._stored_run(conn, run_id)

        text = await self._db.read(read)
        return None if text is None else _run(text)

    async def latest_run(self, thread_id: str) -> RunRecord | None:
        """The thread's run with the highest (updated_at, created_at, run_id) (TR-14)."""
        check_id(thread_id, what="thread id")

        def read(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                f"SELECT record FROM {self._runs} WHERE thread_id = ? "
                "ORDER BY updated_at DESC, created_at DESC, run_id DESC LIMIT 1",
                (thread_id,),
            ).fetchone()
            return None if row is None else str(row[0])

        text = await self._db.read(read)
        return None if text is None else _run(text)

    async def list_runs(self, query: RunQuery) -> RunPage:
        """Selected runs by created_at then run_id, paged and clamped (TR-15 .. TR-17)."""
        offset, limit = rules.check_query(query)
        conditions: list[str] = []
        params: list[object] = []
        if query.thread_id is not None:
            conditions.append("thread_id = ?")
            params.append(query.thread_id)
        if query.status is not None:
            conditions.append("status = ?")
            params.append(query.status.value)
        where = f"WHERE {' AND '.join(conditions)} " if conditions else ""

        def read(conn: sqlite3.Connection) -> tuple[list[str], int, int]:
            total = int(
                conn.execute(f"SELECT count(*) FROM {self._runs} {where}", params).fetchone()[0]
            )
            start = min(offset, total)
            rows = conn.execute(
                f"SELECT record FROM {self._runs} {where}"
                "ORDER BY created_at, run_id LIMIT ? OFFSET ?",
                [*params, limit, start],
            ).fetchall()
            return [str(row[0]) for row in rows], start, total

        texts, start, total = await self._db.read(read)
        return rules.run_page([_run(text) for text in texts], start, total)

    # --- checkpoint (TR-18 .. TR-21) ---------------------------------------------------------

    async def checkpoint(self, thread_id: str, messages: Sequence[Message], run: RunRecord) -> None:
        """Upsert the thread, replace its messages and upsert the run, atomically (TR-18, TR-19).

        Raises InvalidArgument if ``run.thread_id`` differs from ``thread_id``, Conflict if the
        stored run is on another thread or its status may not change so (TR-20, TR-21); in
        every failure nothing is written.
        """
        thread_id, checked, run = rules.check_checkpoint(thread_id, messages, run)
        message_rows = self._message_rows(thread_id, checked)
        run_row = _run_row(run)
        now = check_timestamp(self._clock(), what="clock time")

        def write(conn: sqlite3.Connection) -> None:
            stored_text = self._stored_run(conn, run.run_id)
            rules.check_transition(None if stored_text is None else _run(stored_text), run)
            row = conn.execute(
                f"SELECT metadata FROM {self._threads} WHERE thread_id = ?", (thread_id,)
            ).fetchone()
            existing = None if row is None else _thread_metadata(str(row[0]))
            metadata = rules.checkpoint_thread_metadata(existing, now)
            self._upsert_thread(conn, self._thread_row(thread_id, metadata))
            self._replace_messages(conn, thread_id, message_rows)
            conn.execute(
                f"INSERT INTO {self._runs} "
                "(run_id, thread_id, status, created_at, updated_at, record) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_id) DO UPDATE SET "
                "thread_id = excluded.thread_id, status = excluded.status, "
                "created_at = excluded.created_at, updated_at = excluded.updated_at, "
                "record = excluded.record",
                run_row,
            )

        await self._db.write(write)

    # --- helpers (the *_row ones run on the caller's side, the others in the worker) ---------

    @staticmethod
    def _thread_row(
        thread_id: str, metadata: ThreadMetadata
    ) -> tuple[str, int | None, int | None, str]:
        text = dump_json(rules.metadata_to_json(metadata))
        return thread_id, metadata.created_at, metadata.updated_at, text

    @staticmethod
    def _message_rows(thread_id: str, messages: Sequence[Message]) -> list[tuple[str, int, str]]:
        return [
            (thread_id, position, dump_json(message_to_json(message)))
            for position, message in enumerate(messages)
        ]

    def _upsert_thread(
        self, conn: sqlite3.Connection, row: tuple[str, int | None, int | None, str]
    ) -> None:
        conn.execute(
            f"INSERT INTO {self._threads} (thread_id, created_at, updated_at, metadata) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (thread_id) DO UPDATE SET "
            "created_at = excluded.created_at, updated_at = excluded.updated_at, "
            "metadata = excluded.metadata",
            row,
        )

    def _thread_exists(self, conn: sqlite3.Connection, thread_id: str) -> bool:
        row = conn.execute(
            f"SELECT 1 FROM {self._threads} WHERE thread_id = ?", (thread_id,)
        ).fetchone()
        return row is not None

    def _replace_messages(
        self, conn: sqlite3.Connection, thread_id: str, rows: Sequence[tuple[str, int, str]]
    ) -> None:
        conn.execute(f"DELETE FROM {self._messages} WHERE thread_id = ?", (thread_id,))
        conn.executemany(
            f"INSERT INTO {self._messages} (thread_id, position, message) VALUES (?, ?, ?)", rows
        )

    def _stored_run(self, conn: sqlite3.Connection, run_id: str) -> str | None:
        row = conn.execute(
            f"SELECT record FROM {self._runs} WHERE run_id = ?", (run_id,)
        ).fetchone()
        return None if row is None else str(row[0])


def open_store(ctx: StoreContext) -> AbstractAsyncContextManager[SQLiteThreadRunStore]:
    """The kit's opener: the context's database file and namespace prefix (an async CM)."""
    path, prefix = context_location(ctx)
    return SQLiteThreadRunStore(path, prefix=prefix, clock=ctx.clock)
