"""The JSON-file session service (spec ``session_service.md``).

One directory per store (:class:`~._files.StoreDirectory`), laid out as::

    sv_sessions/<name>.json     one session: ids, agent, metadata, own state, times, version,
                                events appended so far, the highest event timestamp so far
    sv_events/<name>.jsonl      the session's events, append-only: {"seq", "max_ts", "event"}
    sv_event_ids/<name>.json    one marker per (session, event id): duplicate ids (SV-13)
    sv_pairs/<name>.json        the session ids of one (app, user) pair, for list (SV-6)
    sv_apps/<name>.json         an app's ``app:`` state (SV-8)
    sv_users/<name>.json        a pair's ``user:`` state (SV-8)

``<name>`` is :func:`~._files.name_for` of a fixed kind and the ids, so any ids are stored in
isolation and never name a path outside the directory (G-2, SV-26); every file keeps its ids
inside and they are checked on reading.

Cost: an append writes one log line, the session file, one marker and (when the delta has
shared keys) the app or user file, all constant in the session's length. Events are read in
SV-16's order; the newest ``n`` are read from the end of the log backwards, and the reading
stops as soon as no earlier line can be among them: every line carries ``max_ts``, the highest
timestamp of the lines up to it, and a line whose ``max_ts`` is not above the ``n``-th newest
timestamp found so far ends the search (earlier lines are older by time, or by append order on
a tie). So a session whose events arrive in time order costs ``n`` lines, whatever its length.

Atomicity and concurrency: every operation, reads included, holds the directory lock
(``flock``, so across store objects and processes); the changes of one write are one
:class:`~._files.Transaction`, visible together and rolled forward after a crash. The version
check of SV-15 reads the session file under that lock, so it holds across processes.
"""

from __future__ import annotations

import builtins
import heapq
import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from agentstores.conformance.backend import StoreContext
from agentstores.spec.errors import AlreadyExists, Conflict, NotFound, StorageUnavailable
from agentstores.spec.session_service import (
    CreateRequest,
    Event,
    EventFilter,
    GetRequest,
    ListRequest,
    SearchOptions,
    SearchResult,
    Session,
    UpdateRequest,
    check_state_delta,
    split_state_delta,
)
from agentstores.spec.values import Clock, JSONObject, system_clock

from .. import session_service_rules as rules
from ._files import (
    DEFAULT_LOCK_TIMEOUT,
    StoreDirectory,
    Transaction,
    decode_json,
    encode_json,
    name_for,
    read_file,
)

__all__ = ["JSONSessionService", "open_store"]

_SESSIONS = "sv_sessions"
_EVENTS = "sv_events"
_EVENT_IDS = "sv_event_ids"
_PAIRS = "sv_pairs"
_APPS = "sv_apps"
_USERS = "sv_users"
_CHUNK = 1 << 16

Key = tuple[str, str, str]


def _lines_backwards(file: BinaryIO) -> Iterator[bytes]:
    """The complete lines of a file, last first; bytes after the last newline (a torn
    append) are skipped."""
    position = os.fstat(file.fileno()).st_size
    carry = b""
    past_tail = False
    while position > 0:
        start = max(0, position - _CHUNK)
        file.seek(start)
        pieces = (file.read(position - start) + carry).split(b"\n")
        position = start
        if not past_tail:
            if len(pieces) == 1:  # no newline yet: all of it belongs to the torn tail
                carry = b""
                continue
            pieces.pop()  # the (empty or torn) piece after the last newline
            past_tail = True
        carry = pieces[0]
        yield from reversed(pieces[1:])
    if carry:
        yield carry


class _LogEntry:
    """One line of an events log: the append sequence, the running maximum time, the event."""

    __slots__ = ("event", "max_ts", "seq", "timestamp")

    def __init__(self, record: Any) -> None:
        if not isinstance(record, dict) or not isinstance(record.get("seq"), int):
            raise StorageUnavailable("corrupt events log line")
        self.seq: int = record["seq"]
        self.max_ts: int = record["max_ts"]
        try:
            self.event = rules.event_from_json(record["event"])
        except (ValueError, KeyError) as exc:
            raise StorageUnavailable(f"corrupt event in the log: {exc}") from exc
        assert self.event.timestamp is not None
        self.timestamp: int = self.event.timestamp

    @property
    def order(self) -> tuple[int, int]:
        """SV-16's sort key."""
        return (self.timestamp, self.seq)


class JSONSessionService:
    """A :class:`~agentstores.spec.session_service.SessionService` in a directory of JSON files.

    Args:
        directory: the store's directory (created on first use). Stores on distinct
            directories are independent; several store objects and processes may share one.
        clock: the source of every time the store stamps (G-6).
        fsync: fsync every write (default); False is faster and still atomic, but a power
            cut may lose the latest writes.
        lock_timeout: seconds an operation waits while another store object or process holds
            the directory's lock, then StorageUnavailable with nothing done (G-22); None
            waits as long as it takes.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        clock: Clock = system_clock,
        fsync: bool = True,
        lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT,
    ) -> None:
        self._dir = StoreDirectory(
            Path(directory),
            subdirectories=(_SESSIONS, _EVENTS, _EVENT_IDS, _PAIRS, _APPS, _USERS),
            sync=fsync,
            lock_timeout=lock_timeout,
        )
        self._clock = clock

    @property
    def directory(self) -> Path:
        """The store's directory (its layout is in this module's docstring)."""
        return self._dir.path

    async def __aenter__(self) -> JSONSessionService:
        await self._dir.run(lambda: None)  # create and recover the directory now
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Wait for the running operation and refuse further ones; idempotent (G-16)."""
        await self._dir.close()

    # --- files (used holding the lock) ---------------------------------------------------------

    def _path(self, kind: str, *ids: str, suffix: str = ".json") -> Path:
        return self._dir.path / kind / name_for(kind, *ids, suffix=suffix)

    def _read(self, path: Path, ids: Mapping[str, str]) -> JSONObject | None:
        """A record file, checked to belong to ``ids`` (else the file is corrupt)."""
        data = read_file(path)
        if data is None:
            return None
        record = decode_json(data, what=path.name)
        if not isinstance(record, dict) or any(record.get(k) != v for k, v in ids.items()):
            raise StorageUnavailable(f"{path.name} does not hold the record it is named for")
        return record

    def _session_record(self, key: Key) -> JSONObject | None:
        app, user, session_id = key
        ids = {"app_name": app, "user_id": user, "id": session_id}
        return self._read(self._path(_SESSIONS, *key), ids)

    def _shared_state(self, app: str, user: str) -> tuple[JSONObject, JSONObject]:
        app_record = self._read(self._path(_APPS, app), {"app_name": app})
        user_record = self._read(self._path(_USERS, app, user), {"app_name": app, "user_id": user})
        return (
            {} if app_record is None else app_record["state"],
            {} if user_record is None else user_record["state"],
        )

    def _session_ids(self, app: str, user: str) -> list[str]:
        record = self._read(self._path(_PAIRS, app, user), {"app_name": app, "user_id": user})
        return [] if record is None else list(record["sessions"])

    def _log_path(self, key: Key) -> Path:
        return self._path(_EVENTS, *key, suffix=".jsonl")

    def _all_entries(self, key: Key) -> list[_LogEntry]:
        """Every event of the session, in SV-16's order."""
        read = self._dir.log(f"{_EVENTS}/{self._log_path(key).name}").read()
        return sorted((_LogEntry(r) for r in read.records), key=lambda e: e.order)

    def _newest_entries(self, key: Key, n: int) -> list[_LogEntry]:
        """The newest ``n`` events in order, reading the log backwards only as far as needed."""
        if n == 0:
            return []
        best: list[tuple[tuple[int, int], int, _LogEntry]] = []  # min-heap of the newest n
        try:
            file = open(self._log_path(key), "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            return []
        with file:
            for line in _lines_backwards(file):
                if not line.strip():
                    continue
                record = decode_json(line, what="events log line")
                if not isinstance(record, dict):
                    raise StorageUnavailable("corrupt events log line")
                if "format" in record:
                    break  # the log's header: its first line
                if len(best) == n and record.get("max_ts", 0) <= best[0][0][0]:
                    break  # this line and all before it are older than the n-th newest
                entry = _LogEntry(record)
                item = (entry.order, entry.seq, entry)
                if len(best) < n:
                    heapq.heappush(best, item)
                elif item[0] > best[0][0]:
                    heapq.heapreplace(best, item)
        return [item[2] for item in sorted(best, key=lambda item: item[0])]

    def _view(
        self,
        key: Key,
        record: JSONObject,
        events: tuple[Event, ...],
        temp: Mapping[str, Any] | None = None,
        shared: tuple[JSONObject, JSONObject] | None = None,
    ) -> Session:
        """The session as returned: merged state (SV-10), plus this call's temp: keys."""
        app_state, user_state = shared if shared is not None else self._shared_state(*key[:2])
        state = {**app_state, **user_state, **record["state"], **(temp or {})}
        return Session(
            id=key[2],
            app_name=key[0],
            user_id=key[1],
            agent_id=record["agent_id"],
            state=state,
            events=events,
            last_update_time=record["last_update_time"],
            created_at=record["created_at"],
            metadata=record["metadata"],
            version=record["version"],
        )

    def _write_shared(
        self, tx: Transaction, app: str, user: str, app_delta: JSONObject, user_delta: JSONObject
    ) -> None:
        """Add the app: and user: parts of a delta to ``tx`` (SV-8)."""
        app_state, user_state = self._shared_state(app, user)
        if app_delta:
            record = {"app_name": app, "state": {**app_state, **app_delta}}
            tx.replace(self._path(_APPS, app), encode_json(record))
        if user_delta:
            record = {"app_name": app, "user_id": user, "state": {**user_state, **user_delta}}
            tx.replace(self._path(_USERS, app, user), encode_json(record))

    def _checked(self, session: Session) -> JSONObject:
        """The stored record of the session a write is made from, after SV-15's check."""
        key = (session.app_name, session.user_id, session.id)
        record = self._session_record(key)
        if record is None:
            raise NotFound(f"no session {session.id!r} for this app and user")
        if record["version"] != session.version:
            raise Conflict(
                f"session {session.id!r} changed since it was read",
                expected=session.version,
                actual=record["version"],
            )
        return record

    # --- sessions (SV-1 .. SV-6) ------------------------------------------------------------

    async def create(self, request: CreateRequest) -> Session:
        """Create a session and apply its initial state (SV-1, SV-2)."""
        req = rules.check_create(request)
        parts = split_state_delta(req.state)
        app, user = req.app_name, req.user_id

        def write() -> Session:
            session_id = req.session_id
            if session_id is None:
                session_id = rules.new_id()
                while self._session_record((app, user, session_id)) is not None:
                    session_id = rules.new_id()
            key = (app, user, session_id)
            if self._session_record(key) is not None:
                raise AlreadyExists(f"session {session_id!r} exists for this app and user")
            now = self._clock()
            record: JSONObject = {
                "app_name": app,
                "user_id": user,
                "id": session_id,
                "agent_id": req.agent_id,
                "metadata": req.metadata,
                "state": parts.session,
                "created_at": now,
                "last_update_time": now,
                "version": 0,
                "appended": 0,
                "max_ts": 0,
            }
            pair = {
                "app_name": app,
                "user_id": user,
                "sessions": [*self._session_ids(app, user), session_id],
            }
            tx = self._dir.transaction()
            tx.replace(self._path(_SESSIONS, *key), encode_json(record))
            tx.replace(self._path(_PAIRS, app, user), encode_json(pair))
            self._write_shared(tx, app, user, parts.app, parts.user)
            tx.commit()
            return self._view(key, record, (), parts.temp)

        return await self._dir.run(write)

    async def get(self, request: GetRequest) -> Session | None:
        """The session with its merged state and events (SV-3, SV-10, SV-16)."""
        req = rules.check_get(request)
        key = (req.app_name, req.user_id, req.session_id)

        def read() -> Session | None:
            record = self._session_record(key)
            if record is None:
                return None
            if req.num_recent_events is None:
                entries = self._all_entries(key)
            else:
                entries = self._newest_entries(key, req.num_recent_events)
            return self._view(key, record, tuple(e.event for e in entries))

        return await self._dir.run(read)

    async def update(self, request: UpdateRequest) -> None:
        """Replace the session's metadata; version unchanged (SV-4)."""
        req = rules.check_update(request)
        key = (req.app_name, req.user_id, req.session_id)

        def write() -> None:
            record = self._session_record(key)
            if record is None:
                raise NotFound(f"no session {req.session_id!r} for this app and user")
            record.update(metadata=req.metadata, last_update_time=self._clock())
            tx = self._dir.transaction()
            tx.replace(self._path(_SESSIONS, *key), encode_json(record))
            tx.commit()

        await self._dir.run(write)

    async def delete(self, app_name: str, user_id: str, session_id: str) -> None:
        """Delete the session, its events, its markers and its own state (SV-5)."""
        key = rules.check_key(app_name, user_id, session_id)

        def write() -> None:
            if self._session_record(key) is None:
                raise NotFound(f"no session {session_id!r} for this app and user")
            remaining = [s for s in self._session_ids(app_name, user_id) if s != session_id]
            tx = self._dir.transaction()
            for entry in self._all_entries(key):
                assert entry.event.id is not None
                tx.remove(self._path(_EVENT_IDS, *key, entry.event.id))
            tx.remove(self._log_path(key))
            tx.remove(self._path(_SESSIONS, *key))
            pair = {"app_name": app_name, "user_id": user_id, "sessions": remaining}
            tx.replace(self._path(_PAIRS, app_name, user_id), encode_json(pair))
            tx.commit()

        await self._dir.run(write)

    async def list(self, request: ListRequest) -> list[Session]:
        """The pair's sessions, newest update first, paged, without events (SV-6)."""
        req = rules.check_list(request)
        app, user = req.app_name, req.user_id

        def read() -> builtins.list[Session]:
            shared = self._shared_state(app, user)
            records = []
            for session_id in self._session_ids(app, user):
                record = self._session_record((app, user, session_id))
                if record is None:
                    raise StorageUnavailable(f"session {session_id!r} is indexed but missing")
                records.append(record)
            records.sort(key=lambda r: r["id"])
            records.sort(key=lambda r: r["last_update_time"], reverse=True)
            page = rules.page(records, req.limit, req.offset)
            return [self._view((app, user, r["id"]), r, (), shared=shared) for r in page]

        return await self._dir.run(read)

    # --- events and state (SV-11 .. SV-18) ---------------------------------------------------

    async def append_event(self, session: Session, event: Event) -> Session:
        """Append the event and apply its delta atomically, if the session is fresh (SV-13)."""
        handle = rules.check_handle(session)
        checked = rules.check_event(event)
        parts = split_state_delta(checked.actions.state_delta)
        key = (handle.app_name, handle.user_id, handle.id)

        def write() -> Session:
            record = self._checked(handle)
            event_id = checked.id
            if event_id is None:
                event_id = rules.new_id()
                while read_file(self._path(_EVENT_IDS, *key, event_id)) is not None:
                    event_id = rules.new_id()
            marker = self._path(_EVENT_IDS, *key, event_id)
            ids = {
                "app_name": key[0],
                "user_id": key[1],
                "session_id": key[2],
                "event_id": event_id,
            }
            if self._read(marker, ids) is not None:
                raise AlreadyExists(f"event {event_id!r} exists in session {handle.id!r}")
            now = self._clock()
            stored = rules.stored_event(checked, event_id=event_id, now=now)
            assert stored.timestamp is not None
            seq = record["appended"]
            max_ts = max(record["max_ts"], stored.timestamp)
            line = {"seq": seq, "max_ts": max_ts, "event": rules.event_to_json(stored)}
            record.update(
                state={**record["state"], **parts.session},
                version=record["version"] + 1,
                last_update_time=now,
                appended=seq + 1,
                max_ts=max_ts,
            )
            tx = self._dir.transaction()
            tx.append(self._dir.log(f"{_EVENTS}/{self._log_path(key).name}"), [line])
            tx.replace(marker, encode_json(ids))
            tx.replace(self._path(_SESSIONS, *key), encode_json(record))
            self._write_shared(tx, key[0], key[1], parts.app, parts.user)
            tx.commit()
            return self._view(key, record, (*handle.events, stored), parts.temp)

        return await self._dir.run(write)

    async def update_state(self, session: Session, delta: Mapping[str, Any]) -> Session:
        """Apply a state delta without an event, if the session is fresh (SV-11, SV-15)."""
        handle = rules.check_handle(session)
        parts = split_state_delta(rules.copy_json(check_state_delta(delta)))
        key = (handle.app_name, handle.user_id, handle.id)

        def write() -> Session:
            record = self._checked(handle)
            record.update(
                state={**record["state"], **parts.session},
                version=record["version"] + 1,
                last_update_time=self._clock(),
            )
            tx = self._dir.transaction()
            tx.replace(self._path(_SESSIONS, *key), encode_json(record))
            self._write_shared(tx, key[0], key[1], parts.app, parts.user)
            tx.commit()
            return self._view(key, record, tuple(handle.events), parts.temp)

        return await self._dir.run(write)

    async def get_events(
        self, app_name: str, user_id: str, session_id: str, filter: EventFilter | None = None
    ) -> builtins.list[Event]:
        """The session's events that the filter selects, in order, paged (SV-16 .. SV-18)."""
        key = rules.check_key(app_name, user_id, session_id)
        f = rules.check_filter(filter)

        def read() -> builtins.list[Event]:
            if self._session_record(key) is None:
                raise NotFound(f"no session {session_id!r} for this app and user")
            return rules.filter_events((e.event for e in self._all_entries(key)), f)

        return await self._dir.run(read)

    # --- search (SV-19 .. SV-25) ------------------------------------------------------------

    async def search(self, options: SearchOptions) -> builtins.list[SearchResult]:
        """Matching events of the pair's sessions, most relevant first (SV-19 .. SV-24)."""
        opts = rules.check_search(options)
        app, user = opts.app_name, opts.user_id

        def read() -> builtins.list[SearchResult]:
            hits = []
            for session_id in self._session_ids(app, user):
                key = (app, user, session_id)
                record = self._session_record(key)
                if record is None or not rules.session_selected(
                    opts, session_id, record["agent_id"]
                ):
                    continue
                for index, entry in enumerate(self._all_entries(key)):
                    hit = rules.search_hit(
                        opts,
                        session_id=session_id,
                        agent_id=record["agent_id"],
                        message_index=index,
                        event=entry.event,
                    )
                    if hit is not None:
                        hits.append(hit)
            return rules.page_results(hits, opts)

        return await self._dir.run(read)


def open_store(ctx: StoreContext) -> AbstractAsyncContextManager[JSONSessionService]:
    """The kit's opener: the directory ``ctx.root / ctx.namespace`` (an async CM)."""
    return JSONSessionService(ctx.root / ctx.namespace, clock=ctx.clock)
