"""The JSON-file session service (spec ``session_service.md``).

One directory per store (:class:`~._files.StoreDirectory`), laid out as::

    sv_sessions/<name>.log   one session: a record log (:mod:`._records`), see below
    sv_pairs/<name>.log      the ids of one (app, user) pair's sessions, one record each (SV-6)
    sv_apps/<name>.json      an app's ``app:`` state (SV-8)
    sv_users/<name>.json     a pair's ``user:`` state (SV-8)
    session_service.layout.json   the layout marker: version 2 (see :mod:`._layout`)

A directory of the earlier layout (version 1, no marker: ``sv_sessions/<name>.json`` session
records, ``sv_events/`` JSON Lines event logs, ``sv_event_ids/`` markers, ``sv_pairs/*.json``)
is migrated in place by the first store object that uses it, in one journaled transaction, or
refused with StorageUnavailable if its files are damaged (:mod:`._layout`).

``<name>`` is :func:`~._files.name_for` of a fixed kind and the ids, so any ids are stored in
isolation and never name a path outside the directory (G-2, SV-26); every file keeps its ids
inside and they are checked on reading.

A session's log is the history of its writes. Its first record is written with the file
(``create``): its summary holds the ids, agent, creation time and a random epoch, its payload
the initial state and metadata. Every later write appends one record: an event
(``append_event``), a state delta without an event (``update_state``) or new metadata
(``update``). Every summary carries the session as it is after that record: ``v`` (version),
``t`` (last update time), ``n`` (events so far), ``mx`` (highest event timestamp so far) and the
offsets ``sp`` and ``mp`` of the records holding the current own state and metadata (their
payloads hold them whole; a record that changes neither points back). An event's summary also
has its id ``e`` and timestamp ``ts``; its payload is ``{"event": ..., "state": ...}``: the event
in the stored form of :mod:`.._events` (``rules.event_to_json`` without default-valued fields;
logs written before hold the full form, which reads the same), then the new own state when the
event's delta has session keys. The event comes first, so a read scans it alone. So the whole
current session is the last record's summary plus at most two records it points to: opening a
session reads O(1) records, whatever its length.

Cost: the event of an append is checked and encoded once, before anything is awaited
(:mod:`.._events`; that text is the store's copy, G-7, and the returned event is decoded from it);
events read back are decoded by shape only. An append (event, state or metadata) is one record
appended to one log: one write and one fsync, to a descriptor the store keeps open between
operations (:meth:`~._files.StoreDirectory.open_file`). Only a delta with ``app:`` or ``user:``
keys also replaces the shared state files; then the record and the files are one
:class:`~._files.Transaction` (journaled). Duplicate event ids (SV-13) are found in the set of the
session's event ids, read from the log's summaries the first time a store object appends to the
session and kept up to date after that. Events are read in SV-16's order (timestamp, then ``n``);
the newest ``k`` are read from the end of the log backwards, stopping as soon as no earlier record
can be among them: a record whose ``mx`` is not above the ``k``-th newest timestamp found so far
ends the search (earlier events are older by time, or by append order on a tie). So a session whose
events arrive in time order costs ``k`` records, whatever its length. ``search`` reads every event
of the pair's sessions.

A crash mid-append leaves a torn record at the end of the log: readers ignore it and the next
append cuts it off (:mod:`._records`); an acknowledged append was fsynced. A pair's index gets
the new id before the session's log is created, and loses it after the log is removed, so it
may name a session whose log does not exist (a crash between the two): readers skip those.

Caching: a store object keeps what it read of each session (summary, own state, metadata, event
ids), of the shared states and of each pair's listing between operations. Whatever another store
object or process appends to a session's log makes the log longer, which the next operation
sees; the other changes write a new change mark into the lock file first
(:meth:`~._files.StoreDirectory.new_change_mark`): a session's log removed, a shared state
replaced, and any change at all (for the listings). The last one is a *watched* mark: an
append writes it only if some store object cached a listing under the current mark, so a
plain append writes nothing but its record. A listing page costs O(page) while nothing in
the store changes, and O(sessions of the pair) after a change (the first page after it reads
every session's first and last records and sorts them; the following pages reuse that).
A store object opened on an existing directory reads nothing until asked: a session costs its
O(1) records when first touched; its event ids (for SV-13) one read of its summaries, on its
first append.

Atomicity and concurrency: every operation, reads included, holds the directory lock
(``flock``, so across store objects and processes). The version check of SV-15 reads the
session's last record under that lock, so it holds across processes.
"""

from __future__ import annotations

import builtins
import heapq
import os
import secrets
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

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
from agentstores.spec.values import Clock, JSONObject, JSONValue, system_clock

from .. import _events
from .. import session_service_rules as rules
from .._records import scan_json
from . import _records
from ._files import (
    DEFAULT_LOCK_TIMEOUT,
    MARK_SERVICE_CHANGES,
    MARK_SERVICE_SESSIONS,
    MARK_SERVICE_SHARED,
    StoreDirectory,
    Transaction,
    decode_json,
    encode_json,
    is_watched,
    name_for,
    read_file,
    remove_file,
    write_atomic,
)
from ._layout import ensure_layout, files_named, remove_empty_directories
from ._store import JSONStore

__all__ = ["LAYOUT_MARKER", "JSONSessionService", "open_store"]

T = TypeVar("T")

_SESSIONS = "sv_sessions"
_PAIRS = "sv_pairs"
_APPS = "sv_apps"
_USERS = "sv_users"
_FORMAT = "agentstores-session-service-log/1"
#: The layout marker (see :mod:`._layout`) and the format name in it.
LAYOUT_MARKER = "session_service.layout.json"
_LAYOUT_FORMAT = "agentstores-json-session-service"
# Directories of layout version 1 only (sv_sessions and sv_pairs held .json files then).
_V1_EVENTS = "sv_events"
_V1_EVENT_IDS = "sv_event_ids"
_CHUNK = 1 << 16
#: Sessions whose summary, state, metadata and event ids a store object keeps.
_CACHED_SESSIONS = 1024
#: Pairs whose sorted listing a store object keeps.
_CACHED_LISTINGS = 8

Key = tuple[str, str, str]
_SLOTS = (MARK_SERVICE_SESSIONS, MARK_SERVICE_SHARED, MARK_SERVICE_CHANGES)
_NO_DELTA = split_state_delta({})


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


def _v1_object(path: Path) -> JSONObject:
    """A JSON object file of layout version 1."""
    data = read_file(path)
    found = None if data is None else decode_json(data, what=str(path))
    if not isinstance(found, dict):
        raise StorageUnavailable(f"{path} does not hold a JSON object")
    return found


def _int(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise StorageUnavailable(f"corrupt session log: bad {what}")
    return value


@dataclass(frozen=True, slots=True)
class _Summary:
    """A record's summary: the session after the record, and the event it holds, if any."""

    version: int
    time: int
    events: int
    max_ts: int
    state_at: int
    metadata_at: int
    event_id: str | None
    timestamp: int

    @classmethod
    def of(cls, record: _records.Record) -> _Summary:
        s = record.summary
        if not isinstance(s, dict):
            raise StorageUnavailable(f"corrupt record in {record.log_name}")
        event_id = s.get("e")
        numbers = (s.get("v"), s.get("t"), s.get("n"), s.get("mx"), s.get("sp"), s.get("mp"))
        timestamp = 0 if event_id is None else s.get("ts")
        # type() is int: not bool. Read on every record of a scan, so checked in one go.
        if not (
            all(type(x) is int and x >= 0 for x in numbers)
            and type(timestamp) is int
            and timestamp >= 0
            and (event_id is None or isinstance(event_id, str))
        ):
            raise StorageUnavailable(f"corrupt record at byte {record.offset} of {record.log_name}")
        return cls(*numbers, event_id, timestamp)  # type: ignore[arg-type]

    def encoded(self) -> bytes:
        """``encode_json(self.to_json())``, formatted directly: one is made on every append."""
        head = b'{"v":%d,"t":%d,"n":%d,"mx":%d,"sp":%d,"mp":%d' % (
            self.version,
            self.time,
            self.events,
            self.max_ts,
            self.state_at,
            self.metadata_at,
        )
        if self.event_id is None:
            return head + b"}"
        event_id = encode_basestring(self.event_id).encode("utf-8")
        return head + b',"e":%s,"ts":%d}' % (event_id, self.timestamp)

    def to_json(self) -> JSONObject:
        record: JSONObject = {
            "v": self.version,
            "t": self.time,
            "n": self.events,
            "mx": self.max_ts,
            "sp": self.state_at,
            "mp": self.metadata_at,
        }
        if self.event_id is not None:
            record.update(e=self.event_id, ts=self.timestamp)
        return record


@dataclass
class _Session:
    """What a store object knows of one session: its log, as far as ``end``."""

    key: Key
    log: Path
    agent_id: str | None
    created_at: int
    end: int
    last: _Summary
    state: JSONObject  # own keys only; never handed out (copied first, G-7)
    metadata: JSONObject
    event_ids: set[str] | None  # None: not read yet
    ids_end: int = 0  # event_ids covers the log up to here
    size: int = 0  # the file's size when last opened (more than `end`: a torn append)


@dataclass(frozen=True, slots=True)
class _Listed:
    """One session of a pair's listing (no events)."""

    id: str
    agent_id: str | None
    created_at: int
    last: _Summary
    state: JSONObject
    metadata: JSONObject


class _LogEntry:
    """One event of a session's log: its append sequence (``n``), its timestamp, the event."""

    __slots__ = ("event", "seq", "timestamp")

    def __init__(self, summary: _Summary, record: _records.Record) -> None:
        self.seq = summary.events
        self.timestamp = summary.timestamp
        self.event = _event_of(record)

    @property
    def order(self) -> tuple[int, int]:
        """SV-16's sort key."""
        return (self.timestamp, self.seq)


def _log_head(
    key: tuple[str, str, str], agent_id: str | None, created_at: int, version: int, time: int
) -> JSONObject:
    """The head of a new session log (a fresh epoch) for the session (app, user, id) = ``key``,
    at ``version`` and last updated at ``time``, with no events yet."""
    return {
        "epoch": secrets.token_hex(8),
        "format": _FORMAT,
        "app_name": key[0],
        "user_id": key[1],
        "id": key[2],
        "agent_id": agent_id,
        "created_at": created_at,
        **_Summary(version, time, 0, 0, 0, 0, None, 0).to_json(),
    }


def _object(value: JSONValue, what: str) -> JSONObject:
    if not isinstance(value, dict):
        raise StorageUnavailable(f"corrupt session log: {what} is not an object")
    return value


def _payload_part(record: _records.Record, name: str) -> JSONObject:
    payload = record.payload()
    if not isinstance(payload, dict) or name not in payload:
        raise StorageUnavailable(f"corrupt record in {record.log_name}: no {name}")
    return _object(payload[name], name)


#: How every event record's payload begins: the event is its first member (see _event_of).
_EVENT_PREFIX = '{"event":'
_EVENT_PREFIX_BYTES = _EVENT_PREFIX.encode("ascii")


def _event_payload(body: str, state: JSONObject | None) -> bytes:
    """The payload of an event record: ``{"event": <body>}`` plus ``"state"`` if given, with
    ``body`` (the event's stored text, :func:`.._events.encode_stored`) spliced in as it is."""
    if state is None:
        return b"%s%s}" % (_EVENT_PREFIX_BYTES, body.encode("utf-8"))
    return b'%s%s,"state":%s}' % (_EVENT_PREFIX_BYTES, body.encode("utf-8"), encode_json(state))


def _event_of(record: _records.Record) -> Event:
    """The event of an event record, decoded by shape (:func:`.._events.decode_stored_object`).

    Every event record's payload starts with its event (this module writes it so, and did so
    when it wrote the full form of ``rules.event_to_json``, which decodes the same), so the
    event is scanned from there and a state after it is not parsed.
    """
    raw = record.raw_payload
    if zlib.crc32(raw) != record.payload_crc:
        raise StorageUnavailable(
            f"corrupt record at byte {record.offset} of {record.log_name}: payload checksum"
        )
    try:
        text = raw.decode("utf-8")
        if text.startswith(_EVENT_PREFIX):
            try:
                obj, _ = scan_json(text, len(_EVENT_PREFIX))
            except StopIteration:
                raise ValueError("not JSON") from None
        else:
            payload = record.payload()
            obj = payload.get("event") if isinstance(payload, dict) else None
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise StorageUnavailable(f"corrupt event in {record.log_name}: {exc}") from exc
    return _events.decode_stored_object(obj)


class JSONSessionService(JSONStore):
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
            subdirectories=(_SESSIONS, _PAIRS, _APPS, _USERS),
            sync=fsync,
            lock_timeout=lock_timeout,
            on_prepare=self._ensure_layout,
        )
        self._clock = clock
        # Caches, valid while the change marks are the ones seen (see _refresh).
        self._sessions: OrderedDict[Key, _Session] = OrderedDict()
        self._shared: dict[tuple[str, ...], JSONObject] = {}
        self._listings: OrderedDict[tuple[str, str], list[_Listed]] = OrderedDict()
        self._marks: dict[int, bytes | None] = dict.fromkeys(_SLOTS)
        self._seen_marks: list[bytes] = []  # as read by the last _refresh

    # --- layout (see ._layout) -----------------------------------------------------------------

    def _ensure_layout(self) -> None:
        ensure_layout(
            self._dir.transaction,
            self._dir.path / LAYOUT_MARKER,
            format=_LAYOUT_FORMAT,
            find_old=self._find_v1,
            migrate=self._migrate_v1,
            sync=self._dir.sync,
        )
        remove_empty_directories(self._dir.path / _V1_EVENTS, self._dir.path / _V1_EVENT_IDS)

    def _find_v1(self) -> str | None:
        """What the directory holds of layout version 1, if anything."""
        root = self._dir.path
        for kind, suffix in ((_SESSIONS, ".json"), (_PAIRS, ".json"), (_V1_EVENTS, ".jsonl")):
            for _ in files_named(root / kind, suffix):
                return f"session-service files of layout version 1 ({kind}/*{suffix})"
        return None

    def _migrate_v1(self, tx: Transaction) -> None:
        """Convert every file of layout version 1 in ``tx`` (see ._layout): each session
        record and its events log become one session log, each pair file a pair index; the
        event-id markers are removed (the ids are in the logs now)."""
        root = self._dir.path
        for path in files_named(root / _SESSIONS, ".json"):
            self._migrate_v1_session(tx, path)
        for path in files_named(root / _PAIRS, ".json"):
            pair = _v1_object(path)
            app, user, ids = pair.get("app_name"), pair.get("user_id"), pair.get("sessions")
            if (
                not isinstance(app, str)
                or not isinstance(user, str)
                or not isinstance(ids, list)
                or not all(isinstance(i, str) for i in ids)
                or path.name != name_for(_PAIRS, app, user)
            ):
                raise StorageUnavailable(f"{path} is not a session-service pair file")
            index = b"".join(_records.encode_record({"id": i}) for i in ids)
            if index:
                tx.stage(self._path(_PAIRS, app, user, suffix=".log"), index)
            tx.remove(path)
        for path in files_named(root / _V1_EVENT_IDS, ".json"):
            tx.remove(path)
        for path in files_named(root / _V1_EVENTS, ".jsonl"):
            tx.remove(path)  # the logs of sessions migrated above (or orphans of nothing)

    def _migrate_v1_session(self, tx: Transaction, path: Path) -> None:
        record = _v1_object(path)
        app, user, session_id = (record.get(k) for k in ("app_name", "user_id", "id"))
        agent_id, state, metadata = (record.get(k) for k in ("agent_id", "state", "metadata"))
        if (
            not isinstance(app, str)
            or not isinstance(user, str)
            or not isinstance(session_id, str)
            or not (agent_id is None or isinstance(agent_id, str))
            or not isinstance(state, dict)
            or not isinstance(metadata, dict)
        ):
            raise StorageUnavailable(f"{path} is not a session-service session file")
        key = (app, user, session_id)
        if path.name != name_for(_SESSIONS, *key):
            raise StorageUnavailable(f"{path} does not hold the session it is named for")
        created_at, time, version, appended = (
            _int(record.get(k), f"{k} in {path}")
            for k in ("created_at", "last_update_time", "version", "appended")
        )
        events_path = self._dir.path / _V1_EVENTS
        events_path /= name_for(_V1_EVENTS, app, user, session_id, suffix=".jsonl")
        lines = self._dir.log(events_path.relative_to(self._dir.path).as_posix()).read().records
        if len(lines) != appended:
            raise StorageUnavailable(
                f"{events_path} holds {len(lines)} events, its session file counts {appended}"
            )
        head = _log_head((app, user, session_id), agent_id, created_at, version, time)
        pieces = [_records.encode_record(head, {"state": state, "metadata": metadata})]
        max_ts = 0
        for seq, line in enumerate(lines):
            if not isinstance(line, dict) or line.get("seq") != seq:
                raise StorageUnavailable(f"{events_path}: line {seq + 1} is not event {seq}")
            try:
                event = rules.event_from_json(line.get("event"))
            except (ValueError, KeyError, TypeError) as exc:
                raise StorageUnavailable(f"{events_path}: event {seq}: {exc}") from exc
            if event.id is None or event.timestamp is None:
                raise StorageUnavailable(f"{events_path}: event {seq} has no id or time")
            max_ts = max(max_ts, event.timestamp)
            summary = _Summary(
                version,
                time,
                seq + 1,
                max_ts,
                0,
                0,
                event.id,
                event.timestamp,
            )
            payload = encode_json({"event": rules.event_to_json(event)})
            pieces.append(_records.encoded_line(summary.encoded(), payload))
        tx.stage(self._log_path(key), b"".join(pieces))
        tx.remove(path)

    # --- caches (used holding the lock) ------------------------------------------------------

    async def _run(self, operation: Callable[[], T]) -> T:
        """Run ``operation`` holding the lock, with the caches made current first."""

        def locked() -> T:
            self._refresh()
            return operation()

        return await self._dir.run(locked)

    def _caches(self, slot: int) -> list[Any]:
        if slot == MARK_SERVICE_SESSIONS:
            return [self._sessions, self._listings]
        if slot == MARK_SERVICE_SHARED:
            return [self._shared, self._listings]
        return [self._listings]

    def _refresh(self) -> None:
        """Drop what another store object's change may have made stale."""
        marks = self._dir.change_marks(_SLOTS)
        if marks == self._seen_marks:
            return
        self._seen_marks = marks
        for slot, mark in zip(_SLOTS, marks, strict=True):
            if mark != self._marks[slot]:
                for cache in self._caches(slot):
                    cache.clear()
                self._marks[slot] = mark

    def _changing(self, *slots: int) -> None:
        """Mark, before making them, changes of the kinds ``slots`` (any change marks
        MARK_SERVICE_CHANGES too). Until the next operation reads the marks again, what the
        marks guard is dropped: a failure may leave a journal that a later one rolls forward."""
        self._seen_marks = []  # what follows changes what _refresh compares with
        for slot in slots:
            for cache in self._caches(slot):
                cache.clear()
            self._marks[slot] = None
            self._dir.new_change_mark(slot)
        self._listings.clear()
        # Listings are cached rarely and appends are frequent: a new mark is only needed when
        # some store object cached a listing under the current one (it is "watched").
        if is_watched(self._marks[MARK_SERVICE_CHANGES]):
            self._marks[MARK_SERVICE_CHANGES] = None
            self._dir.new_change_mark(MARK_SERVICE_CHANGES)

    # --- files (used holding the lock) ---------------------------------------------------------

    def _path(self, kind: str, *ids: str, suffix: str = ".json") -> Path:
        return self._dir.path / kind / name_for(kind, *ids, suffix=suffix)

    def _log_path(self, key: Key) -> Path:
        return self._path(_SESSIONS, *key, suffix=".log")

    def _read(self, path: Path, ids: Mapping[str, str]) -> JSONObject | None:
        """A record file, checked to belong to ``ids`` (else the file is corrupt)."""
        data = read_file(path)
        if data is None:
            return None
        record = decode_json(data, what=path.name)
        if not isinstance(record, dict) or any(record.get(k) != v for k, v in ids.items()):
            raise StorageUnavailable(f"{path.name} does not hold the record it is named for")
        return record

    def _shared_state(self, app: str, user: str) -> tuple[JSONObject, JSONObject]:
        """The app's ``app:`` and the pair's ``user:`` state (cached; never handed out)."""
        app_state = self._shared.get((app,))
        if app_state is None:
            record = self._read(self._path(_APPS, app), {"app_name": app})
            app_state = {} if record is None else _object(record["state"], "app state")
            self._shared[(app,)] = app_state
        user_state = self._shared.get((app, user))
        if user_state is None:
            record = self._read(self._path(_USERS, app, user), {"app_name": app, "user_id": user})
            user_state = {} if record is None else _object(record["state"], "user state")
            self._shared[(app, user)] = user_state
        return app_state, user_state

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
        # Read again once committed (this call's values share dicts with the caller's event).
        self._shared.pop((app,), None)
        self._shared.pop((app, user), None)

    def _session_ids(self, app: str, user: str) -> list[str]:
        """The ids in the pair's index, first creation first, each once (some may name a
        session whose log is gone: a crash between the two writes of a create or delete)."""
        path = self._path(_PAIRS, app, user, suffix=".log")
        opened = self._dir.open_file(path)
        if opened is None:
            return []
        fd, size = opened
        found, _ = _records.read_forward(fd, 0, size, path.name)
        ids: dict[str, None] = {}
        for record in found:
            summary = record.summary
            if not isinstance(summary, dict) or not isinstance(summary.get("id"), str):
                raise StorageUnavailable(f"corrupt record in {path.name}")
            ids[summary["id"]] = None
        return list(ids)

    def _open(self, key: Key) -> tuple[int, _Session] | None:
        """The session's log, open read-write, and what is known of it now; None if there is
        no such session. The descriptor is the directory's (kept open between operations,
        :meth:`~._files.StoreDirectory.open_file`): use it in this operation only."""
        entry = self._sessions.get(key)
        path = self._log_path(key) if entry is None else entry.log
        opened = self._dir.open_file(path)
        if opened is None:
            self._sessions.pop(key, None)
            return None
        fd, size = opened
        if entry is None or size < entry.end:
            entry = self._load(key, path, fd, size)
        elif size > entry.end:
            self._catch_up(entry, fd, size)
        entry.size = size
        self._sessions[key] = entry
        self._sessions.move_to_end(key)
        if len(self._sessions) > _CACHED_SESSIONS:
            self._sessions.popitem(last=False)
        return fd, entry

    def _load(self, key: Key, path: Path, fd: int, size: int) -> _Session:
        """Read what is needed of a session's log: its first record, its last one and the
        records holding its current state and metadata (O(1) records)."""
        last, end = _records.read_tail(fd, size, path.name)
        if last is None:
            raise StorageUnavailable(f"corrupt {path.name}: no record")
        first = last if last.offset == 0 else _records.read_record_at(fd, 0, end, path.name)
        head = first.summary
        if (
            not isinstance(head, dict)
            or head.get("format") != _FORMAT
            or (head.get("app_name"), head.get("user_id"), head.get("id")) != key
        ):
            raise StorageUnavailable(f"{path.name} does not hold the session it is named for")
        agent_id = head.get("agent_id")
        if agent_id is not None and not isinstance(agent_id, str):
            raise StorageUnavailable(f"corrupt {path.name}: bad agent id")
        summary = _Summary.of(last)
        records = {record.offset: record for record in (first, last)}

        def at(offset: int) -> _records.Record:
            if offset not in records:
                records[offset] = _records.read_record_at(fd, offset, end, path.name)
            return records[offset]

        return _Session(
            key=key,
            log=path,
            agent_id=agent_id,
            created_at=_int(head.get("created_at"), "creation time"),
            end=end,
            last=summary,
            state=_payload_part(at(summary.state_at), "state"),
            metadata=_payload_part(at(summary.metadata_at), "metadata"),
            event_ids=None,
        )

    def _catch_up(self, entry: _Session, fd: int, size: int) -> None:
        """Take in the records appended (by another store object) since ``entry.end``."""
        found, end = _records.read_forward(fd, entry.end, size, entry.log.name)
        for record in found:
            summary = _Summary.of(record)
            if summary.state_at == record.offset:
                entry.state = _payload_part(record, "state")
            if summary.metadata_at == record.offset:
                entry.metadata = _payload_part(record, "metadata")
            if entry.event_ids is not None and summary.event_id is not None:
                entry.event_ids.add(summary.event_id)
            entry.last = summary
        entry.end = end
        if entry.event_ids is not None:
            entry.ids_end = end

    def _event_ids(self, entry: _Session, fd: int) -> set[str]:
        """The ids of the session's events: read from the log's summaries the first time."""
        if entry.event_ids is None or entry.ids_end != entry.end:
            found, _ = _records.read_forward(fd, 0, entry.end, entry.log.name)
            entry.event_ids = {
                s.event_id for s in map(_Summary.of, found[1:]) if s.event_id is not None
            }
            entry.ids_end = entry.end
        return entry.event_ids

    def _append(
        self,
        entry: _Session,
        fd: int,
        summary: _Summary,
        payload: bytes,
        shared: tuple[JSONObject, JSONObject],
    ) -> None:
        """Append the record of ``summary`` and the encoded ``payload`` (b"": none) to the
        session's log, together with the ``app:`` and ``user:`` parts ``shared`` of its delta,
        and update ``entry``."""
        app_delta, user_delta = shared
        data = _records.encoded_line(summary.encoded(), payload)
        key, at = entry.key, entry.end
        # Unknown until the write is whole (another object's reads would see it anyway).
        self._sessions.pop(key, None)
        if app_delta or user_delta:
            self._changing(MARK_SERVICE_SHARED)
            tx = self._dir.transaction()
            tx.write_at(entry.log, at, data)
            self._write_shared(tx, key[0], key[1], app_delta, user_delta)
            tx.commit()
        else:
            self._changing()
            _records.append_at(fd, at, entry.size, data, sync=self._dir.sync)
        entry.end = entry.size = at + len(data)
        entry.last = summary
        if entry.event_ids is not None:
            if entry.ids_end == at:
                entry.ids_end = entry.end
            if summary.event_id is not None:
                entry.event_ids.add(summary.event_id)
        self._sessions[key] = entry

    def _all_entries(self, key: Key) -> list[_LogEntry]:
        """Every event of the session, in SV-16's order."""
        opened = self._open(key)
        if opened is None:
            return []
        fd, entry = opened
        found, _ = _records.read_forward(fd, 0, entry.end, entry.log.name)
        entries = []
        for record in found[1:]:
            summary = _Summary.of(record)
            if summary.event_id is not None:
                entries.append(_LogEntry(summary, record))
        entries.sort(key=lambda entry: entry.order)
        return entries

    def _newest_entries(self, entry: _Session, n: int) -> list[_LogEntry]:
        """The newest ``n`` events in order, reading the log backwards only as far as needed."""
        if n == 0:
            return []
        best: list[tuple[tuple[int, int], _Summary, _records.Record]] = []  # the newest n
        name = entry.log.name
        with open(entry.log, "rb") as file:
            first = True
            for line in _lines_backwards(file):
                record = _records.parse_line(line, 0, name)
                if record is None:
                    if first:  # a torn append
                        first = False
                        continue
                    raise StorageUnavailable(f"corrupt record in {name}")
                first = False
                if isinstance(record.summary, dict) and "format" in record.summary:
                    break  # the log's first record: no event
                summary = _Summary.of(record)
                if len(best) == n and summary.max_ts <= best[0][0][0]:
                    break  # this record and all before it are older than the n-th newest
                if summary.event_id is None:
                    continue
                item = ((summary.timestamp, summary.events), summary, record)
                if len(best) < n:
                    heapq.heappush(best, item)
                elif item[0] > best[0][0]:
                    heapq.heapreplace(best, item)
        best.sort(key=lambda item: item[0])
        return [_LogEntry(summary, record) for _, summary, record in best]

    def _view(
        self,
        entry: _Session | _Listed,
        key: Key,
        events: tuple[Event, ...],
        temp: Mapping[str, Any] | None = None,
    ) -> Session:
        """The session as returned: merged state (SV-10), plus this call's temp: keys; copies
        of what is cached (G-7)."""
        app_state, user_state = self._shared_state(key[0], key[1])
        state = {**app_state, **user_state, **entry.state}
        state = rules.copy_json(state) if state else {}
        return Session(
            id=key[2],
            app_name=key[0],
            user_id=key[1],
            agent_id=entry.agent_id,
            state={**state, **(temp or {})},
            events=events,
            last_update_time=entry.last.time,
            created_at=entry.created_at,
            metadata=rules.copy_json(entry.metadata) if entry.metadata else {},
            version=entry.last.version,
        )

    def _checked(self, session: Session) -> tuple[int, _Session]:
        """The open log and cache entry of the session a write is made from, after SV-15's
        check (the descriptor is the directory's, see _open)."""
        key = (session.app_name, session.user_id, session.id)
        opened = self._open(key)
        if opened is None:
            raise NotFound(f"no session {session.id!r} for this app and user")
        fd, entry = opened
        if entry.last.version != session.version:
            raise Conflict(
                f"session {session.id!r} changed since it was read",
                expected=session.version,
                actual=entry.last.version,
            )
        return fd, entry

    def _exists(self, key: Key) -> bool:
        return key in self._sessions or self._log_path(key).exists()

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
                while self._exists((app, user, session_id)):
                    session_id = rules.new_id()
            key = (app, user, session_id)
            if self._exists(key):
                raise AlreadyExists(f"session {session_id!r} exists for this app and user")
            now = self._clock()
            summary = _Summary(0, now, 0, 0, 0, 0, None, 0)
            head = _log_head(key, req.agent_id, now, 0, now)
            data = _records.encode_record(head, {"state": parts.session, "metadata": req.metadata})
            path = self._log_path(key)
            shared = parts.app or parts.user
            self._changing(*((MARK_SERVICE_SHARED,) if shared else ()))
            # The index first: a crash before the log leaves an id that readers skip.
            index = self._path(_PAIRS, app, user, suffix=".log")
            _records.append_record(
                index, _records.encode_record({"id": session_id}), sync=self._dir.sync
            )
            tx = self._dir.transaction()
            tx.replace(path, data)
            self._write_shared(tx, app, user, parts.app, parts.user)
            tx.commit()
            entry = _Session(
                key=key,
                log=path,
                agent_id=req.agent_id,
                created_at=now,
                end=len(data),
                last=summary,
                state=rules.copy_json(parts.session),
                metadata=rules.copy_json(req.metadata),
                event_ids=set(),
                ids_end=len(data),
            )
            self._sessions[key] = entry
            return self._view(entry, key, (), parts.temp)

        return await self._run(write)

    async def get(self, request: GetRequest) -> Session | None:
        """The session with its merged state and events (SV-3, SV-10, SV-16)."""
        req = rules.check_get(request)
        key = (req.app_name, req.user_id, req.session_id)

        def read() -> Session | None:
            opened = self._open(key)
            if opened is None:
                return None
            _, entry = opened
            if req.num_recent_events is None:
                entries = self._all_entries(key)
            else:
                entries = self._newest_entries(entry, req.num_recent_events)
            return self._view(entry, key, tuple(e.event for e in entries))

        return await self._run(read)

    async def update(self, request: UpdateRequest) -> None:
        """Replace the session's metadata; version unchanged (SV-4)."""
        req = rules.check_update(request)
        key = (req.app_name, req.user_id, req.session_id)
        metadata = rules.copy_json(req.metadata)

        def write() -> None:
            opened = self._open(key)
            if opened is None:
                raise NotFound(f"no session {req.session_id!r} for this app and user")
            fd, entry = opened
            last = entry.last
            summary = _Summary(
                last.version,
                self._clock(),
                last.events,
                last.max_ts,
                last.state_at,
                entry.end,
                None,
                0,
            )
            payload = encode_json({"metadata": metadata})
            self._append(entry, fd, summary, payload, ({}, {}))
            entry.metadata = metadata

        await self._run(write)

    async def delete(self, app_name: str, user_id: str, session_id: str) -> None:
        """Delete the session: its log holds its events and own state (SV-5)."""
        key = rules.check_key(app_name, user_id, session_id)

        def write() -> None:
            path = self._log_path(key)
            if not self._exists(key):
                raise NotFound(f"no session {session_id!r} for this app and user")
            remaining = [s for s in self._session_ids(app_name, user_id) if s != session_id]
            self._changing(MARK_SERVICE_SESSIONS)
            if not remove_file(path, sync=self._dir.sync):
                raise NotFound(f"no session {session_id!r} for this app and user")
            # Then the index: a crash before this leaves an id that readers skip.
            index = self._path(_PAIRS, app_name, user_id, suffix=".log")
            if remaining:
                data = b"".join(_records.encode_record({"id": s}) for s in remaining)
                write_atomic(index, data, sync=self._dir.sync)
            else:
                remove_file(index, sync=self._dir.sync)

        await self._run(write)

    async def list(self, request: ListRequest) -> list[Session]:
        """The pair's sessions, newest update first, paged, without events (SV-6)."""
        req = rules.check_list(request)
        app, user = req.app_name, req.user_id

        def read() -> builtins.list[Session]:
            listing = self._listings.get((app, user))
            if listing is None:
                listing = self._listing(app, user)
                if not is_watched(self._marks[MARK_SERVICE_CHANGES]):
                    # Writers must now mark their changes (see _changing).
                    mark = self._dir.new_change_mark(MARK_SERVICE_CHANGES, watched=True)
                    self._marks[MARK_SERVICE_CHANGES] = mark
                    self._seen_marks = []
                if self._marks[MARK_SERVICE_CHANGES] is not None:
                    self._listings[(app, user)] = listing
                    if len(self._listings) > _CACHED_LISTINGS:
                        self._listings.popitem(last=False)
            page = rules.page(listing, req.limit, req.offset)
            return [self._view(listed, (app, user, listed.id), ()) for listed in page]

        return await self._run(read)

    def _listing(self, app: str, user: str) -> builtins.list[_Listed]:
        """Every session of the pair in SV-6's order (read once per change of the store)."""
        listing = []
        for session_id in self._session_ids(app, user):
            opened = self._open((app, user, session_id))
            if opened is None:
                continue  # a create or delete cut short by a crash
            _, entry = opened
            listing.append(
                _Listed(
                    session_id,
                    entry.agent_id,
                    entry.created_at,
                    entry.last,
                    entry.state,
                    entry.metadata,
                )
            )
        listing.sort(key=lambda listed: listed.id)
        listing.sort(key=lambda listed: listed.last.time, reverse=True)
        return listing

    # --- events and state (SV-11 .. SV-18) ---------------------------------------------------

    async def append_event(self, session: Session, event: Event) -> Session:
        """Append the event and apply its delta atomically, if the session is fresh (SV-13).

        The event is checked and encoded before the first await (:mod:`.._events`): the
        caller's event shares its dicts with the check's result, and the encoded text is the
        store's copy (G-7), written into the record and decoded for the event returned.
        """
        handle = rules.check_handle(session)
        checked = _events.checked_event(event)
        delta = checked.actions.state_delta
        # The store's own copy of the delta (G-7): the cache keeps it, the worker writes it.
        parts = split_state_delta(rules.copy_json(delta)) if delta else _NO_DELTA
        key = (handle.app_name, handle.user_id, handle.id)
        own_delta = parts.session
        now = self._clock()
        timestamp = now if checked.timestamp is None else checked.timestamp
        given_id = checked.id
        event_id = _events.new_event_id() if given_id is None else given_id
        body = _events.encode_stored(checked, event_id=event_id, now=now)

        def write() -> Session:
            nonlocal body, event_id
            fd, entry = self._checked(handle)
            ids = self._event_ids(entry, fd)
            if event_id in ids:
                if given_id is not None:
                    raise AlreadyExists(f"event {event_id!r} exists in session {handle.id!r}")
                # The random id is taken (practically never): another, encoded from the
                # store's copy (the caller's event may have changed since).
                while event_id in ids:
                    event_id = _events.new_event_id()
                body = _events.encode_stored(
                    _events.decode_stored(body), event_id=event_id, now=now
                )
            last = entry.last
            summary = _Summary(
                last.version + 1,
                now,
                last.events + 1,
                max(last.max_ts, timestamp),
                entry.end if own_delta else last.state_at,
                last.metadata_at,
                event_id,
                timestamp,
            )
            state = {**entry.state, **own_delta} if own_delta else None
            self._append(entry, fd, summary, _event_payload(body, state), (parts.app, parts.user))
            if state is not None:
                entry.state = state
            stored = _events.decode_stored(body)
            return self._view(entry, key, (*handle.events, stored), parts.temp)

        return await self._run(write)

    async def update_state(self, session: Session, delta: Mapping[str, Any]) -> Session:
        """Apply a state delta without an event, if the session is fresh (SV-11, SV-15)."""
        handle = rules.check_handle(session)
        parts = split_state_delta(rules.copy_json(check_state_delta(delta)))
        key = (handle.app_name, handle.user_id, handle.id)
        own_delta = parts.session  # a copy already (G-7)

        def write() -> Session:
            fd, entry = self._checked(handle)
            last = entry.last
            summary = _Summary(
                last.version + 1,
                self._clock(),
                last.events,
                last.max_ts,
                entry.end if own_delta else last.state_at,
                last.metadata_at,
                None,
                0,
            )
            state = {**entry.state, **own_delta}
            payload = encode_json({"state": state}) if own_delta else b""
            self._append(entry, fd, summary, payload, (parts.app, parts.user))
            entry.state = state
            return self._view(entry, key, tuple(handle.events), parts.temp)

        return await self._run(write)

    async def get_events(
        self, app_name: str, user_id: str, session_id: str, filter: EventFilter | None = None
    ) -> builtins.list[Event]:
        """The session's events that the filter selects, in order, paged (SV-16 .. SV-18)."""
        key = rules.check_key(app_name, user_id, session_id)
        f = rules.check_filter(filter)

        def read() -> builtins.list[Event]:
            if not self._exists(key):
                raise NotFound(f"no session {session_id!r} for this app and user")
            return rules.filter_events((e.event for e in self._all_entries(key)), f)

        return await self._run(read)

    # --- search (SV-19 .. SV-25) ------------------------------------------------------------

    async def search(self, options: SearchOptions) -> builtins.list[SearchResult]:
        """Matching events of the pair's sessions, most relevant first (SV-19 .. SV-24): a
        scan of every event of the pair's selected sessions."""
        opts = rules.check_search(options)
        app, user = opts.app_name, opts.user_id

        def read() -> builtins.list[SearchResult]:
            hits = []
            for session_id in self._session_ids(app, user):
                key = (app, user, session_id)
                opened = self._open(key)
                if opened is None:
                    continue
                _, entry = opened
                if not rules.session_selected(opts, session_id, entry.agent_id):
                    continue
                for index, log_entry in enumerate(self._all_entries(key)):
                    hit = rules.search_hit(
                        opts,
                        session_id=session_id,
                        agent_id=entry.agent_id,
                        message_index=index,
                        event=log_entry.event,
                    )
                    if hit is not None:
                        hits.append(hit)
            return rules.page_results(hits, opts)

        return await self._run(read)


def open_store(ctx: StoreContext) -> AbstractAsyncContextManager[JSONSessionService]:
    """The kit's opener: the directory ``ctx.root / ctx.namespace`` (an async CM)."""
    return JSONSessionService(ctx.root / ctx.namespace, clock=ctx.clock)
