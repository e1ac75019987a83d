"""Making the engines under the reference stores fail on purpose, at a chosen call.

A :class:`FaultSwitch` counts the engine calls a store makes while it is armed and fails the
``at``-th one (``persistent``: that one and every later one, as a disk or server that stays
gone). Each engine has a context manager that installs the switch for as long as it is entered:

* :func:`json_faults`: the ``os`` calls of the JSON stores' worker threads (``open``,
  ``write``, ``pwrite``, ``fsync``, ``ftruncate``, ``replace``, ``unlink``) raise
  ``OSError(EIO)``: a disk that fails part-way through a write.
* :func:`sqlite_faults`: every ``execute``/``executemany`` of the SQLite stores' connections
  (``COMMIT`` included) raises ``sqlite3.OperationalError("disk I/O error")`` before it runs.
* :func:`redis_faults`: a request (``mode="request"``) or its reply (``mode="reply"``) is lost
  with the connection, as when the network or the server goes away mid-call. A lost reply
  means the server *did* run the command: the caller cannot know, which is why G-11 allows
  either outcome but never half of one.

Only calls made by the stores are counted (JSON and SQLite by worker-thread name; Redis
through its connections, which only the stores use while a switch is armed).
"""

from __future__ import annotations

import errno
import importlib
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from typing import Any, Literal

from agentstores.conformance.backend import Family, StoreContext

__all__ = [
    "FaultSwitch",
    "RedisMode",
    "json_faults",
    "open_json",
    "open_redis",
    "open_sqlite",
    "redis_faults",
    "sqlite_faults",
    "store_class",
]

RedisMode = Literal["request", "reply"]

_JSON_CALLS = ("open", "write", "pwrite", "fsync", "ftruncate", "replace", "unlink")


class FaultSwitch:
    """Counts engine calls while armed and says which must fail (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed = False
        self.at = 0
        self.persistent = False
        self.calls = 0
        self.fired = False

    def arm(self, at: int, *, persistent: bool = False) -> None:
        """Fail the ``at``-th call from now (1-based); with ``persistent``, every later one too."""
        with self._lock:
            self._armed, self.at, self.persistent = True, at, persistent
            self.calls, self.fired = 0, False

    def disarm(self) -> None:
        """Let every call through again (the engine is back)."""
        with self._lock:
            self._armed = False

    def hit(self) -> bool:
        """Count one engine call; True if it must fail."""
        with self._lock:
            if not self._armed:
                return False
            self.calls += 1
            fail = self.calls == self.at or (self.persistent and self.calls > self.at)
            self.fired = self.fired or fail
            return fail


def _in_thread(prefix: str) -> bool:
    return threading.current_thread().name.startswith(prefix)


@contextmanager
def json_faults(switch: FaultSwitch) -> Iterator[None]:
    """While entered, the JSON stores' file-system calls consult ``switch``."""
    originals: dict[str, Callable[..., Any]] = {name: getattr(os, name) for name in _JSON_CALLS}

    def wrap(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if _in_thread("agentstores-json") and switch.hit():
                raise OSError(errno.EIO, f"injected failure of os.{name}")
            return original(*args, **kwargs)

        return call

    for name, original in originals.items():
        setattr(os, name, wrap(name, original))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(os, name, original)


@contextmanager
def sqlite_faults(switch: FaultSwitch) -> Iterator[None]:
    """While entered, connections that SQLite stores open consult ``switch`` per statement.

    Enter it before opening the store: the store's connection is made on first use.
    """

    class FaultyConnection(sqlite3.Connection):
        def _check(self) -> None:
            if _in_thread("agentstores-sqlite") and switch.hit():
                raise sqlite3.OperationalError("disk I/O error (injected)")

        def execute(self, *args: Any, **kwargs: Any) -> sqlite3.Cursor:
            self._check()
            return super().execute(*args, **kwargs)

        def executemany(self, *args: Any, **kwargs: Any) -> sqlite3.Cursor:
            self._check()
            return super().executemany(*args, **kwargs)

    original = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        kwargs.setdefault("factory", FaultyConnection)
        connection: sqlite3.Connection = original(*args, **kwargs)
        return connection

    sqlite3.connect = connect  # type: ignore[assignment]
    try:
        yield
    finally:
        sqlite3.connect = original


@contextmanager
def redis_faults(switch: FaultSwitch, mode: RedisMode) -> Iterator[None]:
    """While entered, every request sent on a ``redis.asyncio`` connection consults ``switch``.

    ``mode="request"``: the failing request never reaches the server. ``mode="reply"``: the
    server gets it and answers, and the connection drops before the caller reads the answer.
    Either way the connection is closed and ``redis.ConnectionError`` raised, as redis-py does
    when a socket breaks.
    """
    from redis.asyncio.connection import AbstractConnection
    from redis.exceptions import ConnectionError as RedisConnectionError

    original_send = AbstractConnection.send_packed_command
    original_read = AbstractConnection.read_response
    losing: weakref.WeakSet[AbstractConnection] = weakref.WeakSet()

    async def send(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        if not switch.hit():
            await original_send(self, command, check_health)
        elif mode == "reply":
            await original_send(self, command, check_health)
            losing.add(self)
        else:
            await self.disconnect(nowait=True)
            raise RedisConnectionError("injected: the connection broke before the request")

    async def read(self: AbstractConnection, *args: Any, **kwargs: Any) -> Any:
        if self not in losing:
            return await original_read(self, *args, **kwargs)
        losing.discard(self)
        try:
            # Wait until the server has answered, so that it certainly ran the request.
            await original_read(self, *args, **kwargs)
        finally:
            await self.disconnect(nowait=True)
        raise RedisConnectionError("injected: the connection broke before the reply")

    AbstractConnection.send_packed_command = send  # type: ignore[method-assign]
    AbstractConnection.read_response = read  # type: ignore[method-assign]
    try:
        yield
    finally:
        AbstractConnection.send_packed_command = original_send  # type: ignore[method-assign]
        AbstractConnection.read_response = original_read  # type: ignore[method-assign]


# --- opening stores with explicit engine settings ---------------------------------------------


_PACKAGES = {"json": "jsonfile", "sqlite": "sqlite", "redis": "redis"}
_CLASS_NAMES = {
    Family.THREAD_RUN: "ThreadRunStore",
    Family.SESSION_STORE: "SessionStore",
    Family.SESSION_SERVICE: "SessionService",
    Family.MEMORY_STORAGE: "MemoryStorage",
    Family.STATE_SESSION: "StateSessionStore",
}
_ENGINE_NAMES = {"json": "JSON", "sqlite": "SQLite", "redis": "Redis"}


def store_class(engine: str, family: Family) -> Any:
    """The reference store class of ``family`` on ``engine`` (``json``, ``sqlite``, ``redis``)."""
    module = importlib.import_module(f"agentstores.reference.{_PACKAGES[engine]}.{family.value}")
    return getattr(module, _ENGINE_NAMES[engine] + _CLASS_NAMES[family])


def _clock(family: Family, engine: str, context: StoreContext) -> dict[str, Any]:
    # The Redis state-session store stamps nothing itself: its TTL runs on the server's clock.
    if engine == "redis" and family is Family.STATE_SESSION:
        return {}
    return {"clock": context.clock}


def open_json(
    family: Family, context: StoreContext, **settings: Any
) -> AbstractAsyncContextManager[Any]:
    """A JSON store of ``family`` in ``context.root / context.namespace`` (``lock_timeout``...)."""
    store: AbstractAsyncContextManager[Any] = store_class("json", family)(
        context.root / context.namespace, **_clock(family, "json", context), **settings
    )
    return store


def open_sqlite(
    family: Family, context: StoreContext, **settings: Any
) -> AbstractAsyncContextManager[Any]:
    """A SQLite store of ``family`` on the context's database file (``busy_timeout``...)."""
    from agentstores.reference.sqlite._db import context_location

    path, prefix = context_location(context)
    store: AbstractAsyncContextManager[Any] = store_class("sqlite", family)(
        path, prefix=prefix, **_clock(family, "sqlite", context), **settings
    )
    return store


def open_redis(
    family: Family, context: StoreContext, url: str, **settings: Any
) -> AbstractAsyncContextManager[Any]:
    """A Redis store of ``family`` on ``url`` under the context's prefix (``socket_timeout``...)."""
    store: AbstractAsyncContextManager[Any] = store_class("redis", family)(
        url, prefix=context.namespace + ":", **_clock(family, "redis", context), **settings
    )
    return store
