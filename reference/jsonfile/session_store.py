"""The JSON-file session store (spec ``session_store.md``).

One directory per store (:class:`~._files.StoreDirectory`), laid out as::

    sessions/<name>.json          {"session": {...}, "message_count": n, "log": g}
    messages/<log name>.jsonl     the conversation: one message_to_json per line, in order
    ids.json                      {"days": {"YYYYMMDD": last number issued}}

``<name>`` is :func:`~._files.name_for` of the session id and ``<log name>`` that of (session
id, generation ``g``), so any id is stored in isolation and never names a path outside the
directory (G-2); each session file keeps its id inside. ``session`` is the SS-17 JSON form.

The conversation is an append-only log: ``add_message`` appends one line to it and rewrites the
small session file (``updated_at``, ``message_count``), both in one
:class:`~._files.Transaction`, so an append costs the same whatever the conversation's length
(SS-8) and a reader sees both changes or neither. Operations that rewrite the conversation
(replace, truncate) and those that create one (import, copy) write a log of a new generation
and switch the session file to it in one transaction; the old log is removed with it. So a
crash never leaves a session pointing at half a conversation (G-17). ``get_session`` without
messages reads the session file only (SS-5).

Every operation holds the directory lock; arguments are validated and serialised before it is
taken (G-5, G-7, SS-15).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from agentstores.conformance.backend import StoreContext
from agentstores.spec.errors import InvalidArgument, NotFound, StorageUnavailable
from agentstores.spec.messages import Message, message_from_json, message_to_json
from agentstores.spec.session_store import (
    ChatHistoryMatch,
    ExtensionData,
    ModelConfig,
    Recipe,
    Session,
    SessionInsights,
    SessionType,
    TokenStatsUpdate,
)
from agentstores.spec.values import (
    Clock,
    JSONValue,
    check_timestamp,
    system_clock,
)

from .. import session_store_rules as rules
from ._files import (
    DEFAULT_LOCK_TIMEOUT,
    TEMP_PREFIX,
    JsonLinesLog,
    StoreDirectory,
    Transaction,
    decode_json,
    encode_json,
    name_for,
    read_file,
    remove_file,
)

__all__ = ["JSONSessionStore", "open_store"]

T = TypeVar("T")

_SESSIONS = "sessions"
_MESSAGES = "messages"
_IDS = "ids.json"


@dataclass(frozen=True)
class _Record:
    """A session file: the session (no conversation), its message count and log generation."""

    session: Session
    log: int

    def to_bytes(self) -> bytes:
        return encode_json(
            {
                "session": rules.session_to_json(self.session),
                "message_count": self.session.message_count,
                "log": self.log,
            }
        )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _record_from(data: bytes) -> _Record:
    obj = decode_json(data, what="session file")
    if (
        not isinstance(obj, dict)
        or not _is_int(obj.get("message_count"))
        or not _is_int(obj.get("log"))
    ):
        raise StorageUnavailable("corrupt session file")
    try:
        session = rules.session_from_json(obj.get("session"), message_count=obj["message_count"])
    except InvalidArgument as exc:
        raise StorageUnavailable(f"corrupt session file: {exc}") from exc
    return _Record(session, obj["log"])


def _messages_from(records: list[JSONValue]) -> tuple[Message, ...]:
    try:
        return tuple(message_from_json(record) for record in records)
    except InvalidArgument as exc:
        raise StorageUnavailable(f"corrupt conversation log: {exc}") from exc


def _encoded(messages: Sequence[Message]) -> list[JSONValue]:
    """Messages in their JSON form, copied: nothing is shared with the caller's objects (G-7)."""
    return copy.deepcopy([message_to_json(message) for message in messages])


class JSONSessionStore:
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
        )
        self._clock = clock

    @property
    def directory(self) -> Path:
        """The store's directory (its layout is in this module's docstring)."""
        return self._dir.path

    async def __aenter__(self) -> JSONSessionStore:
        # Create and recover the directory now, so that a bad path fails at open.
        await self._dir.run(lambda: None)
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

    def _now(self) -> int:
        return check_timestamp(self._clock(), what="clock reading")

    # --- files (run holding the lock) ---------------------------------------------------------

    def session_path(self, session_id: str) -> Path:
        """The session file of ``session_id`` (a back door for tests)."""
        return self._dir.path / _SESSIONS / name_for(session_id)

    def log(self, session_id: str, generation: int) -> JsonLinesLog:
        """The conversation log of ``session_id`` at ``generation`` (a back door for tests)."""
        name = name_for(session_id, str(generation), suffix=".jsonl")
        return self._dir.log(f"{_MESSAGES}/{name}")

    def _read(self, session_id: str) -> _Record:
        data = read_file(self.session_path(session_id))
        if data is None:
            raise NotFound(f"no session {session_id!r}")
        record = _record_from(data)
        if record.session.id != session_id:
            raise StorageUnavailable(f"session file of {session_id!r} holds {record.session.id!r}")
        return record

    def _conversation(self, record: _Record) -> tuple[Message, ...]:
        messages = _messages_from(self.log(record.session.id, record.log).read().records)
        if len(messages) != record.session.message_count:
            raise StorageUnavailable(
                f"the log of session {record.session.id!r} holds {len(messages)} messages, "
                f"its session file counts {record.session.message_count}"
            )
        return messages

    def _all(self) -> Iterator[_Record]:
        with os.scandir(self._dir.path / _SESSIONS) as entries:
            names = sorted(
                entry.name
                for entry in entries
                if entry.name.endswith(".json") and not entry.name.startswith(TEMP_PREFIX)
            )
        for name in names:
            data = read_file(self._dir.path / _SESSIONS / name)
            if data is not None:
                yield _record_from(data)

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
        transaction.append(self.log(session.id, 0), messages)
        self._put(transaction, _Record(session, 0))
        transaction.commit()
        return session

    def _rewrite(self, record: _Record, messages: list[JSONValue], now: int) -> None:
        """Give the session a new log holding ``messages`` and set updated_at, atomically."""
        old = self.log(record.session.id, record.log)
        new = self.log(record.session.id, record.log + 1)
        session = replace(record.session, updated_at=now, message_count=len(messages))
        # A new generation's log only appears in a committed transaction, so none can be
        # there yet; one that is would be debris (unreferenced), and appending to it would
        # keep its lines.
        remove_file(new.path, sync=self._dir.sync)
        transaction = self._dir.transaction()
        transaction.append(new, messages)
        self._put(transaction, _Record(session, record.log + 1))
        transaction.remove(old.path)
        transaction.commit()

    async def _update(self, session_id: str, fields: Mapping[str, Any]) -> None:
        """Set ``fields`` and ``updated_at = now`` (SS-11 .. SS-14)."""
        fields = copy.deepcopy(dict(fields))  # G-7: not the caller's dicts
        now = self._now()

        def update() -> None:
            record = self._read(session_id)
            session = rules.with_fields(record.session, fields, now)
            transaction = self._dir.transaction()
            self._put(transaction, _Record(session, record.log))
            transaction.commit()

        await self._dir.run(update)

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

        return await self._dir.run(create)

    async def get_session(self, session_id: str, include_messages: bool = False) -> Session:
        """The session; the log is read only when messages are asked for (SS-5)."""
        rules.check_session_id(session_id)
        rules.check_include_messages(include_messages)

        def get() -> Session:
            record = self._read(session_id)
            if not include_messages:
                return record.session
            return replace(record.session, conversation=self._conversation(record))

        return await self._dir.run(get)

    async def list_sessions(self) -> list[Session]:
        """User and scheduled sessions, most recently updated first (SS-6)."""
        return await self._list(frozenset(rules.DEFAULT_LIST_TYPES))

    async def list_sessions_by_types(self, types: Sequence[SessionType]) -> list[Session]:
        """Sessions of the given types, most recently updated first, then by id (SS-6)."""
        return await self._list(rules.check_session_types(types))

    async def _list(self, types: frozenset[SessionType]) -> list[Session]:
        if not types:
            return []

        def list_all() -> list[Session]:
            chosen = [r.session for r in self._all() if r.session.session_type in types]
            return sorted(chosen, key=lambda s: rules.list_order(s.id, s.updated_at))

        return await self._dir.run(list_all)

    async def delete_session(self, session_id: str) -> None:
        """Remove the session file and its log together (SS-7)."""
        rules.check_session_id(session_id)

        def delete() -> None:
            record = self._read(session_id)
            transaction = self._dir.transaction()
            transaction.remove(self.session_path(session_id))
            transaction.remove(self.log(session_id, record.log).path)
            transaction.commit()

        await self._dir.run(delete)

    async def get_insights(self) -> SessionInsights:
        """Session count and token total over every session (SS-16)."""
        return await self._dir.run(lambda: rules.insights(r.session for r in self._all()))

    # --- conversation (SS-8 .. SS-10) ---------------------------------------------------------

    async def add_message(self, session_id: str, message: Message) -> None:
        """Append one line to the log and update the session file, together (SS-8)."""
        rules.check_session_id(session_id)
        line = _encoded(rules.check_conversation([message]))
        now = self._now()

        def add() -> None:
            record = self._read(session_id)
            session = replace(
                record.session, updated_at=now, message_count=record.session.message_count + 1
            )
            transaction = self._dir.transaction()
            transaction.append(self.log(session_id, record.log), line)
            self._put(transaction, _Record(session, record.log))
            transaction.commit()

        await self._dir.run(add)

    async def replace_conversation(self, session_id: str, conversation: Sequence[Message]) -> None:
        """Replace the conversation with a new log, atomically (SS-9)."""
        rules.check_session_id(session_id)
        lines = _encoded(rules.check_conversation(conversation))
        now = self._now()
        await self._dir.run(lambda: self._rewrite(self._read(session_id), lines, now))

    async def truncate_conversation(self, session_id: str, timestamp: int) -> None:
        """Keep the messages created before ``timestamp`` or undated (SS-10)."""
        rules.check_session_id(session_id)
        check_timestamp(timestamp, what="timestamp")
        now = self._now()

        def truncate() -> None:
            record = self._read(session_id)
            kept = [
                m
                for m in self._conversation(record)
                if m.created_at is None or m.created_at < timestamp
            ]
            self._rewrite(record, [message_to_json(m) for m in kept], now)

        await self._dir.run(truncate)

    # --- updates (SS-11 .. SS-13) -------------------------------------------------------------

    async def update_session_name(self, session_id: str, name: str, user_set: bool) -> None:
        """Set the name and who set it (SS-11)."""
        rules.check_session_id(session_id)
        fields = rules.session_fields(
            rules.check_name(name), rules.check_bool(user_set, what="user_set")
        )
        await self._update(session_id, fields)

    async def update_extension_data(self, session_id: str, extension_data: ExtensionData) -> None:
        """Replace the extension data (SS-11)."""
        rules.check_session_id(session_id)
        data = rules.check_extension_data(extension_data)
        await self._update(session_id, {"extension_data": data})

    async def update_token_stats(self, session_id: str, stats: TokenStatsUpdate) -> None:
        """Set the counters that ``stats`` gives, leave the others (SS-12)."""
        rules.check_session_id(session_id)
        await self._update(session_id, rules.token_fields(rules.check_token_stats(stats)))

    async def update_provider_config(
        self, session_id: str, provider_name: str | None, model_config: ModelConfig | None
    ) -> None:
        """Set provider name and/or model config; None leaves a field unchanged (SS-13)."""
        rules.check_session_id(session_id)
        rules.check_provider_config(provider_name, model_config)
        await self._update(session_id, rules.provider_fields(provider_name, model_config))

    async def update_recipe(
        self,
        session_id: str,
        recipe: Recipe | None,
        user_recipe_values: Mapping[str, str] | None,
    ) -> None:
        """Set recipe and/or its user values; None leaves a field unchanged (SS-13)."""
        rules.check_session_id(session_id)
        rules.check_recipe(recipe, user_recipe_values)
        await self._update(session_id, rules.recipe_fields(recipe, user_recipe_values))

    # --- export, import, copy (SS-17 .. SS-19) ------------------------------------------------

    async def export_session(self, session_id: str) -> str:
        """The session and its conversation as a version-1 document (SS-17)."""
        rules.check_session_id(session_id)

        def export() -> str:
            record = self._read(session_id)
            return rules.export_document(record.session, self._conversation(record))

        return await self._dir.run(export)

    async def import_session(self, document: str) -> Session:
        """Create a new session from an export document (SS-18)."""
        template, conversation = rules.parse_export(document)
        lines = _encoded(conversation)
        now = self._now()

        def create() -> Session:
            return self._create(
                lambda new_id: rules.imported_session(template, new_id, now), lines, now
            )

        return await self._dir.run(create)

    async def copy_session(self, session_id: str, new_name: str) -> Session:
        """A new session with what SS-19 lists; the source is read and copied under one lock."""
        rules.check_session_id(session_id)
        name = rules.check_name(new_name, what="new_name")
        now = self._now()

        def copy_it() -> Session:
            record = self._read(session_id)
            lines = self.log(session_id, record.log).read().records
            if len(lines) != record.session.message_count:
                raise StorageUnavailable(f"the log of session {session_id!r} is incomplete")
            return self._create(
                lambda new_id: rules.copied_session(record.session, new_id, name, now), lines, now
            )

        return await self._dir.run(copy_it)

    # --- search (SS-20 .. SS-22) --------------------------------------------------------------

    async def search_chat_history(
        self,
        query: str,
        limit: int | None = None,
        after_date: int | None = None,
        before_date: int | None = None,
        exclude_session_id: str | None = None,
    ) -> list[ChatHistoryMatch]:
        """Messages matching ``query``, newest first (SS-20 .. SS-22): a scan of every log."""
        request = rules.check_search(query, limit, after_date, before_date, exclude_session_id)
        if request.empty:
            return []

        def candidates() -> Iterator[rules.Candidate]:
            for record in self._all():
                session = record.session
                if session.id == request.exclude_session_id:
                    continue
                for position, message in enumerate(self._conversation(record)):
                    yield rules.Candidate(session.id, session.name, position, message)

        return await self._dir.run(lambda: rules.select_matches(request, candidates()))


def open_store(ctx: StoreContext) -> AbstractAsyncContextManager[JSONSessionStore]:
    """The kit's opener: the directory ``ctx.root / ctx.namespace`` (an async CM)."""
    return JSONSessionStore(ctx.root / ctx.namespace, clock=ctx.clock)
