"""The SQLite session service (spec ``session_service.md``).

Four tables under the store's prefix (``sv_`` keeps them apart from other families' tables):

* ``sv_sessions``: one row per session, keyed by (app, user, session); the session's own state
  and metadata as JSON text, the version (SV-15) and the count of events ever appended (the
  append sequence of SV-16). Indexed by (app, user, last update, id) for ``list`` (SV-6).
* ``sv_app_state`` and ``sv_user_state``: the shared scopes (SV-8), one JSON object per app and
  per (app, user).
* ``sv_events``: one row per event, keyed by (app, user, session, seq), with the event id unique
  per session (SV-13), the fields that filters and search use in columns, and the whole event as
  JSON. Indexed by (app, user, session, timestamp, seq): SV-16's order, so reading the newest
  ``n`` events is an index range read of ``n`` rows, and an append is one row insert, whatever
  the length of the session.

Every operation is one transaction. A write made from a session (``append_event``,
``update_state``) runs in a ``BEGIN IMMEDIATE`` transaction: it reads the stored version, and
its update of the session row is conditional on that version, so the check holds across store
objects and processes sharing the file (SV-15); the event insert and the state writes commit
together or not at all (SV-14). Arguments are validated and serialised before the transaction.
"""

from __future__ import annotations

import builtins
import os
import sqlite3
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any

from agentstores.conformance.backend import StoreContext
from agentstores.spec.errors import AlreadyExists, Conflict, NotFound, StorageUnavailable
from agentstores.spec.session_service import (
    CreateRequest,
    Event,
    EventFilter,
    GetRequest,
    ListRequest,
    ScopedDelta,
    SearchOptions,
    SearchResult,
    Session,
    UpdateRequest,
    check_state_delta,
    split_state_delta,
)
from agentstores.spec.values import Clock, JSONObject, dump_json, load_json, system_clock

from .. import session_service_rules as rules
from ._db import DEFAULT_BUSY_TIMEOUT, Database, Migration, Synchronous, context_location

__all__ = ["MIGRATIONS", "SQLiteSessionService", "open_store"]

#: The session-service schema, version by version (see :class:`~._db.Database`).
MIGRATIONS: tuple[Migration, ...] = (
    """
    CREATE TABLE "{prefix}sv_sessions" (
        app_name TEXT NOT NULL,
        user_id TEXT NOT NULL,
        session_id TEXT NOT NULL,
        agent_id TEXT,
        metadata TEXT NOT NULL,
        state TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        last_update_time INTEGER NOT NULL,
        version INTEGER NOT NULL,
        appended INTEGER NOT NULL,
        PRIMARY KEY (app_name, user_id, session_id)
    );
    -- list (SV-6): newest update first, then id.
    CREATE INDEX "{prefix}sv_sessions_by_update"
        ON "{prefix}sv_sessions" (app_name, user_id, last_update_time DESC, session_id);

    CREATE TABLE "{prefix}sv_app_state" (
        app_name TEXT PRIMARY KEY NOT NULL,
        state TEXT NOT NULL
    );

    CREATE TABLE "{prefix}sv_user_state" (
        app_name TEXT NOT NULL,
        user_id TEXT NOT NULL,
        state TEXT NOT NULL,
        PRIMARY KEY (app_name, user_id)
    );

    CREATE TABLE "{prefix}sv_events" (
        app_name TEXT NOT NULL,
        user_id TEXT NOT NULL,
        session_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        event_id TEXT NOT NULL,
        timestamp INTEGER NOT NULL,
        author TEXT NOT NULL,
        agent_id TEXT,
        branch TEXT,
        role TEXT,
        body TEXT NOT NULL,
        PRIMARY KEY (app_name, user_id, session_id, seq),
        UNIQUE (app_name, user_id, session_id, event_id)
    );
    -- SV-16's order within a session; serves get, get_events and search.
    CREATE INDEX "{prefix}sv_events_in_order"
        ON "{prefix}sv_events" (app_name, user_id, session_id, timestamp, seq);
    """,
)

_SESSION_COLUMNS = "session_id, agent_id, metadata, state, created_at, last_update_time, version"


def _load(text: str, what: str) -> Any:
    try:
        return load_json(text)
    except ValueError as exc:
        raise StorageUnavailable(f"corrupt {what} in the database: {exc}") from exc


def _event(body: str) -> Event:
    try:
        return rules.event_from_json(_load(body, "event"))
    except ValueError as exc:
        raise StorageUnavailable(f"corrupt event in the database: {exc}") from exc


class SQLiteSessionService:
    """A :class:`~agentstores.spec.session_service.SessionService` in an SQLite database file.

    Args:
        path: the database file (its directory must exist); several stores, families and
            processes may share it.
        prefix: the table prefix that isolates this store from others in the file (G-19).
        clock: the source of every time the store stamps (G-6).
        synchronous: ``"FULL"`` (default, durable on power loss) or ``"NORMAL"``.
        busy_timeout: seconds a write waits while another connection or process holds
            the database's write lock, then StorageUnavailable with nothing written (G-22).

    Use ``async with SQLiteSessionService(path) as store:``, or call methods directly (the
    database opens on first use) and ``await store.close()`` at the end.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        prefix: str = "",
        clock: Clock = system_clock,
        synchronous: Synchronous = "FULL",
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    ) -> None:
        self._db = Database(
            path,
            prefix=prefix,
            family="session_service",
            migrations=MIGRATIONS,
            synchronous=synchronous,
            busy_timeout=busy_timeout,
        )
        self._clock = clock
        self._sessions = self._db.table("sv_sessions")
        self._apps = self._db.table("sv_app_state")
        self._users = self._db.table("sv_user_state")
        self._events = self._db.table("sv_events")

    async def __aenter__(self) -> SQLiteSessionService:
        try:
            await self._db.open()
        except BaseException:
            await self._db.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the database connection; idempotent (G-16)."""
        await self._db.close()

    @property
    def database(self) -> Database:
        """The store's :class:`~._db.Database`: a back door to the raw rows for tests.

        Its tables are ``database.table("sv_sessions")``, ``"sv_app_state"``,
        ``"sv_user_state"`` and ``"sv_events"`` (see :data:`MIGRATIONS`).
        """
        return self._db

    # --- state helpers (run inside a transaction) ------------------------------------------------

    @staticmethod
    def _scoped(delta: Mapping[str, Any]) -> ScopedDelta:
        """A checked delta split by scope (SV-8, SV-9): the one place scoping is decided."""
        return split_state_delta(delta)

    def _shared(self, conn: sqlite3.Connection, app: str, user: str) -> JSONObject:
        """The app's and the pair's state, merged (SV-10)."""
        state: JSONObject = {}
        row = conn.execute(f"SELECT state FROM {self._apps} WHERE app_name = ?", (app,)).fetchone()
        if row is not None:
            state.update(_load(row[0], "app state"))
        row = conn.execute(
            f"SELECT state FROM {self._users} WHERE app_name = ? AND user_id = ?", (app, user)
        ).fetchone()
        if row is not None:
            state.update(_load(row[0], "user state"))
        return state

    def _merge_shared(
        self,
        conn: sqlite3.Connection,
        app: str,
        user: str,
        app_delta: JSONObject,
        user_delta: JSONObject,
    ) -> None:
        """Apply the app: and user: parts of a delta (SV-8)."""
        if app_delta:
            row = conn.execute(
                f"SELECT state FROM {self._apps} WHERE app_name = ?", (app,)
            ).fetchone()
            state = {} if row is None else _load(row[0], "app state")
            state.update(app_delta)
            conn.execute(
                f"INSERT INTO {self._apps} (app_name, state) VALUES (?, ?) "
                "ON CONFLICT (app_name) DO UPDATE SET state = excluded.state",
                (app, dump_json(state)),
            )
        if user_delta:
            row = conn.execute(
                f"SELECT state FROM {self._users} WHERE app_name = ? AND user_id = ?", (app, user)
            ).fetchone()
            state = {} if row is None else _load(row[0], "user state")
            state.update(user_delta)
            conn.execute(
                f"INSERT INTO {self._users} (app_name, user_id, state) VALUES (?, ?, ?) "
                "ON CONFLICT (app_name, user_id) DO UPDATE SET state = excluded.state",
                (app, user, dump_json(state)),
            )

    def _session(
        self,
        conn: sqlite3.Connection,
        app: str,
        user: str,
        row: Sequence[Any],
        events: tuple[Event, ...],
        temp: Mapping[str, Any] | None = None,
    ) -> Session:
        """A session from a row selected as ``_SESSION_COLUMNS`` (SV-10)."""
        session_id, agent_id, metadata, state, created_at, updated, version = row
        merged = self._shared(conn, app, user)
        merged.update(_load(state, "session state"))
        merged.update(temp or {})
        return Session(
            id=session_id,
            app_name=app,
            user_id=user,
            agent_id=agent_id,
            state=merged,
            events=events,
            last_update_time=updated,
            created_at=created_at,
            metadata=_load(metadata, "session metadata"),
            version=version,
        )

    def _row(self, conn: sqlite3.Connection, app: str, user: str, session_id: str) -> Any:
        return conn.execute(
            f"SELECT {_SESSION_COLUMNS}, appended FROM {self._sessions} "
            "WHERE app_name = ? AND user_id = ? AND session_id = ?",
            (app, user, session_id),
        ).fetchone()

    def _checked_row(self, conn: sqlite3.Connection, session: Session) -> Any:
        """The stored row of a session a write is made from, after SV-15's version check."""
        row = self._row(conn, session.app_name, session.user_id, session.id)
        if row is None:
            raise NotFound(f"no session {session.id!r} for this app and user")
        if row[6] != session.version:
            raise Conflict(
                f"session {session.id!r} changed since it was read",
                expected=session.version,
                actual=row[6],
            )
        return row

    def _bump(
        self, conn: sqlite3.Connection, session: Session, state: JSONObject, appended: int
    ) -> int:
        """Write the session's own state and next version, conditional on the read version."""
        now = self._clock()
        cursor = conn.execute(
            f"UPDATE {self._sessions} SET state = ?, version = version + 1, "
            "last_update_time = ?, appended = ? "
            "WHERE app_name = ? AND user_id = ? AND session_id = ? AND version = ?",
            (
                dump_json(state),
                now,
                appended,
                session.app_name,
                session.user_id,
                session.id,
                session.version,
            ),
        )
        if cursor.rowcount != 1:  # cannot happen inside BEGIN IMMEDIATE; never write blind
            raise Conflict("session changed during the write", expected=session.version)
        return now

    # --- sessions (SV-1 .. SV-6) -------------------------------------------------------------

    async def create(self, request: CreateRequest) -> Session:
        """Create a session and apply its initial state (SV-1, SV-2)."""
        req = rules.check_create(request)
        parts = self._scoped(req.state)
        app, user = req.app_name, req.user_id

        def write(conn: sqlite3.Connection) -> Session:
            session_id = req.session_id
            if session_id is None:
                session_id = rules.new_id()
                while self._row(conn, app, user, session_id) is not None:
                    session_id = rules.new_id()
            elif self._row(conn, app, user, session_id) is not None:
                raise AlreadyExists(f"session {session_id!r} exists for this app and user")
            now = self._clock()
            conn.execute(
                f"INSERT INTO {self._sessions} (app_name, user_id, session_id, agent_id, "
                "metadata, state, created_at, last_update_time, version, appended) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, 0)",
                (
                    app,
                    user,
                    session_id,
                    req.agent_id,
                    dump_json(req.metadata),
                    dump_json(parts.session),
                    now,
                    now,
                ),
            )
            self._merge_shared(conn, app, user, parts.app, parts.user)
            return self._session(
                conn, app, user, self._row(conn, app, user, session_id)[:7], (), parts.temp
            )

        return await self._db.write(write)

    async def get(self, request: GetRequest) -> Session | None:
        """The session with its merged state and events (SV-3, SV-10, SV-16)."""
        req = rules.check_get(request)
        app, user, session_id = req.app_name, req.user_id, req.session_id
        key = (app, user, session_id)

        def read(conn: sqlite3.Connection) -> Session | None:
            row = self._row(conn, *key)
            if row is None:
                return None
            where = "WHERE app_name = ? AND user_id = ? AND session_id = ?"
            if req.num_recent_events is None:
                bodies = conn.execute(
                    f"SELECT body FROM {self._events} {where} ORDER BY timestamp, seq", key
                ).fetchall()
            else:
                # The newest n by an index range read backwards, then back into order.
                bodies = conn.execute(
                    f"SELECT body FROM {self._events} {where} "
                    "ORDER BY timestamp DESC, seq DESC LIMIT ?",
                    (*key, req.num_recent_events),
                ).fetchall()[::-1]
            events = tuple(_event(body) for (body,) in bodies)
            return self._session(conn, app, user, row[:7], events)

        return await self._db.read(read)

    async def update(self, request: UpdateRequest) -> None:
        """Replace the session's metadata; version unchanged (SV-4)."""
        req = rules.check_update(request)

        def write(conn: sqlite3.Connection) -> None:
            cursor = conn.execute(
                f"UPDATE {self._sessions} SET metadata = ?, last_update_time = ? "
                "WHERE app_name = ? AND user_id = ? AND session_id = ?",
                (dump_json(req.metadata), self._clock(), req.app_name, req.user_id, req.session_id),
            )
            if cursor.rowcount == 0:
                raise NotFound(f"no session {req.session_id!r} for this app and user")

        await self._db.write(write)

    async def delete(self, app_name: str, user_id: str, session_id: str) -> None:
        """Delete the session, its events and its own state (SV-5)."""
        key = rules.check_key(app_name, user_id, session_id)

        def write(conn: sqlite3.Connection) -> None:
            where = "WHERE app_name = ? AND user_id = ? AND session_id = ?"
            if conn.execute(f"DELETE FROM {self._sessions} {where}", key).rowcount == 0:
                raise NotFound(f"no session {session_id!r} for this app and user")
            conn.execute(f"DELETE FROM {self._events} {where}", key)

        await self._db.write(write)

    async def list(self, request: ListRequest) -> list[Session]:
        """The pair's sessions, newest update first, paged, without events (SV-6)."""
        req = rules.check_list(request)
        limit = -1 if req.limit is None else req.limit  # SQLite: a negative LIMIT is none

        def read(conn: sqlite3.Connection) -> list[Session]:
            rows = conn.execute(
                f"SELECT {_SESSION_COLUMNS} FROM {self._sessions} "
                "WHERE app_name = ? AND user_id = ? "
                "ORDER BY last_update_time DESC, session_id LIMIT ? OFFSET ?",
                (req.app_name, req.user_id, limit, req.offset),
            ).fetchall()
            return [self._session(conn, req.app_name, req.user_id, row, ()) for row in rows]

        return await self._db.read(read)

    # --- events and state (SV-11 .. SV-18) ------------------------------------------------------

    async def append_event(self, session: Session, event: Event) -> Session:
        """Append the event and apply its delta atomically, if the session is fresh (SV-13)."""
        handle = rules.check_handle(session)
        checked = rules.check_event(event)
        event_id = checked.id if checked.id is not None else rules.new_id()
        parts = self._scoped(checked.actions.state_delta)
        app, user = handle.app_name, handle.user_id

        def write(conn: sqlite3.Connection) -> Session:
            row = self._checked_row(conn, handle)
            if conn.execute(
                f"SELECT 1 FROM {self._events} WHERE app_name = ? AND user_id = ? "
                "AND session_id = ? AND event_id = ?",
                (app, user, handle.id, event_id),
            ).fetchone():
                raise AlreadyExists(f"event {event_id!r} exists in session {handle.id!r}")
            stored = rules.stored_event(checked, event_id=event_id, now=self._clock())
            assert stored.timestamp is not None
            seq = row[7]
            state = _load(row[3], "session state")
            state.update(parts.session)
            conn.execute(
                f"INSERT INTO {self._events} (app_name, user_id, session_id, seq, event_id, "
                "timestamp, author, agent_id, branch, role, body) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    app,
                    user,
                    handle.id,
                    seq,
                    event_id,
                    stored.timestamp,
                    stored.author,
                    stored.agent_id,
                    stored.branch,
                    None if stored.content is None else stored.content.role,
                    dump_json(rules.event_to_json(stored)),
                ),
            )
            self._bump(conn, handle, state, seq + 1)
            self._merge_shared(conn, app, user, parts.app, parts.user)
            return self._session(
                conn,
                app,
                user,
                self._row(conn, app, user, handle.id)[:7],
                (*handle.events, stored),
                parts.temp,
            )

        return await self._db.write(write)

    async def update_state(self, session: Session, delta: Mapping[str, Any]) -> Session:
        """Apply a state delta without an event, if the session is fresh (SV-11, SV-15)."""
        handle = rules.check_handle(session)
        parts = self._scoped(rules.copy_json(check_state_delta(delta)))
        app, user = handle.app_name, handle.user_id

        def write(conn: sqlite3.Connection) -> Session:
            row = self._checked_row(conn, handle)
            state = _load(row[3], "session state")
            state.update(parts.session)
            self._bump(conn, handle, state, row[7])
            self._merge_shared(conn, app, user, parts.app, parts.user)
            return self._session(
                conn,
                app,
                user,
                self._row(conn, app, user, handle.id)[:7],
                tuple(handle.events),
                parts.temp,
            )

        return await self._db.write(write)

    async def get_events(
        self, app_name: str, user_id: str, session_id: str, filter: EventFilter | None = None
    ) -> builtins.list[Event]:
        """The session's events that the filter selects, in order, paged (SV-16 .. SV-18)."""
        key = rules.check_key(app_name, user_id, session_id)
        f = rules.check_filter(filter)
        clauses = ["app_name = ?", "user_id = ?", "session_id = ?"]
        args: list[Any] = list(key)
        for column, value in (("author", f.author), ("agent_id", f.agent_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        if f.branch is not None:
            # SV-18: the branch or a descendant; substr/length count characters, not bytes.
            clauses.append("(branch = ? OR substr(branch, 1, length(?) + 1) = ? || '.')")
            args += [f.branch, f.branch, f.branch]
        if f.start_time is not None:
            clauses.append("timestamp >= ?")
            args.append(f.start_time)
        if f.end_time is not None:
            clauses.append("timestamp < ?")
            args.append(f.end_time)
        args += [-1 if f.limit is None else f.limit, f.offset]
        query = (
            f"SELECT body FROM {self._events} WHERE {' AND '.join(clauses)} "
            "ORDER BY timestamp, seq LIMIT ? OFFSET ?"
        )

        def read(conn: sqlite3.Connection) -> list[str] | None:
            if self._row(conn, *key) is None:
                return None
            return [body for (body,) in conn.execute(query, args).fetchall()]

        bodies = await self._db.read(read)
        if bodies is None:
            raise NotFound(f"no session {session_id!r} for this app and user")
        return [_event(body) for body in bodies]

    # --- search (SV-19 .. SV-25) ------------------------------------------------------------

    async def search(self, options: SearchOptions) -> builtins.list[SearchResult]:
        """Matching events of the pair's sessions, most relevant first (SV-19 .. SV-24)."""
        opts = rules.check_search(options)
        # Positions count every event of the session (SV-21), so they are numbered before the
        # time and role filters apply; the text is matched in Python with the spec's rules.
        clauses = ["s.app_name = ?", "s.user_id = ?"]
        args: list[Any] = [opts.app_name, opts.user_id]
        if opts.session_id is not None:
            clauses.append("s.session_id = ?")
            args.append(opts.session_id)
        query = (
            "SELECT e.session_id, s.agent_id, e.timestamp, e.role, e.body, "
            "ROW_NUMBER() OVER (PARTITION BY e.session_id ORDER BY e.timestamp, e.seq) - 1 "
            f"FROM {self._sessions} AS s JOIN {self._events} AS e "
            "ON e.app_name = s.app_name AND e.user_id = s.user_id AND e.session_id = s.session_id "
            f"WHERE {' AND '.join(clauses)}"
        )

        def read(conn: sqlite3.Connection) -> list[Any]:
            return conn.execute(query, args).fetchall()

        hits = []
        for session_id, agent_id, timestamp, role, body, index in await self._db.read(read):
            if role is None or not rules.session_selected(opts, session_id, agent_id):
                continue
            if not rules.in_range(timestamp, opts.start_time, opts.end_time):
                continue
            hit = rules.search_hit(
                opts,
                session_id=session_id,
                agent_id=agent_id,
                message_index=index,
                event=_event(body),
            )
            if hit is not None:
                hits.append(hit)
        return rules.page_results(hits, opts)


def open_store(ctx: StoreContext) -> AbstractAsyncContextManager[SQLiteSessionService]:
    """The kit's opener: the context's database file and namespace prefix (an async CM)."""
    path, prefix = context_location(ctx)
    return SQLiteSessionService(path, prefix=prefix, clock=ctx.clock)
