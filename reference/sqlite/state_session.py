"""The SQLite state-session store (spec ``state_session.md``).

Two tables under the store's prefix:

* ``state_sessions``: one row per (user, session) with its save time and its deadline
  (``expires_at``, NULL for none); the primary key orders a user's sessions by id, which is the
  listing order (SQLite compares TEXT as UTF-8 bytes, that is, by code point: ST-9), and an
  index on ``expires_at`` finds expired rows to purge;
* ``state_modules``: one row per module of a session, its state as JSON text (exact for big
  integers and ``-0.0``), deleted with its session by ``ON DELETE CASCADE``.

A save replaces the session's module rows in one ``BEGIN IMMEDIATE`` transaction (ST-3, ST-7);
a load reads only the named modules' rows. Deadlines come from the store's clock (G-6): a
store with a TTL sets ``now + ttl`` on every save and every load that finds the session
(ST-16); a store without one keeps the deadline it finds (ST-17). Expired rows count as absent
(ST-15) and are purged by the next save.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import AbstractAsyncContextManager

from agentstores.conformance.backend import StoreContext
from agentstores.spec.state_session import DEFAULT_USER_ID, StateModule
from agentstores.spec.values import Clock, system_clock

from .. import state_session_rules as rules
from ._db import DEFAULT_BUSY_TIMEOUT, Migration, Synchronous, context_location
from ._store import SQLiteStore

__all__ = ["MIGRATIONS", "SQLiteStateSessionStore", "open_store"]

#: The state-session schema, version by version (see :class:`~._db.Database`).
MIGRATIONS: tuple[Migration, ...] = (
    """
    CREATE TABLE "{prefix}state_sessions" (
        user_id TEXT NOT NULL,
        session_id TEXT NOT NULL,
        saved_at INTEGER NOT NULL,
        expires_at INTEGER,
        PRIMARY KEY (user_id, session_id)
    ) WITHOUT ROWID;
    CREATE INDEX "{prefix}state_sessions_expiry" ON "{prefix}state_sessions" (expires_at)
        WHERE expires_at IS NOT NULL;
    CREATE TABLE "{prefix}state_modules" (
        user_id TEXT NOT NULL,
        session_id TEXT NOT NULL,
        module TEXT NOT NULL,
        state TEXT NOT NULL,
        PRIMARY KEY (user_id, session_id, module),
        FOREIGN KEY (user_id, session_id)
            REFERENCES "{prefix}state_sessions" (user_id, session_id) ON DELETE CASCADE
    ) WITHOUT ROWID;
    """,
)


class SQLiteStateSessionStore(SQLiteStore):
    """A :class:`~agentstores.spec.state_session.StateSessionStore` in an SQLite file.

    Args:
        path: the database file (its directory must exist); several stores, families and
            processes may share it.
        prefix: the table prefix that isolates this store from others in the file (ST-12);
            ASCII letters, digits and underscores.
        ttl_seconds: the time to live of sessions this store saves or loads (ST-15 .. ST-17),
            a positive int; None (default) for none. InvalidArgument otherwise (ST-18).
        clock: the source of save times and deadlines (G-6).
        synchronous: ``"FULL"`` (default, durable on power loss) or ``"NORMAL"``.
        busy_timeout: seconds a write waits while another connection or process holds
            the database's write lock, then StorageUnavailable with nothing written (G-22).

    Use ``async with SQLiteStateSessionStore(path) as store:``, or call methods directly (the
    database opens on first use) and ``await store.close()`` at the end.

    Its tables, reached through :attr:`database`: ``database.table("state_sessions")`` and
    ``"state_modules"`` (see :data:`MIGRATIONS`).
    """

    _family = "state_session"
    _migrations = MIGRATIONS

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        prefix: str = "",
        ttl_seconds: int | None = None,
        clock: Clock = system_clock,
        synchronous: Synchronous = "FULL",
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    ) -> None:
        self._ttl_ms = rules.ttl_milliseconds(ttl_seconds)
        super().__init__(
            path, prefix=prefix, clock=clock, synchronous=synchronous, busy_timeout=busy_timeout
        )
        self._sessions = self._db.table("state_sessions")
        self._modules = self._db.table("state_modules")

    # --- rows (run inside a transaction) ---------------------------------------------------

    def _live_deadline(
        self, conn: sqlite3.Connection, user_id: str, session_id: str, now: int
    ) -> tuple[bool, int | None]:
        """``(exists, deadline)`` of a session; an expired one does not exist (ST-15)."""
        row = conn.execute(
            f"SELECT expires_at FROM {self._sessions} WHERE user_id = ? AND session_id = ?",
            (user_id, session_id),
        ).fetchone()
        if row is None or (row[0] is not None and row[0] <= now):
            return False, None
        return True, row[0]

    # --- the protocol ----------------------------------------------------------------------

    async def save_session_state(
        self,
        session_id: str,
        user_id: str = DEFAULT_USER_ID,
        **state_modules_mapping: StateModule,
    ) -> None:
        """Replace the session's whole state with the named modules' (ST-2, ST-3, ST-7)."""
        session, user = rules.check_session(session_id, user_id)
        texts = rules.snapshot(state_modules_mapping)
        rows = [(user, session, name, text) for name, text in texts.items()]

        def save(conn: sqlite3.Connection) -> None:
            now = self._clock()
            # Purge what has expired, so expired sessions do not pile up (ST-15).
            conn.execute(f"DELETE FROM {self._sessions} WHERE expires_at <= ?", (now,))
            _exists, deadline = self._live_deadline(conn, user, session, now)
            if self._ttl_ms is not None:
                deadline = now + self._ttl_ms  # ST-16; else keep the deadline found (ST-17)
            conn.execute(
                f"INSERT INTO {self._sessions} (user_id, session_id, saved_at, expires_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (user_id, session_id) DO UPDATE SET "
                "saved_at = excluded.saved_at, expires_at = excluded.expires_at",
                (user, session, now, deadline),
            )
            conn.execute(
                f"DELETE FROM {self._modules} WHERE user_id = ? AND session_id = ?",
                (user, session),
            )
            conn.executemany(
                f"INSERT INTO {self._modules} (user_id, session_id, module, state) "
                "VALUES (?, ?, ?, ?)",
                rows,
            )

        await self._db.write(save)

    async def load_session_state(
        self,
        session_id: str,
        user_id: str = DEFAULT_USER_ID,
        allow_not_exist: bool = True,
        **state_modules_mapping: StateModule,
    ) -> None:
        """Restore each named module the session has (ST-4, ST-5); a TTL slides (ST-16)."""
        session, user, names = rules.check_load(
            session_id, user_id, allow_not_exist, state_modules_mapping
        )

        def load(conn: sqlite3.Connection) -> dict[str, str] | None:
            now = self._clock()
            exists, _deadline = self._live_deadline(conn, user, session, now)
            if not exists:
                return None
            if self._ttl_ms is not None:
                conn.execute(
                    f"UPDATE {self._sessions} SET expires_at = ? "
                    "WHERE user_id = ? AND session_id = ?",
                    (now + self._ttl_ms, user, session),
                )
            texts: dict[str, str] = {}
            for name in names:
                row = conn.execute(
                    f"SELECT state FROM {self._modules} "
                    "WHERE user_id = ? AND session_id = ? AND module = ?",
                    (user, session, name),
                ).fetchone()
                if row is not None:
                    texts[name] = str(row[0])
            return texts

        # Only a load that may slide a deadline needs the write lock.
        texts = await (self._db.write(load) if self._ttl_ms is not None else self._db.read(load))
        if texts is None:
            if allow_not_exist:
                return
            raise rules.missing(session, user)
        rules.restore(state_modules_mapping, rules.parse_states(texts))

    async def delete_session_state(self, session_id: str, user_id: str = DEFAULT_USER_ID) -> bool:
        """Delete the session; whether it existed (ST-8)."""
        session, user = rules.check_session(session_id, user_id)

        def delete(conn: sqlite3.Connection) -> bool:
            exists, _deadline = self._live_deadline(conn, user, session, self._clock())
            conn.execute(
                f"DELETE FROM {self._sessions} WHERE user_id = ? AND session_id = ?",
                (user, session),
            )
            return exists

        return await self._db.write(delete)

    async def list_sessions(
        self,
        user_id: str = DEFAULT_USER_ID,
        *,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[str]:
        """The user's live session ids in code-point order, after ``after`` (ST-9, ST-10)."""
        user, after_id, count = rules.check_list(user_id, after, limit)
        if count == 0:
            return []

        def select(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                f"SELECT session_id FROM {self._sessions} WHERE user_id = ? "
                "AND session_id > ? AND (expires_at IS NULL OR expires_at > ?) "
                "ORDER BY session_id LIMIT ?",
                # "" sorts before every id, so it stands for "from the start".
                (user, after_id or "", self._clock(), -1 if count is None else count),
            ).fetchall()
            return [str(row[0]) for row in rows]

        return await self._db.read(select)


def open_store(ctx: StoreContext) -> AbstractAsyncContextManager[SQLiteStateSessionStore]:
    """The kit's opener: the context's database file and namespace prefix, and the TTL of the
    context option ``ttl_seconds`` (an async CM)."""
    path, prefix = context_location(ctx)
    return SQLiteStateSessionStore(
        path, prefix=prefix, ttl_seconds=ctx.options.get(rules.TTL_OPTION), clock=ctx.clock
    )
