"""Broken backends for the fault checks: JSON-file references with one fault-handling bug each.

Each takes the reference store of a family and swaps the class of its
:class:`~agentstores.reference.jsonfile._files.StoreDirectory` (the one place where the JSON
stores write files and take locks) for a subclass with the bug:

* ``in-place``: every file is overwritten in place with ``json.dump`` into the open file, and
  a multi-file change is applied file by file (no temp file and rename, no journal). A kill
  tears files (G-20).
* ``checkpoint-in-pieces``: a checkpoint writes its files one by one, each atomically but not
  together (no journal). A kill leaves half a checkpoint (G-20, TR-19).
* ``process-lock``: operations are serialised by the store object's ``asyncio.Lock`` only,
  without the ``flock`` that keeps other processes out. Processes lose updates (G-21).

The backends are module attributes built from ``functools.partial`` of module-level
functions, so they can be pickled into the kit's child processes. ``BROKEN`` maps a short
name to the backend, its family and the requirement IDs of which one must fail.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from agentstores.conformance.backend import Backend, Capability, Family, StoreContext
from agentstores.reference.jsonfile import session_service as json_session_service
from agentstores.reference.jsonfile import state_session as json_state_session
from agentstores.reference.jsonfile import thread_run as json_thread_run
from agentstores.reference.jsonfile._files import (
    StoreDirectory,
    Transaction,
    recover,
    remove_file,
    write_atomic,
)
from agentstores.spec.errors import StorageUnavailable, StoreError
from agentstores.spec.messages import Message
from agentstores.spec.thread_run import RunRecord

__all__ = ["BROKEN"]

T = TypeVar("T")


def _write_in_place(path: Path, data: bytes) -> None:
    # As agentscope's JSONSession does: open the file for writing and json.dump into it.
    with open(path, "w", encoding="utf-8") as file:
        json.dump(json.loads(data), file, ensure_ascii=False)


class _PieceByPieceTransaction(Transaction):
    """Applies each change on its own, in order; ``write`` says how a file is replaced."""

    write: Callable[[Path, bytes], None] = staticmethod(write_atomic)

    def commit(self) -> None:
        for path, data in self._replaces:
            type(self).write(path, data)
        for path in self._removes:
            remove_file(path, sync=self.sync)
        for log, records in self._appends.values():
            log.append(records)


class _InPlaceTransaction(_PieceByPieceTransaction):
    write = staticmethod(_write_in_place)


class InPlaceDirectory(StoreDirectory):
    """Every change written in place, file by file."""

    def transaction(self) -> Transaction:
        return _InPlaceTransaction(self.path, sync=self.sync)


class PiecewiseDirectory(StoreDirectory):
    """While :attr:`piecewise` is set, transactions write their files one at a time."""

    piecewise = False

    def transaction(self) -> Transaction:
        if self.piecewise:
            return _PieceByPieceTransaction(self.path, sync=self.sync)
        return super().transaction()


class ProcessLockDirectory(StoreDirectory):
    """Only the store object's own ``asyncio.Lock``; no ``flock`` keeps other processes out."""

    async def run(self, operation: Callable[[], T]) -> T:
        if self.closed:
            raise StorageUnavailable("the store is closed")
        async with self._lock:
            return await asyncio.to_thread(self._unlocked, operation)

    def _unlocked(self, operation: Callable[[], T]) -> T:
        try:
            if not self._prepared:
                os.makedirs(self.path, exist_ok=True)
                self._prepare()
            else:
                recover(self.path, sync=self.sync)
            return operation()
        except StoreError:
            raise
        except (OSError, ValueError, RecursionError) as exc:
            raise StorageUnavailable(f"JSON store at {self.path}: {exc}") from exc


class CheckpointInPieces(json_thread_run.JSONThreadRunStore):
    """A checkpoint writes the thread, the messages and the run one after the other."""

    async def checkpoint(self, thread_id: str, messages: Sequence[Message], run: RunRecord) -> None:
        directory = self._dir
        assert isinstance(directory, PiecewiseDirectory)
        directory.piecewise = True
        try:
            await super().checkpoint(thread_id, messages, run)
        finally:
            directory.piecewise = False


def _json_thread_run_in_pieces(ctx: StoreContext) -> CheckpointInPieces:
    return CheckpointInPieces(ctx.root / ctx.namespace, clock=ctx.clock)


@asynccontextmanager
async def _with_directory(
    opener: Callable[[StoreContext], Any], directory: type[StoreDirectory], ctx: StoreContext
) -> AsyncIterator[Any]:
    store = opener(ctx)
    store._dir.__class__ = directory  # the JSON stores keep their StoreDirectory in _dir
    async with store:
        yield store


def _backend(
    name: str,
    family: Family,
    opener: Callable[[StoreContext], Any],
    directory: type[StoreDirectory],
    capability: Capability,
) -> Backend:
    wrapped: Callable[[StoreContext], AbstractAsyncContextManager[Any]] = functools.partial(
        _with_directory, opener, directory
    )
    return Backend(
        name=f"broken-{name}",
        openers={family: wrapped},
        capabilities=frozenset({Capability.DURABLE, capability}),
        description=f"JSON reference of {family.value}, broken: {name}",
    )


IN_PLACE_STATE_SESSION = _backend(
    "in-place",
    Family.STATE_SESSION,
    json_state_session.open_store,
    InPlaceDirectory,
    Capability.CRASH_SAFE,
)
IN_PLACE_THREAD_RUN = _backend(
    "in-place",
    Family.THREAD_RUN,
    json_thread_run.open_store,
    InPlaceDirectory,
    Capability.CRASH_SAFE,
)
CHECKPOINT_IN_PIECES = _backend(
    "checkpoint-in-pieces",
    Family.THREAD_RUN,
    _json_thread_run_in_pieces,
    PiecewiseDirectory,
    Capability.CRASH_SAFE,
)
PROCESS_LOCK_SESSION_SERVICE = _backend(
    "process-lock",
    Family.SESSION_SERVICE,
    json_session_service.open_store,
    ProcessLockDirectory,
    Capability.MULTI_PROCESS,
)
PROCESS_LOCK_THREAD_RUN = _backend(
    "process-lock",
    Family.THREAD_RUN,
    json_thread_run.open_store,
    ProcessLockDirectory,
    Capability.MULTI_PROCESS,
)

#: name -> (backend, family, requirement IDs of which at least one must fail)
BROKEN: dict[str, tuple[Backend, Family, frozenset[str]]] = {
    "in-place-state-session": (IN_PLACE_STATE_SESSION, Family.STATE_SESSION, frozenset({"G-20"})),
    "in-place-thread-run": (IN_PLACE_THREAD_RUN, Family.THREAD_RUN, frozenset({"G-20"})),
    "checkpoint-in-pieces": (CHECKPOINT_IN_PIECES, Family.THREAD_RUN, frozenset({"G-20"})),
    "process-lock-session-service": (
        PROCESS_LOCK_SESSION_SERVICE,
        Family.SESSION_SERVICE,
        frozenset({"G-21"}),
    ),
    "process-lock-thread-run": (PROCESS_LOCK_THREAD_RUN, Family.THREAD_RUN, frozenset({"G-21"})),
}
