"""An in-memory session-store backend: the executable model behind the async store protocol.

It lets the session-store suite run without any engine (a check of the suite against its own
model), and is the smallest example of plugging a backend into the kit. Storage lives in a
process-wide dict keyed by the context's root and namespace, so two stores opened on one
context share it and a reopened store finds what was written before (``durable``, within the
process). Each operation yields to the event loop first, so concurrent tasks interleave between
operations; an operation itself is one synchronous model call and therefore atomic.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from agentstores.conformance.backend import Backend, Capability, Family, StoreContext
from agentstores.conformance.models.session_store import SessionStoreModel
from agentstores.spec.errors import StorageUnavailable
from agentstores.spec.messages import Message
from agentstores.spec.session_store import (
    ChatHistoryMatch,
    Session,
    SessionInsights,
    SessionType,
    TokenStatsUpdate,
)

__all__ = ["MEMORY", "MemorySessionStore", "open_store"]

_STORAGE: dict[tuple[str, str], SessionStoreModel] = {}


class MemorySessionStore:
    """A :class:`~agentstores.spec.session_store.SessionStore` kept in a model."""

    def __init__(self, model: SessionStoreModel) -> None:
        self._model: SessionStoreModel | None = model

    async def _live(self) -> SessionStoreModel:
        await asyncio.sleep(0)
        if self._model is None:
            raise StorageUnavailable("the store is closed")
        return self._model

    async def create_session(
        self, working_dir: str, name: str, session_type: SessionType = SessionType.USER
    ) -> Session:
        return (await self._live()).create_session(working_dir, name, session_type)

    async def get_session(self, session_id: str, include_messages: bool = False) -> Session:
        return (await self._live()).get_session(session_id, include_messages)

    async def add_message(self, session_id: str, message: Message) -> None:
        (await self._live()).add_message(session_id, message)

    async def replace_conversation(self, session_id: str, conversation: Sequence[Message]) -> None:
        (await self._live()).replace_conversation(session_id, conversation)

    async def list_sessions(self) -> list[Session]:
        return (await self._live()).list_sessions()

    async def list_sessions_by_types(self, types: Sequence[SessionType]) -> list[Session]:
        return (await self._live()).list_sessions_by_types(types)

    async def delete_session(self, session_id: str) -> None:
        (await self._live()).delete_session(session_id)

    async def get_insights(self) -> SessionInsights:
        return (await self._live()).get_insights()

    async def export_session(self, session_id: str) -> str:
        return (await self._live()).export_session(session_id)

    async def import_session(self, document: str) -> Session:
        return (await self._live()).import_session(document)

    async def copy_session(self, session_id: str, new_name: str) -> Session:
        return (await self._live()).copy_session(session_id, new_name)

    async def truncate_conversation(self, session_id: str, timestamp: int) -> None:
        (await self._live()).truncate_conversation(session_id, timestamp)

    async def update_session_name(self, session_id: str, name: str, user_set: bool) -> None:
        (await self._live()).update_session_name(session_id, name, user_set)

    async def update_extension_data(self, session_id: str, extension_data: Any) -> None:
        (await self._live()).update_extension_data(session_id, extension_data)

    async def update_token_stats(self, session_id: str, stats: TokenStatsUpdate) -> None:
        (await self._live()).update_token_stats(session_id, stats)

    async def update_provider_config(
        self, session_id: str, provider_name: str | None, model_config: Any
    ) -> None:
        (await self._live()).update_provider_config(session_id, provider_name, model_config)

    async def update_recipe(
        self, session_id: str, recipe: Any, user_recipe_values: Mapping[str, str] | None
    ) -> None:
        (await self._live()).update_recipe(session_id, recipe, user_recipe_values)

    async def search_chat_history(
        self,
        query: str,
        limit: int | None = None,
        after_date: int | None = None,
        before_date: int | None = None,
        exclude_session_id: str | None = None,
    ) -> list[ChatHistoryMatch]:
        model = await self._live()
        return model.search_chat_history(query, limit, after_date, before_date, exclude_session_id)

    async def close(self) -> None:
        self._model = None


@asynccontextmanager
async def open_store(ctx: StoreContext) -> AsyncIterator[MemorySessionStore]:
    """The store of ``ctx``: its model is created on first open and kept for reopening."""
    model = _STORAGE.setdefault((str(ctx.root), ctx.namespace), SessionStoreModel(ctx.clock))
    store = MemorySessionStore(model)
    try:
        yield store
    finally:
        await store.close()


MEMORY = Backend(
    name="memory-session-store",
    openers={Family.SESSION_STORE: open_store},
    capabilities=frozenset({Capability.DURABLE}),
    description="in-memory session store (the kit's model behind the API)",
)
