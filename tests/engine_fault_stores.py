"""Opening a reference store of any family with explicit engine settings, for the kit's
engine-specific fault tests (a short ``lock_timeout``, ``busy_timeout`` or ``socket_timeout``).

The engine-agnostic parts of the fault tests are in the kit itself: the fault switch in
:mod:`agentstores.conformance.engine_faults`, the scenarios in
:mod:`agentstores.conformance.engine_fault_scenarios`, and each engine's injection hook in
``agentstores.reference.<engine>._faults``.
"""

from __future__ import annotations

import importlib
from contextlib import AbstractAsyncContextManager
from typing import Any

from agentstores.conformance.backend import Family, StoreContext

__all__ = ["open_json", "open_redis", "open_sqlite", "store_class"]

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
