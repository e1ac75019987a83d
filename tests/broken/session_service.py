"""Broken session services: each is a reference store with one bug that real stores have had.

:data:`BROKEN` maps each broken backend to the requirement the kit must report as failed.
``tests/test_broken_session_service.py`` runs the suite on each and checks exactly that.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from pathlib import Path
from typing import Any

from agentstores.conformance.backend import Backend, Capability, Family, Opener, StoreContext
from agentstores.reference import session_service_rules as rules
from agentstores.reference.jsonfile.session_service import JSONSessionService, _LogEntry
from agentstores.reference.redis import server
from agentstores.reference.redis.session_service import RedisSessionService
from agentstores.reference.sqlite._db import context_location
from agentstores.reference.sqlite.session_service import SQLiteSessionService
from agentstores.spec.errors import Conflict, NotFound
from agentstores.spec.session_service import (
    Event,
    EventFilter,
    GetRequest,
    ListRequest,
    MatchMode,
    ScopedDelta,
    SearchOptions,
    SearchResult,
    Session,
)
from agentstores.spec.values import JSONObject, dump_json, load_json

__all__ = ["BROKEN"]


# --- scoping bugs ----------------------------------------------------------------------------


class TempPersisted(SQLiteSessionService):
    """Stores ``temp:`` keys as session state (aster's database code never scopes)."""

    @staticmethod
    def _scoped(delta: Mapping[str, Any]) -> ScopedDelta:
        parts = SQLiteSessionService._scoped(delta)
        return ScopedDelta(parts.app, parts.user, {**parts.session, **parts.temp}, parts.temp)


class UserStateNotShared(SQLiteSessionService):
    """Keeps ``user:`` keys in the session that wrote them."""

    @staticmethod
    def _scoped(delta: Mapping[str, Any]) -> ScopedDelta:
        parts = SQLiteSessionService._scoped(delta)
        return ScopedDelta(parts.app, {}, {**parts.session, **parts.user}, parts.temp)


class AppStateLeaks(SQLiteSessionService):
    """Keeps the shared scopes under one app for every app, so ``app:`` state leaks."""

    def _shared(self, conn: sqlite3.Connection, app: str, user: str) -> JSONObject:
        return super()._shared(conn, "*", user)

    def _merge_shared(
        self,
        conn: sqlite3.Connection,
        app: str,
        user: str,
        app_delta: JSONObject,
        user_delta: JSONObject,
    ) -> None:
        super()._merge_shared(conn, "*", user, app_delta, user_delta)


# --- atomicity and concurrency bugs ---------------------------------------------------------------


class DeltaWithoutEvent(SQLiteSessionService):
    """Writes the state delta in a transaction of its own before appending the event."""

    async def append_event(self, session: Session, event: Event) -> Session:
        checked = rules.check_event(event)
        parts = self._scoped(checked.actions.state_delta)
        key = (session.app_name, session.user_id, session.id)

        def write_delta(conn: sqlite3.Connection) -> None:
            row = self._row(conn, *key)
            if row is None:
                return
            state = {**load_json(row[3]), **parts.session}
            conn.execute(
                f"UPDATE {self._sessions} SET state = ? "
                "WHERE app_name = ? AND user_id = ? AND session_id = ?",
                (dump_json(state), *key),
            )
            self._merge_shared(conn, key[0], key[1], parts.app, parts.user)

        await self.database.write(write_delta)
        return await super().append_event(session, event)


class VersionCheckInMemory(SQLiteSessionService):
    """Checks staleness against the versions this object has seen, not the stored one: right
    within one store object, wrong across two objects or processes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._seen: dict[tuple[str, str, str], int] = {}

    def _remember(self, session: Session | None) -> Session | None:
        if session is not None:
            self._seen[(session.app_name, session.user_id, session.id)] = session.version
        return session

    def _checked_row(self, conn: sqlite3.Connection, session: Session) -> Any:
        row = self._row(conn, session.app_name, session.user_id, session.id)
        if row is None:
            raise NotFound(session.id)
        known = self._seen.get((session.app_name, session.user_id, session.id))
        if known is not None and known != session.version:
            raise Conflict("stale", expected=session.version, actual=known)
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
        self._checked_row(conn, session)  # the check in memory, instead of the stored version
        sets, args = ("state = ?, ", (dump_json(state),)) if state is not None else ("", ())
        return conn.execute(
            f"UPDATE {self._sessions} SET {sets}version = version + 1, last_update_time = ?, "
            "appended = appended + ? WHERE app_name = ? AND user_id = ? AND session_id = ? "
            "RETURNING session_id, agent_id, metadata, state, created_at, last_update_time, "
            "version, appended",
            (*args, now, appended, session.app_name, session.user_id, session.id),
        ).fetchone()

    async def get(self, request: GetRequest) -> Session | None:
        return self._remember(await super().get(request))

    async def append_event(self, session: Session, event: Event) -> Session:
        result = await super().append_event(session, event)
        self._remember(result)
        return result

    async def update_state(self, session: Session, delta: Mapping[str, Any]) -> Session:
        result = await super().update_state(session, delta)
        self._remember(result)
        return result


# --- order, filter and search bugs --------------------------------------------------------------


class EndTimeInclusive(SQLiteSessionService):
    """Reads the end of a time range as ``timestamp <= end_time``: off by one."""

    async def get_events(
        self, app_name: str, user_id: str, session_id: str, filter: EventFilter | None = None
    ) -> list[Event]:
        f = rules.check_filter(filter)
        if f.end_time is not None:
            f = replace(f, end_time=f.end_time + 1)
        return await super().get_events(app_name, user_id, session_id, f)


class ListOldestFirst(SQLiteSessionService):
    """Lists sessions oldest update first."""

    async def list(self, request: ListRequest) -> list[Session]:
        req = rules.check_list(request)
        every = await super().list(replace(req, limit=None, offset=0))
        return rules.page(every[::-1], req.limit, req.offset)


class SearchIgnoresTimeRange(SQLiteSessionService):
    """Never applies the search's time range (aster's searcher)."""

    async def search(self, options: SearchOptions) -> list[SearchResult]:
        opts = rules.check_search(options)
        return await super().search(replace(opts, start_time=None, end_time=None))


class ContainsIsCaseSensitive(SQLiteSessionService):
    """Matches ``contains`` queries case-sensitively, like ``exact``."""

    async def search(self, options: SearchOptions) -> list[SearchResult]:
        opts = rules.check_search(options)
        if opts.match_mode is MatchMode.CONTAINS:
            opts = replace(opts, match_mode=MatchMode.EXACT)
        return await super().search(opts)


class EventsInAppendOrder(JSONSessionService):
    """Returns events in the order they were appended, whatever their timestamps."""

    def _all_entries(self, key: tuple[str, str, str]) -> list[_LogEntry]:
        return sorted(super()._all_entries(key), key=lambda entry: entry.seq)


# --- isolation bugs ------------------------------------------------------------------------------


class JoinedTenantKeys(RedisSessionService):
    """Builds keys by joining app, user and session with ``':'``, so ("a:b", "c") and
    ("a", "b:c") share keys."""

    def _key(self, kind: str, app: str, *parts: str) -> str:
        return self._keys.key(kind, ":".join((app, *parts)), tag=("joined",))


# --- backends ------------------------------------------------------------------------------------


def _sqlite(cls: type[SQLiteSessionService]) -> Opener:
    def opener(ctx: StoreContext) -> AbstractAsyncContextManager[Any]:
        path, prefix = context_location(ctx)
        return cls(path, prefix=prefix, clock=ctx.clock)

    return opener


def _json(cls: type[JSONSessionService]) -> Opener:
    def opener(ctx: StoreContext) -> AbstractAsyncContextManager[Any]:
        return cls(Path(ctx.root) / ctx.namespace, clock=ctx.clock)

    return opener


def _redis(cls: type[RedisSessionService]) -> Opener:
    def opener(ctx: StoreContext) -> AbstractAsyncContextManager[Any]:
        return cls(server.current_url(), prefix=ctx.namespace + ":", clock=ctx.clock)

    return opener


def _backend(name: str, opener: Opener, *, redis: bool = False) -> Backend:
    return Backend(
        name=f"broken-session-service-{name}",
        openers={Family.SESSION_SERVICE: opener},
        capabilities=frozenset({Capability.DURABLE}),
        lifespan=server.kit_lifespan if redis else None,
        description=f"session service with a bug: {name}",
    )


#: Each broken backend and the requirement ID its bug violates.
BROKEN: dict[str, tuple[Backend, str]] = {
    "temp-persisted": (_backend("temp-persisted", _sqlite(TempPersisted)), "SV-9"),
    "user-state-not-shared": (
        _backend("user-state-not-shared", _sqlite(UserStateNotShared)),
        "SV-8",
    ),
    "app-state-leaks": (_backend("app-state-leaks", _sqlite(AppStateLeaks)), "SV-8"),
    "delta-without-event": (
        _backend("delta-without-event", _sqlite(DeltaWithoutEvent)),
        "SV-14",
    ),
    "version-check-in-memory": (
        _backend("version-check-in-memory", _sqlite(VersionCheckInMemory)),
        "SV-15",
    ),
    "end-time-inclusive": (_backend("end-time-inclusive", _sqlite(EndTimeInclusive)), "SV-18"),
    "list-oldest-first": (_backend("list-oldest-first", _sqlite(ListOldestFirst)), "SV-6"),
    "joined-tenant-keys": (
        _backend("joined-tenant-keys", _redis(JoinedTenantKeys), redis=True),
        "SV-26",
    ),
    "search-ignores-time-range": (
        _backend("search-ignores-time-range", _sqlite(SearchIgnoresTimeRange)),
        "SV-19",
    ),
    "contains-is-case-sensitive": (
        _backend("contains-is-case-sensitive", _sqlite(ContainsIsCaseSensitive)),
        "SV-22",
    ),
    "events-in-append-order": (
        _backend("events-in-append-order", _json(EventsInAppendOrder)),
        "SV-16",
    ),
}
