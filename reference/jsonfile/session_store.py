"""The JSON-file session store (spec ``session_store.md``).

One directory per store (:class:`~._files.StoreDirectory`), laid out as::

    sessions/<name>.json      {"session": {...}, "log": g, "count": c}
    messages/<log name>.log   the conversation: a record log (:mod:`._records`), one record
                              per message: summary {"n": position + 1, "t": time added},
                              payload message_to_json
    ids.json                  {"days": {"YYYYMMDD": last number issued}}
    session_store.layout.json the layout marker: version 2 (see :mod:`._layout`)

A directory of the earlier layout (version 1, no marker: session files holding
``message_count``, conversations in ``messages/<name>.jsonl`` JSON Lines logs) is migrated in
place by the first store object that uses it, in one journaled transaction, or refused with
StorageUnavailable if its files are damaged (:mod:`._layout`).

``<name>`` is :func:`~._files.name_for` of the session id and ``<log name>`` that of (session
id, generation ``g``), so any id is stored in isolation and never names a path outside the
directory (G-2); each session file keeps its id inside. ``session`` is the SS-17 JSON form as of
the session file's last write, when the log held ``c`` messages.

Appending a message (SS-8) is one record appended to the log: one write and one fsync, whatever
the conversation's length; the session file is not touched. The session's ``message_count`` is
the ``n`` of the log's last record, and its ``updated_at`` that record's ``t`` if the log holds
more than ``c`` messages (appends came after the session file's last write), else the session
file's. Both come from the end of the log (O(1), :func:`~._records.read_tail`), so
``get_session`` without messages and the listings read the session file and the last record
only, never the conversation (SS-5). A crash mid-append leaves a torn record at the end of the
log, which readers ignore and the next append cuts off; an acknowledged append was fsynced.

Operations that rewrite the conversation (replace, truncate) and those that create one (import,
copy) write a log of a new generation and switch the session file to it in one
:class:`~._files.Transaction`, removing the old log with it; a session update (name, tokens...)
replaces the session file atomically with the current count. So a crash never leaves a session
pointing at half a conversation (G-17).

Caching: a store object keeps the session files it read and where each log ended (with its
last ``n`` and ``t``), so that an append to a known session opens, writes and fsyncs its log
and reads nothing else. Appends by other store objects or processes make the log longer, which
the next operation sees (it then reads the new last record); every other change writes a new
change mark into the lock file before it is made (:meth:`~._files.StoreDirectory.new_change_mark`)
and the cache is dropped when the mark differs from the one last seen.

Every operation holds the directory lock; arguments are validated and serialised before it is
taken (G-5, G-7, SS-15).
"""

from __future__ import annotations

import copy
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from agentstores.conformance.backend import StoreContext
from agentstores.spec.errors import InvalidArgument, NotFound, StorageUnavailable
from agentstores.spec.messages import Message, message_from_json, message_to_json
from agentstores.spec.session_store import (
    ChatHistoryMatch,
    Session,
    SessionInsights,
    SessionType,
)
from agentstores.spec.values import (
    Clock,
    JSONValue,
    check_timestamp,
    system_clock,
)

from .. import session_store_rules as rules
from . import _records
from ._files import (
    DEFAULT_LOCK_TIMEOUT,
    MARK_SESSION_STORE_FILES,
    TEMP_PREFIX,
    StoreDirectory,
    Transaction,
    decode_json,
    encode_json,
    fsync_directory,
    name_for,
    read_file,
    remove_file,
    write_atomic,
)
from ._layout import ensure_session_store_layout
from ._store import JSONStore

__all__ = ["JSONSessionStore", "open_store"]

T = TypeVar("T")

_SESSIONS = "sessions"
#: Sessions whose session file and log end a store object keeps between operations.
_CACHED_SESSIONS = 4096
_MESSAGES = "messages"
_IDS = "ids.json"


@dataclass(frozen=True)
class _Record:
    """A session file: the session as of its last write, its log generation, and how many
    messages that log held then (``count``)."""

    session: Session
    log: int
    count: int

    def to_bytes(self) -> bytes:
        return encode_json(
            {"session": rules.session_to_json(self.session), "log": self.log, "count": self.count}
        )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _record_from(data: bytes) -> _Record:
    obj = decode_json(data, what="session file")
    if not isinstance(obj, dict) or not _is_int(obj.get("count")) or not _is_int(obj.get("log")):
        raise StorageUnavailable("corrupt session file")
    try:
        session = rules.session_from_json(obj.get("session"), message_count=obj["count"])
    except InvalidArgument as exc:
        raise StorageUnavailable(f"corrupt session file: {exc}") from exc
    return _Record(session, obj["log"], obj["count"])


@dataclass(frozen=True)
class _Tail:
    """The end of a conversation log: its valid end, and ``n`` and ``t`` of its last record."""

    end: int
    n: int
    t: int


@dataclass
class _Cached:
    """What an object knows of one session: its session file, log path and log end."""

    record: _Record
    log: Path
    tail: _Tail | None = None


def _position(record: _records.Record) -> tuple[int, int]:
    """``(n, t)`` of a message record's summary."""
    summary = record.summary
    if (
        not isinstance(summary, dict)
        or not _is_int(summary.get("n"))
        or not isinstance(summary.get("t"), int)
    ):
        raise StorageUnavailable(f"corrupt record in {record.log_name}")
    return summary["n"], summary["t"]


def _log_bytes(messages: Sequence[JSONValue], now: int) -> bytes:
    """A whole log holding ``messages`` (their JSON forms), stamped ``now``."""
    return b"".join(
        _records.encode_record({"n": n, "t": now}, message)
        for n, message in enumerate(messages, start=1)
    )


def _messages_from(records: list[JSONValue]) -> tuple[Message, ...]:
    try:
        return tuple(message_from_json(record) for record in records)
    except InvalidArgument as exc:
        raise StorageUnavailable(f"corrupt conversation log: {exc}") from exc


def _encoded(messages: Sequence[Message]) -> list[JSONValue]:
    """Messages in their JSON form, copied: nothing is shared with the caller's objects (G-7)."""
    return copy.deepcopy([message_to_json(message) for message in messages])


class JSONSessionStore(JSONStore, rules.SessionUpdates, rules.SessionQueries):
    """A session store in a directory of JSON files (``SessionStore``).

    Args:
        directory: where the store keeps its files (created on first use). Several store
            objects, in one process or many, may open the same directory at once.
        clock: the source of every time the store stamps (G-6).
        fsync: make each acknowledged write durable against power loss (default). False still
            keeps every operation atomic for readers and for crashes of the process.
        lock_timeout: seconds an operation waits while another store object or process holds
            the directory's lock, then StorageUnavailable with nothing done (G-22); None
            waits as long as it takes.

    Use it as an async context manager, or call :meth:`close` when done.
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
            subdirectories=(_SESSIONS, _MESSAGES),
            sync=fsync,
            lock_timeout=lock_timeout,
            on_prepare=lambda: ensure_session_store_layout(self._dir),
        )
        self._clock = clock
        # What this object read, kept between operations while the directory's change mark
        # of session files is the one it saw (see _refresh).
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._mark: bytes | None = None

    def _now(self) -> int:
        return check_timestamp(self._clock(), what="clock reading")

    # --- files (run holding the lock) ---------------------------------------------------------

    def session_path(self, session_id: str) -> Path:
        """The session file of ``session_id`` (a back door for tests)."""
        return self._dir.path / _SESSIONS / name_for(session_id)

    def log_path(self, session_id: str, generation: int) -> Path:
        """The conversation log of ``session_id`` at ``generation`` (a back door for tests)."""
        return self._dir.path / _MESSAGES / name_for(session_id, str(generation), suffix=".log")

    async def _run(self, operation: Callable[[], T]) -> T:
        """Run ``operation`` holding the lock, with the cache made current first."""

        def locked() -> T:
            self._refresh()
            return operation()

        return await self._dir.run(locked)

    def _refresh(self) -> None:
        """Drop the cache if a session file or log was written (other than by an append)
        since this object last looked: every such change writes a new change mark first."""
        (mark,) = self._dir.change_marks((MARK_SESSION_STORE_FILES,))
        if mark != self._mark:
            self._cache.clear()
            self._mark = mark

    def _changing(self) -> None:
        """Mark, before making it, a change other than an append (see _refresh)."""
        self._cache.clear()
        self._mark = None  # a failure from here on may leave a journal to roll forward
        self._dir.new_change_mark(MARK_SESSION_STORE_FILES)

    def _read(self, session_id: str) -> _Cached:
        """The session file of ``session_id``, from the cache if it is there."""
        entry = self._cache.get(session_id)
        if entry is not None:
            self._cache.move_to_end(session_id)
            return entry
        data = read_file(self.session_path(session_id))
        if data is None:
            raise NotFound(f"no session {session_id!r}")
        record = _record_from(data)
        if record.session.id != session_id:
            raise StorageUnavailable(f"session file of {session_id!r} holds {record.session.id!r}")
        return self._remember(record)

    def _remember(self, record: _Record) -> _Cached:
        entry = self._cache.get(record.session.id)
        if entry is None:
            entry = _Cached(record, self.log_path(record.session.id, record.log))
            self._cache[record.session.id] = entry
            if len(self._cache) > _CACHED_SESSIONS:
                self._cache.popitem(last=False)
        return entry

    def _tail(self, entry: _Cached, fd: int, size: int) -> _Tail:
        """The end of the session's log (open as ``fd``, ``size`` bytes), checked against its
        session file; from the cache when the log has not grown since it was read."""
        if entry.tail is not None and entry.tail.end == size:
            return entry.tail
        entry.tail = None
        last, end = _records.read_tail(fd, size, entry.log.name)
        n, t = (0, 0) if last is None else _position(last)
        record = entry.record
        if n < record.count:
            raise StorageUnavailable(
                f"the log of session {record.session.id!r} holds {n} messages, its session "
                f"file counts {record.count}"
            )
        entry.tail = _Tail(end, n, t)
        return entry.tail

    def _session(self, entry: _Cached) -> Session:
        """The session as it is now: its session file and the last record of its log."""
        record = entry.record
        fd = _records.open_log(entry.log)
        if fd is None:
            tail = _Tail(0, 0, 0)
            if record.count:
                raise StorageUnavailable(f"the log of session {record.session.id!r} is missing")
        else:
            try:
                tail = self._tail(entry, fd, os.fstat(fd).st_size)
            finally:
                os.close(fd)
        updated_at = tail.t if tail.n > record.count else record.session.updated_at
        # A copy: the cached session must not share dicts with the caller's (G-7).
        return replace(copy.deepcopy(record.session), message_count=tail.n, updated_at=updated_at)

    def _lines(self, entry: _Cached) -> list[JSONValue]:
        """The JSON forms of the session's messages, in order, checked against its summaries."""
        record, path = entry.record, entry.log
        fd = _records.open_log(path)
        if fd is None:
            found: list[_records.Record] = []
        else:
            try:
                found, _ = _records.read_forward(fd, 0, os.fstat(fd).st_size, path.name)
            finally:
                os.close(fd)
        # Each record numbers itself; the last one must number them all.
        if found and _position(found[-1])[0] != len(found):
            raise StorageUnavailable(f"corrupt {path.name}: its last record is out of place")
        if len(found) < record.count:
            raise StorageUnavailable(
                f"the log of session {record.session.id!r} holds {len(found)} messages, its "
                f"session file counts {record.count}"
            )
        return [line.payload() for line in found]

    def _conversation(self, entry: _Cached) -> tuple[Message, ...]:
        return _messages_from(self._lines(entry))

    def _all(self) -> Iterator[_Cached]:
        with os.scandir(self._dir.path / _SESSIONS) as entries:
            names = sorted(
                entry.name
                for entry in entries
                if entry.name.endswith(".json") and not entry.name.startswith(TEMP_PREFIX)
            )
        for name in names:
            data = read_file(self._dir.path / _SESSIONS / name)
            if data is not None:
                yield self._remember(_record_from(data))

    def _new_id(self, transaction: Transaction, now: int) -> str:
        """Reserve the next id of today in ``transaction`` (SS-4): the counter only grows."""
        path = self._dir.path / _IDS
        data = read_file(path)
        days: dict[str, Any] = {}
        if data is not None:
            obj = decode_json(data, what=_IDS)
            if not isinstance(obj, dict) or not isinstance(obj.get("days"), dict):
                raise StorageUnavailable(f"corrupt {_IDS}")
            days = obj["days"]
        day = rules.day_of(now)
        last = days.get(day, 0)
        if not _is_int(last):
            raise StorageUnavailable(f"corrupt {_IDS}")
        days[day] = last + 1
        transaction.replace(path, encode_json({"days": days}))
        return rules.format_session_id(day, last + 1)

    def _put(self, transaction: Transaction, record: _Record) -> None:
        transaction.replace(self.session_path(record.session.id), record.to_bytes())

    def _create(
        self, build: Callable[[str], Session], messages: list[JSONValue], now: int
    ) -> Session:
        """Create the session ``build(new id)`` with ``messages`` in one transaction."""
        transaction = self._dir.transaction()
        session = replace(build(self._new_id(transaction, now)), message_count=len(messages))
        if messages:
            transaction.replace(self.log_path(session.id, 0), _log_bytes(messages, now))
        self._put(transaction, _Record(session, 0, len(messages)))
        self._changing()
        transaction.commit()
        return session

    def _rewrite(self, entry: _Cached, messages: list[JSONValue], now: int) -> None:
        """Give the session a new log holding ``messages`` and set updated_at, atomically."""
        record = entry.record
        self._changing()
        old = self.log_path(record.session.id, record.log)
        new = self.log_path(record.session.id, record.log + 1)
        session = replace(record.session, updated_at=now, message_count=len(messages))
        # A new generation's log only appears in a committed transaction, so none can be
        # there yet; one that is would be debris (unreferenced).
        remove_file(new, sync=self._dir.sync)
        transaction = self._dir.transaction()
        if messages:
            transaction.replace(new, _log_bytes(messages, now))
        self._put(transaction, _Record(session, record.log + 1, len(messages)))
        transaction.remove(old)
        transaction.commit()

    async def _update_fields(self, session_id: str, fields: Mapping[str, Any]) -> None:
        """Set ``fields`` and ``updated_at = now`` in one locked rewrite (SS-11 .. SS-14): the
        write of the partial updates (:class:`~..session_store_rules.SessionUpdates`)."""
        fields = copy.deepcopy(dict(fields))  # G-7: not the caller's dicts
        now = self._now()

        def update() -> None:
            entry = self._read(session_id)
            session = rules.with_fields(self._session(entry), fields, now)
            updated = _Record(session, entry.record.log, session.message_count)
            self._changing()
            write_atomic(self.session_path(session_id), updated.to_bytes(), sync=self._dir.sync)

        await self._run(update)

    # --- sessions (SS-3 .. SS-7, SS-16) -------------------------------------------------------

    async def create_session(
        self, working_dir: str, name: str, session_type: SessionType = SessionType.USER
    ) -> Session:
        """Create an empty session with a new id (SS-3, SS-4)."""
        working_dir, name, session_type = rules.check_new_session(working_dir, name, session_type)
        now = self._now()

        def create() -> Session:
            return self._create(
                lambda new_id: rules.new_session(new_id, working_dir, name, session_type, now),
                [],
                now,
            )

        return await self._run(create)

    async def get_session(self, session_id: str, include_messages: bool = False) -> Session:
        """The session; the log is read only when messages are asked for (SS-5)."""
        rules.check_session_id(session_id)
        rules.check_include_messages(include_messages)

        def get() -> Session:
            entry = self._read(session_id)
            session = self._session(entry)
            if not include_messages:
                return session
            return replace(session, conversation=self._conversation(entry))

        return await self._run(get)

    async def _list(self, types: frozenset[SessionType]) -> list[Session]:
        """The listings' query (:class:`~..session_store_rules.SessionQueries`): every session
        file, and each log's last record, under one lock (SS-6)."""

        def list_all() -> list[Session]:
            chosen = [
                self._session(e) for e in self._all() if e.record.session.session_type in types
            ]
            return sorted(chosen, key=lambda s: rules.list_order(s.id, s.updated_at))

        return await self._run(list_all)

    async def delete_session(self, session_id: str) -> None:
        """Remove the session file and its log together (SS-7)."""
        rules.check_session_id(session_id)

        def delete() -> None:
            entry = self._read(session_id)
            transaction = self._dir.transaction()
            transaction.remove(self.session_path(session_id))
            transaction.remove(entry.log)
            self._changing()
            transaction.commit()

        await self._run(delete)

    async def get_insights(self) -> SessionInsights:
        """Session count and token total over every session (SS-16)."""
        return await self._run(lambda: rules.insights(e.record.session for e in self._all()))

    # --- conversation (SS-8 .. SS-10) ---------------------------------------------------------

    async def add_message(self, session_id: str, message: Message) -> None:
        """Append one record to the log: one write and one fsync (SS-8)."""
        rules.check_session_id(session_id)
        # Encoded now: a copy, so later changes to the caller's message are not stored (G-7).
        (checked,) = rules.check_conversation([message])
        payload = encode_json(message_to_json(checked))
        now = self._now()

        def add() -> None:
            entry = self._read(session_id)
            # The log's descriptor is the directory's, kept open between appends.
            opened = self._dir.open_file(entry.log)
            created = opened is None
            if opened is None:  # the first message creates the log
                os.close(_records.open_for_append(entry.log)[0])
                opened = self._dir.open_file(entry.log)
                if opened is None:
                    raise StorageUnavailable(f"the log of session {session_id!r} vanished")
            fd, size = opened
            tail = self._tail(entry, fd, size)
            data = _records.record_line({"n": tail.n + 1, "t": now}, payload)
            entry.tail = None  # unknown until the append is whole
            _records.append_at(fd, tail.end, size, data, sync=self._dir.sync)
            if created and self._dir.sync:
                fsync_directory(entry.log.parent)
            entry.tail = _Tail(tail.end + len(data), tail.n + 1, now)

        await self._run(add)

    async def replace_conversation(self, session_id: str, conversation: Sequence[Message]) -> None:
        """Replace the conversation with a new log, atomically (SS-9)."""
        rules.check_session_id(session_id)
        lines = _encoded(rules.check_conversation(conversation))
        now = self._now()
        await self._run(lambda: self._rewrite(self._read(session_id), lines, now))

    async def truncate_conversation(self, session_id: str, timestamp: int) -> None:
        """Keep the messages created before ``timestamp`` or undated (SS-10)."""
        rules.check_session_id(session_id)
        check_timestamp(timestamp, what="timestamp")
        now = self._now()

        def truncate() -> None:
            entry = self._read(session_id)
            lines = self._lines(entry)
            kept = [
                line
                for line, m in zip(lines, _messages_from(lines), strict=True)
                if m.created_at is None or m.created_at < timestamp
            ]
            self._rewrite(entry, kept, now)

        await self._run(truncate)

    # --- export, import, copy (SS-17 .. SS-19) ------------------------------------------------

    async def export_session(self, session_id: str) -> str:
        """The session and its conversation as a version-1 document (SS-17)."""
        rules.check_session_id(session_id)

        def export() -> str:
            entry = self._read(session_id)
            return rules.export_document(self._session(entry), self._conversation(entry))

        return await self._run(export)

    async def import_session(self, document: str) -> Session:
        """Create a new session from an export document (SS-18)."""
        template, conversation = rules.parse_export(document)
        lines = _encoded(conversation)
        now = self._now()

        def create() -> Session:
            return self._create(
                lambda new_id: rules.imported_session(template, new_id, now), lines, now
            )

        return await self._run(create)

    async def copy_session(self, session_id: str, new_name: str) -> Session:
        """A new session with what SS-19 lists; the source is read and copied under one lock."""
        rules.check_session_id(session_id)
        name = rules.check_name(new_name, what="new_name")
        now = self._now()

        def copy_it() -> Session:
            entry = self._read(session_id)
            lines = self._lines(entry)
            source = entry.record.session
            return self._create(
                lambda new_id: rules.copied_session(source, new_id, name, now), lines, now
            )

        return await self._run(copy_it)

    # --- search (SS-20 .. SS-22) --------------------------------------------------------------

    async def _search(self, request: rules.SearchRequest) -> list[ChatHistoryMatch]:
        """The search's query (:class:`~..session_store_rules.SessionQueries`): a scan of every
        log under one lock (SS-20 .. SS-22)."""

        def candidates() -> Iterator[rules.Candidate]:
            for entry in self._all():
                session = entry.record.session
                if session.id == request.exclude_session_id:
                    continue
                for position, message in enumerate(self._conversation(entry)):
                    yield rules.Candidate(session.id, session.name, position, message)

        return await self._run(lambda: rules.select_matches(request, candidates()))


def open_store(ctx: StoreContext) -> AbstractAsyncContextManager[JSONSessionStore]:
    """The kit's opener: the directory ``ctx.root / ctx.namespace`` (an async CM)."""
    return JSONSessionStore(ctx.root / ctx.namespace, clock=ctx.clock)
