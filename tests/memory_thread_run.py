"""An in-memory thread/run backend: the executable model behind the async store protocol.

It exists so that the thread/run suite can be run (and debugged) without any engine, and as
the smallest example of plugging a backend into the kit. Storage lives in a process-wide dict
keyed by the context's root and namespace, so two stores opened on one context share it (as
the kit requires) and a reopened store finds what was written before (``durable``, within the
process). Each operation yields to the event loop first, so concurrent tasks interleave between
operations; an operation itself is one synchronous model call and therefore atomic.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from types import TracebackType

from agentstores.conformance.backend import Backend, Capability, Family, StoreContext
from agentstores.conformance.models.thread_run import ThreadRunModel
from agentstores.spec.messages import Message
from agentstores.spec.thread_run import RunPage, RunQuery, RunRecord, Thread, ThreadMetadata

__all__ = ["MEMORY", "MemoryThreadRunStore", "open_store"]

_STORAGE: dict[tuple[str, str], ThreadRunModel] = {}


class MemoryThreadRunStore:
    """A :class:`~agentstores.spec.thread_run.ThreadRunStore` kept in a :class:`ThreadRunModel`."""

    def __init__(self, model: ThreadRunModel) -> None:
        self._model = model

    async def load_thread(self, thread_id: str) -> Thread | None:
        """TR-1."""
        await asyncio.sleep(0)
        return self._model.load_thread(thread_id)

    async def save_thread(self, thread: Thread) -> None:
        """TR-2."""
        await asyncio.sleep(0)
        self._model.save_thread(thread)

    async def delete_thread(self, thread_id: str) -> None:
        """TR-4."""
        await asyncio.sleep(0)
        self._model.delete_thread(thread_id)

    async def list_threads(self, offset: int = 0, limit: int = 50) -> list[str]:
        """TR-5, TR-6."""
        await asyncio.sleep(0)
        return self._model.list_threads(offset, limit)

    async def load_messages(self, thread_id: str) -> list[Message] | None:
        """TR-7."""
        await asyncio.sleep(0)
        return self._model.load_messages(thread_id)

    async def save_messages(self, thread_id: str, messages: Sequence[Message]) -> None:
        """TR-8."""
        await asyncio.sleep(0)
        self._model.save_messages(thread_id, messages)

    async def delete_messages(self, thread_id: str) -> None:
        """TR-9."""
        await asyncio.sleep(0)
        self._model.delete_messages(thread_id)

    async def update_thread_metadata(self, thread_id: str, metadata: ThreadMetadata) -> None:
        """TR-10."""
        await asyncio.sleep(0)
        self._model.update_thread_metadata(thread_id, metadata)

    async def create_run(self, record: RunRecord) -> None:
        """TR-12."""
        await asyncio.sleep(0)
        self._model.create_run(record)

    async def load_run(self, run_id: str) -> RunRecord | None:
        """TR-13."""
        await asyncio.sleep(0)
        return self._model.load_run(run_id)

    async def latest_run(self, thread_id: str) -> RunRecord | None:
        """TR-14."""
        await asyncio.sleep(0)
        return self._model.latest_run(thread_id)

    async def list_runs(self, query: RunQuery) -> RunPage:
        """TR-15, TR-16."""
        await asyncio.sleep(0)
        return self._model.list_runs(query)

    async def checkpoint(self, thread_id: str, messages: Sequence[Message], run: RunRecord) -> None:
        """TR-18 .. TR-21."""
        await asyncio.sleep(0)
        self._model.checkpoint(thread_id, messages, run)

    async def close(self) -> None:
        """Nothing to release; idempotent (G-16)."""

    async def __aenter__(self) -> MemoryThreadRunStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


@asynccontextmanager
async def open_store(ctx: StoreContext) -> AsyncIterator[MemoryThreadRunStore]:
    """Open the in-memory store of ``ctx`` (shared by every store opened on that context)."""
    model = _STORAGE.setdefault((str(ctx.root), ctx.namespace), ThreadRunModel(ctx.clock))
    async with MemoryThreadRunStore(model) as store:
        yield store


#: The in-memory backend, for the kit's own tests.
MEMORY = Backend(
    name="memory",
    openers={Family.THREAD_RUN: open_store},
    capabilities=frozenset({Capability.DURABLE}),
    description="in-memory thread/run store over the executable model (tests only)",
)
