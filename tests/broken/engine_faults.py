"""Broken backends for the ``engine_faults`` suite: SQLite thread/run stores with one bug each
in how they meet a failing engine, claiming ``engine_faults`` with the SQLite reference's hook.

* ``raw-driver-error``: lets the driver's exception (``sqlite3.OperationalError``) reach the
  caller instead of StorageUnavailable, as a store without error translation does (G-11).
* ``checkpoint-in-two``: a checkpoint of an existing thread writes its messages first and then
  checkpoints, two transactions where there must be one; a failure between them leaves the new
  messages with the old run (G-17).
* ``stays-broken``: after one failed call every later call fails too, as a store whose
  connection stays in a failed transaction does (G-23).
* ``hook-misses-engine``: the stores are fine, but the hook makes the wrong engine fail (the
  JSON reference's), so it sees no call of the stores: the suite must not pass such a backend
  as if its engine could never fail.

``BROKEN`` maps a short name to the backend, the family, the requirement ID it breaks, and
fragments of the failure message that say what went wrong.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from agentstores.conformance.backend import Backend, Capability, Family, StoreContext
from agentstores.reference.jsonfile import _faults as json_faults
from agentstores.reference.sqlite import _faults as sqlite_faults
from agentstores.reference.sqlite import thread_run as sqlite_thread_run
from agentstores.spec.errors import StorageUnavailable

__all__ = ["BROKEN"]


class _Proxy:
    """Passes every attribute through to the store it wraps; subclasses change some calls."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class RawDriverErrors(_Proxy):
    """Re-raises the driver's exception that the reference store translated (G-11)."""

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute

        @functools.wraps(attribute)
        async def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return await attribute(*args, **kwargs)
            except StorageUnavailable as error:
                if error.__cause__ is None:
                    raise
                raise error.__cause__ from None

        return call


class CheckpointInTwo(_Proxy):
    """Checkpoints an existing thread in two transactions: messages, then the whole (G-17)."""

    async def checkpoint(self, thread_id: str, messages: Any, run: Any) -> None:
        if await self._inner.load_thread(thread_id) is not None:
            await self._inner.save_messages(thread_id, messages)
        await self._inner.checkpoint(thread_id, messages, run)


class StaysBroken(_Proxy):
    """Fails every call after the first StorageUnavailable (G-23)."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self._broken = False

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if not inspect.iscoroutinefunction(attribute) or name == "close":
            return attribute

        @functools.wraps(attribute)
        async def call(*args: Any, **kwargs: Any) -> Any:
            if self._broken:
                raise StorageUnavailable("the connection is still in a failed transaction")
            try:
                return await attribute(*args, **kwargs)
            except StorageUnavailable:
                self._broken = True
                raise

        return call


def _opener(
    wrap: Callable[[Any], Any],
) -> Callable[[StoreContext], AbstractAsyncContextManager[Any]]:
    @asynccontextmanager
    async def open_store(context: StoreContext) -> AsyncIterator[Any]:
        async with sqlite_thread_run.open_store(context) as store:
            yield wrap(store)

    return open_store


def _backend(name: str, wrap: Callable[[Any], Any], injection: Any) -> Backend:
    return Backend(
        name=f"broken-{name}",
        openers={Family.THREAD_RUN: _opener(wrap)},
        capabilities=frozenset({Capability.DURABLE, Capability.ENGINE_FAULTS}),
        fault_injection=injection,
        description=f"SQLite thread/run store with an engine-fault bug: {name}",
    )


def _unchanged(store: Any) -> Any:
    return store


BROKEN: dict[str, tuple[Backend, Family, str, tuple[str, ...]]] = {
    "raw-driver-error": (
        _backend("raw-driver-error", RawDriverErrors, sqlite_faults.inject_engine_faults),
        Family.THREAD_RUN,
        "G-11",
        ("G-11: ", "raised sqlite3.OperationalError", "not StorageUnavailable"),
    ),
    "checkpoint-in-two": (
        _backend("checkpoint-in-two", CheckpointInTwo, sqlite_faults.inject_engine_faults),
        Family.THREAD_RUN,
        "G-17",
        ("G-17: ", "half applied"),
    ),
    "stays-broken": (
        _backend("stays-broken", StaysBroken, sqlite_faults.inject_engine_faults),
        Family.THREAD_RUN,
        "G-23",
        ("G-23: ", "once the engine was back"),
    ),
    "hook-misses-engine": (
        _backend("hook-misses-engine", _unchanged, json_faults.inject_engine_faults),
        Family.THREAD_RUN,
        "G-11",
        ("saw no engine call",),
    ),
}
