"""An in-memory memory-storage backend: the executable model behind the async protocol.

It lets the memory-storage suite run without any engine, and is the smallest example of
plugging a memory store into the kit. Storage lives in a process-wide dict keyed by the
context's root and namespace, so two stores opened on one context share it and a reopened
store finds what was written before (``durable`` within the process). Semantic retrieval uses
the context's embedder through the reference rules, so failing embedders behave as specified.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from agentstores.conformance.backend import Backend, Capability, Family, StoreContext
from agentstores.conformance.models.memory_storage import MemoryStorageModel
from agentstores.reference import memory_storage_rules as rules
from agentstores.spec.errors import NotSupported, StorageUnavailable
from agentstores.spec.memory_storage import (
    ConversationMessage,
    Embedder,
    MemoryRetrieval,
    SessionSummary,
    UserMemory,
)
from agentstores.spec.messages import Message
from agentstores.spec.values import Clock, check_id

__all__ = ["MEMORY", "MemoryMemoryStorage", "open_store"]

T = TypeVar("T")

_STORAGE: dict[tuple[str, str], MemoryStorageModel] = {}


class MemoryMemoryStorage:
    """A :class:`~agentstores.spec.memory_storage.MemoryStorage` kept in the model."""

    def __init__(
        self, model: MemoryStorageModel, clock: Clock, embedder: Embedder | None = None
    ) -> None:
        self._model = model
        self._clock = clock
        self._embedder = embedder
        self._closed = False

    async def _enter(self) -> None:
        if self._closed:
            raise StorageUnavailable("the store is closed")
        await asyncio.sleep(0)  # let concurrent tasks interleave between operations

    @staticmethod
    def _out(value: T) -> T:
        return copy.deepcopy(value)  # G-7: the caller's copy, never the stored object

    async def save_user_memory(self, memory: UserMemory) -> UserMemory:
        """MS-3."""
        await self._enter()
        return self._out(self._model.save_user_memory(memory, self._clock()))

    async def get_user_memories(
        self,
        user_id: str,
        limit: int = 0,
        retrieval: MemoryRetrieval = MemoryRetrieval.LAST_N,
        query: str | None = None,
    ) -> list[UserMemory]:
        """MS-4 .. MS-8."""
        await self._enter()
        check_id(user_id, what="user id")
        limit = rules.check_limit(limit)
        chosen, checked_query = rules.check_retrieval(retrieval, query)
        if chosen is not MemoryRetrieval.SEMANTIC:
            return self._out(self._model.get_user_memories(user_id, limit, chosen))
        if self._embedder is None:
            raise NotSupported("this store has no embedder")
        assert checked_query is not None
        memories = self._model.user_memories(user_id)
        ranked = await rules.rank_semantic(self._embedder, checked_query, memories)
        return self._out(rules.take(ranked, limit))

    async def update_user_memory(self, memory: UserMemory) -> UserMemory:
        """MS-9."""
        await self._enter()
        return self._out(self._model.update_user_memory(memory, self._clock()))

    async def delete_user_memory(self, memory_id: str) -> None:
        """MS-10."""
        await self._enter()
        self._model.delete_user_memory(memory_id)

    async def delete_user_memories_by_ids(self, user_id: str, memory_ids: Sequence[str]) -> None:
        """MS-11."""
        await self._enter()
        self._model.delete_user_memories_by_ids(user_id, memory_ids)

    async def clear_user_memories(self, user_id: str) -> None:
        """MS-12."""
        await self._enter()
        self._model.clear_user_memories(user_id)

    async def search_user_memories(
        self, user_id: str, query: str, limit: int = 0
    ) -> list[UserMemory]:
        """MS-13."""
        await self._enter()
        return self._out(self._model.search_user_memories(user_id, query, limit))

    async def save_session_summary(self, summary: SessionSummary) -> SessionSummary:
        """MS-14."""
        await self._enter()
        return self._out(self._model.save_session_summary(summary, self._clock()))

    async def get_session_summary(self, session_id: str, user_id: str) -> SessionSummary | None:
        """MS-15."""
        await self._enter()
        return self._out(self._model.get_session_summary(session_id, user_id))

    async def update_session_summary(self, summary: SessionSummary) -> SessionSummary:
        """MS-16."""
        await self._enter()
        return self._out(self._model.update_session_summary(summary, self._clock()))

    async def delete_session_summary(self, session_id: str, user_id: str) -> None:
        """MS-15."""
        await self._enter()
        self._model.delete_session_summary(session_id, user_id)

    async def save_message(
        self, session_id: str, user_id: str, message: Message
    ) -> ConversationMessage:
        """MS-17."""
        await self._enter()
        self._model.check_save_message(session_id, user_id, message)
        stored = self._model.save_message(
            session_id, user_id, copy.deepcopy(message), self._clock(), rules.new_message_id()
        )
        return self._out(stored)

    async def get_messages(
        self, session_id: str, user_id: str, limit: int = 0
    ) -> list[ConversationMessage]:
        """MS-18, MS-19."""
        await self._enter()
        return self._out(self._model.get_messages(session_id, user_id, limit))

    async def delete_messages(self, session_id: str, user_id: str) -> None:
        """MS-20."""
        await self._enter()
        self._model.delete_messages(session_id, user_id)

    async def get_message_count(self, user_id: str, session_id: str) -> int:
        """MS-21."""
        await self._enter()
        return self._model.get_message_count(user_id, session_id)

    async def cleanup_old_messages(self, user_id: str, before: int) -> None:
        """MS-22."""
        await self._enter()
        self._model.cleanup_old_messages(user_id, before)

    async def cleanup_messages_by_limit(
        self, user_id: str, session_id: str, keep_limit: int
    ) -> None:
        """MS-23."""
        await self._enter()
        self._model.cleanup_messages_by_limit(user_id, session_id, keep_limit)

    async def health(self) -> None:
        """MS-26."""
        await self._enter()

    async def migrate(self) -> None:
        """MS-28: nothing to migrate in memory."""
        await self._enter()

    async def close(self) -> None:
        """MS-27."""
        self._closed = True

    async def __aenter__(self) -> MemoryMemoryStorage:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()


@asynccontextmanager
async def open_store(ctx: StoreContext) -> AsyncIterator[MemoryMemoryStorage]:
    """Open the in-memory store of ``ctx`` (shared by every store opened on that context)."""
    model = _STORAGE.setdefault((str(ctx.root), ctx.namespace), MemoryStorageModel())
    async with MemoryMemoryStorage(model, ctx.clock, ctx.options.get("embedder")) as store:
        yield store


#: The in-memory backend, for the kit's own tests.
MEMORY = Backend(
    name="memory",
    openers={Family.MEMORY_STORAGE: open_store},
    capabilities=frozenset({Capability.DURABLE, Capability.SEMANTIC_SEARCH}),
    description="in-memory memory store over the executable model (tests only)",
)
