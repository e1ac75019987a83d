"""The SQLite session service (spec ``session_service.md``).

Four tables under the store's prefix (``sv_`` keeps them apart from other families' tables):

* ``sv_sessions``: one row per session, keyed by (app, user, session); the session's own state
  and metadata as JSON text, the version (SV-15) and the count of events ever appended.
  Indexed by (app, user, last update, id) for ``list`` (SV-6).
* ``sv_app_state`` and ``sv_user_state``: the shared scopes (SV-8), one JSON object per app and
  per (app, user).
* ``sv_events``: one row per event, with a row id, unique on (app, user, session, timestamp,
  seq): SV-16's order, so reading the newest ``n`` events is an index range read of ``n``
  rows, and an append is one row insert, whatever the length of the session. ``seq`` is the
  session's version after the append (it grows with every append; rows of schema version 1
  have the count of appends before them, which is smaller). The fields that filters and search
  use are columns; the whole event is JSON in ``body``, in the compact form of
  :mod:`.._events`.

Event ids (SV-12, SV-13): an event the caller gives no id gets ``hex16(timestamp) +
hex16(seq)``, unique in the session because (timestamp, seq) is, and not indexed (``indexed =
0``): the order key already finds it. The other ids (the caller's, version 1's, and a random
one in the rare case that the derived id was given to an earlier event) are in a partial
unique index (``indexed = 1``). A new id is checked against the other kind by one lookup: an
id of the derived form against the derived rows, a derived id against the index. So an append
without an id writes one index fewer, and the common case writes the session row, its entry in
the listing index and two entries for the event.

Every operation is one transaction. A write made from a session (``append_event``,
``update_state``) runs in a ``BEGIN IMMEDIATE`` transaction, and its update of the session row
is conditional on the version the caller read, so the check holds across store objects and
processes sharing the file (SV-15); the event insert and the state writes commit together or
not at all (SV-14). Arguments are validated and serialised before the transaction.

Cost of an append: the event is checked and encoded once, before the transaction
(:mod:`.._events`); the transaction is BEGIN IMMEDIATE, one UPDATE of the session row that
checks the version and returns the row with the shared state for the returned session (SV-10;
the row is read first only when the event changes the session's own state, the shared state
again only when it changes the app's or the user's), one INSERT whose guard makes the id
lookup (above), and COMMIT; the returned event is decoded from the stored text while the
worker commits. A read of the newest ``n`` events is two statements in one read transaction:
the session row with the shared state, then its newest ``n`` events (cheaper than one join,
which repeats the session's columns on every event's row); they are decoded on the loop's
side.
"""

from __future__ import annotations

import builtins
import copy
import enum
import os
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
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

from .. import _events
from .. import session_service_rules as rules
from .._records import assemble
from ._db import DEFAULT_BUSY_TIMEOUT, Migration, Synchronous, context_location
from ._store import SQLiteStore

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
    # Version 2: an append writes two indexes less (see the module docstring). The events move
    # to a table keyed by a plain row id, with SV-16's order as its unique key, and only the
    # ids that are not derived from it are indexed. Version 1's rows keep their seq (the count
    # of appends before them), below every version-2 seq (the version after the append).
    """
    CREATE TABLE "{prefix}sv_events_v2" (
        id INTEGER PRIMARY KEY,
        app_name TEXT NOT NULL,
        user_id TEXT NOT NULL,
        session_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        event_id TEXT NOT NULL,
        indexed INTEGER NOT NULL,
        timestamp INTEGER NOT NULL,
        author TEXT NOT NULL,
        agent_id TEXT,
        branch TEXT,
        role TEXT,
        body TEXT NOT NULL,
        -- SV-16's order within a session; serves get, get_events and search.
        UNIQUE (app_name, user_id, session_id, timestamp, seq)
    );
    INSERT INTO "{prefix}sv_events_v2" (app_name, user_id, session_id, seq, event_id,
            indexed, timestamp, author, agent_id, branch, role, body)
        SELECT app_name, user_id, session_id, seq, event_id, 1, timestamp, author, agent_id,
            branch, role, body
        FROM "{prefix}sv_events" ORDER BY app_name, user_id, session_id, seq;
    DROP TABLE "{prefix}sv_events";
    ALTER TABLE "{prefix}sv_events_v2" RENAME TO "{prefix}sv_events";
    -- SV-13: the ids that are not derived from (timestamp, seq) are unique per session.
    CREATE UNIQUE INDEX "{prefix}sv_events_indexed_ids"
        ON "{prefix}sv_events" (app_name, user_id, session_id, event_id) WHERE indexed;
    """,
)

_SESSION_COLUMNS = "session_id, agent_id, metadata, state, created_at, last_update_time, version"

#: The scoped parts of an empty delta (never changed: every use only reads them).
_NO_DELTA = ScopedDelta({}, {}, {}, {})


class _IdTaken(Exception):
    """The id the store chose for an event is taken (the append is retried with another)."""


class _Origin(enum.Enum):
    """Who chose an event's id: the caller, the store by derivation, the store at random."""

    GIVEN = "given"
    DERIVED = "derived"
    RANDOM = "random"


def _derived_id(timestamp: int, version: int) -> str:
    """The id the store gives an event without one: its time and the session's version after
    the append, in hex (32 digits), unique in the session as (timestamp, seq) is."""
    return f"{timestamp:016x}{version:016x}"


def _derived_key(event_id: str) -> tuple[int, int] | None:
    """(timestamp, seq) if ``event_id`` has the form of a derived id, else None."""
    if len(event_id) < 32 or event_id.strip(_HEX):
        return None
    timestamp, version = int(event_id[:16], 16), int(event_id[16:], 16)
    if timestamp > _MAX_INTEGER or version > _MAX_INTEGER:  # no stored row has these
        return None
    return (timestamp, version) if _derived_id(timestamp, version) == event_id else None


_HEX = "0123456789abcdef"
#: SQLite's largest integer: no stored timestamp or seq is larger.
_MAX_INTEGER = 2**63 - 1


def _load(text: str, what: str) -> Any:
    if text == "{}":  # most states and metadata: not worth the parser
        return {}
    try:
        return load_json(text)
    except ValueError as exc:
        raise StorageUnavailable(f"corrupt {what} in the database: {exc}") from exc


def _event(body: str) -> Event:
    """An event read back: the text this store wrote, decoded (:mod:`.._events`)."""
    return _events.decode_stored(body)


class SQLiteSessionService(SQLiteStore):
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

    Its tables, reached through :attr:`database`: ``database.table("sv_sessions")``,
    ``"sv_app_state"``, ``"sv_user_state"`` and ``"sv_events"`` (see :data:`MIGRATIONS`).
    """

    _family = "session_service"
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
        self._sessions = self._db.table("sv_sessions")
        self._apps = self._db.table("sv_app_state")
        self._users = self._db.table("sv_user_state")
        self._events = self._db.table("sv_events")
        # The statements of the hot paths, built once (sqlite3 caches them by their text).
        key = "WHERE app_name = ? AND user_id = ? AND session_id = ?"
        self._select_row = f"SELECT {_SESSION_COLUMNS}, appended FROM {self._sessions} {key}"
        self._select_shared = (
            f"SELECT (SELECT state FROM {self._apps} WHERE app_name = ?), "
            f"(SELECT state FROM {self._users} WHERE app_name = ? AND user_id = ?)"
        )
        # The bump returns the shared state too (SV-10), which it does not change: a write
        # without an app: or user: delta needs no statement of its own to read it.
        bump = (
            "version = version + 1, last_update_time = ?, appended = appended + ? "
            f"{key} AND version = ? RETURNING {_SESSION_COLUMNS}, appended, "
            f"(SELECT state FROM {self._apps} WHERE app_name = ?), "
            f"(SELECT state FROM {self._users} WHERE app_name = ? AND user_id = ?)"
        )
        # SV-3: the session's row with the shared state (SV-10), then its events in SV-16's
        # order (all, or the newest n by an index range read backwards).
        self._select_row_and_shared = (
            f"SELECT {_SESSION_COLUMNS}, appended, "
            f"(SELECT state FROM {self._apps} WHERE app_name = ?), "
            f"(SELECT state FROM {self._users} WHERE app_name = ? AND user_id = ?) "
            f"FROM {self._sessions} {key}"
        )
        self._select_events = f"SELECT body FROM {self._events} {key} ORDER BY timestamp, seq"
        # The newest n events: SV-16's order backwards, along the order index (no sort). Read
        # after _select_row_and_shared in one transaction: two lean statements cost less than
        # one join that repeats the session's columns on every event's row.
        self._select_newest = (
            f"SELECT body FROM {self._events} {key} ORDER BY timestamp DESC, seq DESC LIMIT ?"
        )
        self._bump_version = f"UPDATE {self._sessions} SET {bump}"
        self._bump_version_and_state = f"UPDATE {self._sessions} SET state = ?, {bump}"
        # SV-13's id checks ride in the INSERT (see _append_writer): it inserts nothing if the
        # id is taken by an event of the other kind (the guard) or of its own kind (a conflict
        # on the unique order key or the index of ids), and the lookups below tell which only
        # then. Parameters: ?1 to ?12 the columns, ?13 and ?14 the (timestamp, seq) of a given id
        # of the derived form.
        insert = (
            f"INSERT INTO {self._events} (app_name, user_id, session_id, seq, event_id, "
            "indexed, timestamp, author, agent_id, branch, role, body) "
            "SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12 WHERE {guard} "
            "ON CONFLICT DO NOTHING"
        )
        in_session = "app_name = ?1 AND user_id = ?2 AND session_id = ?3"
        self._insert_derived_event = insert.format(
            guard=f"NOT EXISTS (SELECT 1 FROM {self._events} "
            f"WHERE {in_session} AND event_id = ?5 AND indexed)"
        )
        self._insert_given_event = insert.format(guard="1")
        self._insert_given_derived_form_event = insert.format(
            guard=f"NOT EXISTS (SELECT 1 FROM {self._events} "
            f"WHERE {in_session} AND timestamp = ?13 AND seq = ?14 AND NOT indexed)"
        )
        self._select_indexed_id = f"SELECT 1 FROM {self._events} {key} AND event_id = ? AND indexed"

    # --- state helpers (run inside a transaction) ------------------------------------------------

    @staticmethod
    def _scoped(delta: Mapping[str, Any]) -> ScopedDelta:
        """A checked delta split by scope (SV-8, SV-9): the one place scoping is decided."""
        return split_state_delta(delta)

    def _shared(self, conn: sqlite3.Connection, app: str, user: str) -> JSONObject:
        """The app's and the pair's state, merged (SV-10): one statement."""
        return self._merged(*conn.execute(self._select_shared, (app, app, user)).fetchone())

    @staticmethod
    def _merged(app_state: str | None, user_state: str | None) -> JSONObject:
        """The app's and the pair's state as stored (or None), merged (SV-10)."""
        state: JSONObject = {}
        if app_state is not None:
            state.update(_load(app_state, "app state"))
        if user_state is not None:
            state.update(_load(user_state, "user state"))
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

    @staticmethod
    def _session(
        app: str,
        user: str,
        row: Sequence[Any],
        shared: JSONObject,
        events: tuple[Event, ...],
        temp: Mapping[str, Any] | None = None,
    ) -> Session:
        """A session from a row that starts as ``_SESSION_COLUMNS`` and the shared state
        (:meth:`_shared`, not reused: the session gets it), merged as SV-10 says."""
        session_id, agent_id, metadata, state, created_at, updated, version = row[:7]
        shared.update(_load(state, "session state"))
        if temp:
            shared.update(temp)
        return assemble(
            Session,
            {
                "id": session_id,
                "app_name": app,
                "user_id": user,
                "agent_id": agent_id,
                "state": shared,
                "events": events,
                "last_update_time": updated,
                "created_at": created_at,
                "metadata": _load(metadata, "session metadata"),
                "version": version,
            },
        )

    def _row(self, conn: sqlite3.Connection, app: str, user: str, session_id: str) -> Any:
        return conn.execute(self._select_row, (app, user, session_id)).fetchone()

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
        self,
        conn: sqlite3.Connection,
        session: Session,
        now: int,
        *,
        state: JSONObject | None,
        appended: int,
    ) -> Any:
        """Count the write in the session row, conditional on the version the caller read
        (SV-15): next version, ``last_update_time = now``, ``appended`` more events, and the
        session's own ``state`` if given. Returns the row as :meth:`_row` reads it, then the
        app's and the pair's state as stored (or None), as they are before the write's own
        app: and user: parts apply.

        One statement, which checks the version itself: a write without a delta for the
        session's own state never reads the row first.
        """
        app, user = session.app_name, session.user_id
        args = (now, appended, app, user, session.id, session.version, app, app, user)
        if state is None:
            rows = conn.execute(self._bump_version, args).fetchall()
        else:
            rows = conn.execute(self._bump_version_and_state, (dump_json(state), *args)).fetchall()
        if not rows:
            self._checked_row(conn, session)  # raises NotFound or Conflict
            # Unreachable: the row exists at the version read, and the write lock is held.
            raise Conflict("session changed during the write", expected=session.version)
        return rows[0]

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
            row = self._row(conn, app, user, session_id)
            return self._session(app, user, row, self._shared(conn, app, user), (), parts.temp)

        return await self._db.write(write)

    async def get(self, request: GetRequest) -> Session | None:
        """The session with its merged state and events (SV-3, SV-10, SV-16).

        One snapshot: the session row with the shared state, then its events (all, or the
        newest n read backwards along the order index). The events are decoded on the loop's
        side.
        """
        req = rules.check_get(request)
        app, user, session_id = req.app_name, req.user_id, req.session_id
        key = (app, user, session_id)
        newest = req.num_recent_events
        if newest == 0:  # one statement: its own snapshot, no BEGIN and COMMIT
            row = await self._db.query(
                lambda conn: conn.execute(
                    self._select_row_and_shared, (app, app, user, *key)
                ).fetchone()
            )
            if row is None:
                return None
            return self._session(app, user, row, self._merged(row[8], row[9]), ())

        def read(conn: sqlite3.Connection) -> tuple[Any, list[Any]] | None:
            row = conn.execute(self._select_row_and_shared, (app, app, user, *key)).fetchone()
            if row is None:
                return None
            if newest is None:
                return row, conn.execute(self._select_events, key).fetchall()
            return row, conn.execute(self._select_newest, (*key, newest)).fetchall()[::-1]

        found = await self._db.read(read)
        if found is None:
            return None
        row, rows = found
        events = _events.decode_stored_all([body for (body,) in rows])
        return self._session(app, user, row, self._merged(row[8], row[9]), events)

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

        def read(conn: sqlite3.Connection) -> tuple[list[Any], JSONObject]:
            rows = conn.execute(
                f"SELECT {_SESSION_COLUMNS} FROM {self._sessions} "
                "WHERE app_name = ? AND user_id = ? "
                "ORDER BY last_update_time DESC, session_id LIMIT ? OFFSET ?",
                (req.app_name, req.user_id, limit, req.offset),
            ).fetchall()
            return rows, self._shared(conn, req.app_name, req.user_id)

        rows, shared = await self._db.read(read)
        # The shared state is read once for the page; each session gets its own copy.
        return [
            self._session(req.app_name, req.user_id, row, copy.deepcopy(shared), ()) for row in rows
        ]

    # --- events and state (SV-11 .. SV-18) ------------------------------------------------------

    async def append_event(self, session: Session, event: Event) -> Session:
        """Append the event and apply its delta atomically, if the session is fresh (SV-13).

        The event is checked and encoded before the first await (G-7, :mod:`.._events`); the
        transaction is one UPDATE of the session row, conditional on the caller's version and
        returning the new row with the shared state, and one INSERT of the event guarded by
        the lookup for a duplicate id (see :meth:`_append_writer`).
        """
        handle = rules.check_handle(session)
        checked = _events.checked_event(event)
        delta = checked.actions.state_delta
        # Most events change no state; the others' delta is copied (G-7) and scoped.
        parts = self._scoped(rules.copy_json(delta)) if delta else _NO_DELTA
        now = self._clock()
        timestamp = now if checked.timestamp is None else checked.timestamp
        # SV-16's order: by time, then by the session's version after the append, which grows
        # with every append. A missing id is derived from the two (see the module docstring).
        version = handle.version + 1
        if checked.id is not None:
            event_id, origin = checked.id, _Origin.GIVEN
        else:
            event_id, origin = _derived_id(timestamp, version), _Origin.DERIVED
        body = _events.encode_stored(checked, event_id=event_id, now=now)
        role = None if checked.content is None else checked.content.role
        while True:
            columns = (timestamp, checked.author, checked.agent_id, checked.branch, role, body)
            written = self._db.start_write(
                self._append_writer(handle, parts, now, event_id, origin, columns)
            )
            try:
                # While the worker commits: the returned event, which shares nothing with the
                # caller's (G-7).
                stored = _events.decode_stored(body)
            finally:
                try:
                    row, shared = await written
                except _IdTaken:
                    row = None
            if row is not None:
                break
            # The id the store chose is taken (practically never): a random one, encoded from
            # the stored copy, not from the caller's event (which may have changed meanwhile).
            event_id, origin = _events.new_event_id(), _Origin.RANDOM
            body = _events.encode_stored(stored, event_id=event_id, now=now)
        return self._session(
            handle.app_name, handle.user_id, row, shared, (*handle.events, stored), parts.temp
        )

    def _append_writer(
        self,
        handle: Session,
        parts: ScopedDelta,
        now: int,
        event_id: str,
        origin: _Origin,
        columns: tuple[int, str, str | None, str | None, str | None, str],
    ) -> Callable[[sqlite3.Connection], tuple[Any, JSONObject]]:
        """The transaction of :meth:`append_event` (``columns``: timestamp, author, agent id,
        branch, role and body of the event)."""
        app, user = handle.app_name, handle.user_id
        key = (app, user, handle.id)
        derived = origin is _Origin.DERIVED
        guard_args: tuple[int, ...] = ()
        if derived:
            insert = self._insert_derived_event
        elif (parsed := _derived_key(event_id)) is not None:
            insert, guard_args = self._insert_given_derived_form_event, parsed
        else:
            insert = self._insert_given_event

        def taken() -> Exception:
            if origin is _Origin.GIVEN:
                return AlreadyExists(f"event {event_id!r} exists in session {handle.id!r}")
            return _IdTaken()

        def write(conn: sqlite3.Connection) -> tuple[Any, JSONObject]:
            state = None
            if parts.session:  # read, merge and write the session's own state
                state = _load(self._checked_row(conn, handle)[3], "session state")
                state.update(parts.session)
            row = self._bump(conn, handle, now, state=state, appended=1)
            # SV-13, the id is new in the session: an id in the unique index is unique among
            # those (a conflict otherwise); a derived id is unique among derived ones (one per
            # version); the INSERT's guard compares each kind with the other.
            if not conn.execute(
                insert, (*key, row[6], event_id, int(not derived), *columns, *guard_args)
            ).rowcount:
                lookup = self._select_indexed_id
                if not derived or conn.execute(lookup, (*key, event_id)).fetchone():
                    raise taken()
                # (timestamp, version) is taken: the version check failed.
                raise Conflict("session changed during the write", expected=handle.version)
            if parts.app or parts.user:
                self._merge_shared(conn, app, user, parts.app, parts.user)
                return row, self._shared(conn, app, user)
            return row, self._merged(row[8], row[9])

        return write

    async def update_state(self, session: Session, delta: Mapping[str, Any]) -> Session:
        """Apply a state delta without an event, if the session is fresh (SV-11, SV-15)."""
        handle = rules.check_handle(session)
        parts = self._scoped(rules.copy_json(check_state_delta(delta)))
        app, user = handle.app_name, handle.user_id

        def write(conn: sqlite3.Connection) -> Session:
            state = None
            if parts.session:
                state = _load(self._checked_row(conn, handle)[3], "session state")
                state.update(parts.session)
            row = self._bump(conn, handle, self._clock(), state=state, appended=0)
            if parts.app or parts.user:
                self._merge_shared(conn, app, user, parts.app, parts.user)
                shared = self._shared(conn, app, user)
            else:
                shared = self._merged(row[8], row[9])
            return self._session(app, user, row, shared, tuple(handle.events), parts.temp)

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
        return list(_events.decode_stored_all(bodies))

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
