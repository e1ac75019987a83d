"""The JSON-file state-session store (spec ``state_session.md``).

One directory per store (:class:`~._files.StoreDirectory`), laid out as::

    sessions/<name>.json   {"user_id": U, "session_id": S, "modules": {name: state, ...}}
    users/<name>.jsonl     the user's index: {"session_id": S, "expires_at": ms or null}
                           when S is saved (or its deadline moves), {"session_id": S,
                           "deleted": true} when S is deleted; the last line per S wins

``<name>`` is :func:`~._files.name_for` of ``(user, session)`` or of the user: never
``{user}_{session}.json``. Any pair of ids gets its own file, no id names a path outside the
directory, and case-insensitive file systems cannot merge two names (ST-11); each file keeps
its ids inside and they are checked on reading.

The user's index is the truth about which sessions exist and when they expire; the session
file holds the module states. A save writes the file and, when the session is new or its
deadline moves, appends to the index, both in one :class:`~._files.Transaction` (atomic, also
across a crash). Files are replaced whole through a temp file and a rename, so no reader,
in this process or another, ever sees a half-written state (ST-7). Every operation holds the
directory lock. Each store object keeps the indexes it has read in memory and reads only the
lines appended since (by other objects or processes) on every operation; an index is compacted
when its dead lines outnumber its live ones, and expired sessions' files are removed then.

Deadlines come from the store's clock (G-6): a store with a TTL appends ``now + ttl`` on every
save and on every load that finds the session (ST-16, an O(1) append: the state is not
rewritten); a store without one keeps the deadline it finds (ST-17).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentstores.conformance.backend import StoreContext
from agentstores.spec.errors import StorageUnavailable
from agentstores.spec.state_session import DEFAULT_USER_ID, StateModule
from agentstores.spec.values import Clock, JSONObject, dump_json, system_clock

from .. import state_session_rules as rules
from ._files import (
    DEFAULT_LOCK_TIMEOUT,
    JsonLinesLog,
    LogPosition,
    StoreDirectory,
    decode_json,
    name_for,
    read_file,
)
from ._store import JSONStore

__all__ = ["FAMILY_DIRECTORY", "JSONStateSessionStore", "open_store"]

#: The sub-directory of a kit context's directory (``root / namespace``) for this family.
FAMILY_DIRECTORY = "state_session"

_SESSIONS = "sessions"
_USERS = "users"
#: Compact a user's index when it has more than twice as many lines as sessions, plus this.
_COMPACTION_SLACK = 64
#: How many users' indexes one store object keeps in memory.
_CACHED_USERS = 1024


@dataclass
class _UserIndex:
    """What a store object knows of one user's index log."""

    position: LogPosition | None = None
    deadlines: dict[str, int | None] = field(default_factory=dict)
    lines: int = 0

    def live(self, session_id: str, now: int) -> tuple[bool, int | None]:
        """``(exists, deadline)``; an expired session does not exist (ST-15)."""
        if session_id not in self.deadlines:
            return False, None
        deadline = self.deadlines[session_id]
        if deadline is not None and deadline <= now:
            return False, None
        return True, deadline


class JSONStateSessionStore(JSONStore):
    """A :class:`~agentstores.spec.state_session.StateSessionStore` in a directory of files.

    Args:
        directory: where the store keeps its files (created on first use). Several store
            objects, in one process or many, may open the same directory at once; stores in
            different directories never see each other's sessions (ST-12).
        ttl_seconds: the time to live of sessions this store saves or loads (ST-15 .. ST-17),
            a positive int; None (default) for none. InvalidArgument otherwise (ST-18).
        clock: the source of deadlines (G-6); integer ms since the epoch.
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
        ttl_seconds: int | None = None,
        clock: Clock = system_clock,
        fsync: bool = True,
        lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT,
    ) -> None:
        self._ttl_ms = rules.ttl_milliseconds(ttl_seconds)
        self._dir = StoreDirectory(
            Path(directory),
            subdirectories=(_SESSIONS, _USERS),
            sync=fsync,
            lock_timeout=lock_timeout,
        )
        self._clock = clock
        self._indexes: OrderedDict[str, _UserIndex] = OrderedDict()

    def session_path(self, session_id: str, user_id: str) -> Path:
        """The file of a session's states: a back door for tests (layout in the module doc)."""
        return self._dir.subdirectory(_SESSIONS) / name_for(user_id, session_id)

    def _log(self, user_id: str) -> JsonLinesLog:
        return self._dir.log(f"{_USERS}/{name_for(user_id, suffix='.jsonl')}")

    # --- indexes (run holding the lock) ----------------------------------------------------

    def _index(self, user_id: str) -> _UserIndex:
        """The user's index, brought up to date with the lines appended since last time."""
        index = self._indexes.pop(user_id, None) or _UserIndex()
        self._indexes[user_id] = index  # most recently used last
        if len(self._indexes) > _CACHED_USERS:
            self._indexes.popitem(last=False)
        read = self._log(user_id).read(index.position)
        if read.restarted:
            index.deadlines.clear()
            index.lines = 0
        for record in read.records:
            session = record.get("session_id") if isinstance(record, dict) else None
            if not isinstance(session, str):
                raise StorageUnavailable(f"damaged index line of user {user_id!r}: {record!r}")
            if record.get("deleted") is True:
                index.deadlines.pop(session, None)
            else:
                deadline = record.get("expires_at")
                if deadline is not None and (
                    isinstance(deadline, bool) or not isinstance(deadline, int)
                ):
                    raise StorageUnavailable(f"damaged deadline in the index of {user_id!r}")
                index.deadlines[session] = deadline
        index.lines += len(read.records)
        index.position = read.position
        return index

    def _compact(self, user_id: str, index: _UserIndex) -> None:
        """Rewrite the user's index with one line per live session; remove expired files."""
        if index.lines <= 2 * len(index.deadlines) + _COMPACTION_SLACK:
            return
        now = self._clock()
        expired = [s for s in index.deadlines if not index.live(s, now)[0]]
        live = [
            {"session_id": session, "expires_at": deadline}
            for session, deadline in index.deadlines.items()
            if session not in expired
        ]
        # The index first: a crash before the files go leaves only unreachable files behind.
        self._log(user_id).rewrite(live)
        transaction = self._dir.transaction()
        for session in expired:
            transaction.remove(self.session_path(session, user_id))
        transaction.commit()
        self._index(user_id)

    def _read_session(self, session_id: str, user_id: str) -> dict[str, Any]:
        """The module states of a session the index lists."""
        data = read_file(self.session_path(session_id, user_id))
        if data is None:
            raise StorageUnavailable(f"the file of session {session_id!r} is missing")
        document = decode_json(data, what=f"session {session_id!r}")
        if (
            not isinstance(document, dict)
            or document.get("user_id") != user_id
            or document.get("session_id") != session_id
            or not isinstance(document.get("modules"), dict)
        ):
            raise StorageUnavailable(f"the file of session {session_id!r} is damaged")
        modules: dict[str, Any] = document["modules"]
        return modules

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
        # The module states are already JSON text: splice them in rather than re-encode.
        modules = ",".join(f"{dump_json(name)}:{text}" for name, text in texts.items())
        header = f'{{"user_id":{dump_json(user)},"session_id":{dump_json(session)}'
        body = f'{header},"modules":{{{modules}}}}}'.encode()

        def save() -> None:
            index = self._index(user)
            now = self._clock()
            exists, deadline = index.live(session, now)
            new_deadline = deadline if self._ttl_ms is None else now + self._ttl_ms
            transaction = self._dir.transaction()
            transaction.replace(self.session_path(session, user), body)
            if not exists or new_deadline != deadline:
                # ST-16 (a TTL slides) and ST-17 (no TTL: the deadline found is kept).
                record = {"session_id": session, "expires_at": new_deadline}
                transaction.append(self._log(user), [record])
            transaction.commit()
            self._compact(user, self._index(user))

        await self._dir.run(save)

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

        def load() -> dict[str, JSONObject] | None:
            index = self._index(user)
            now = self._clock()
            if not index.live(session, now)[0]:
                return None
            modules = self._read_session(session, user)
            if self._ttl_ms is not None:
                self._log(user).append([{"session_id": session, "expires_at": now + self._ttl_ms}])
                self._compact(user, self._index(user))
            states: dict[str, JSONObject] = {}
            for name in names:
                if name in modules:
                    if not isinstance(modules[name], dict):
                        raise StorageUnavailable(f"damaged state of module {name!r}")
                    states[name] = modules[name]
            return states

        states = await self._dir.run(load)
        if states is None:
            if allow_not_exist:
                return
            raise rules.missing(session, user)
        # Freshly decoded for this call, so the modules own them (G-7).
        rules.restore(state_modules_mapping, states)

    async def delete_session_state(self, session_id: str, user_id: str = DEFAULT_USER_ID) -> bool:
        """Delete the session; whether it existed (ST-8)."""
        session, user = rules.check_session(session_id, user_id)

        def delete() -> bool:
            index = self._index(user)
            if session not in index.deadlines:
                return False
            exists, _deadline = index.live(session, self._clock())
            transaction = self._dir.transaction()
            transaction.remove(self.session_path(session, user))
            transaction.append(self._log(user), [{"session_id": session, "deleted": True}])
            transaction.commit()
            self._compact(user, self._index(user))
            return exists

        return await self._dir.run(delete)

    async def list_sessions(
        self,
        user_id: str = DEFAULT_USER_ID,
        *,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[str]:
        """The user's live session ids in code-point order, after ``after`` (ST-9, ST-10)."""
        user, after_id, count = rules.check_list(user_id, after, limit)

        def select() -> list[str]:
            index = self._index(user)
            now = self._clock()
            ids = sorted(
                session
                for session in index.deadlines
                if index.live(session, now)[0] and (after_id is None or session > after_id)
            )
            return ids if count is None else ids[:count]

        return await self._dir.run(select)


def open_store(ctx: StoreContext) -> AbstractAsyncContextManager[JSONStateSessionStore]:
    """The kit's opener: the directory ``ctx.root / ctx.namespace / "state_session"``, and the
    TTL of the context option ``ttl_seconds`` (an async CM)."""
    return JSONStateSessionStore(
        ctx.root / ctx.namespace / FAMILY_DIRECTORY,
        ttl_seconds=ctx.options.get(rules.TTL_OPTION),
        clock=ctx.clock,
    )
