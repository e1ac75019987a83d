"""A small in-memory state-session backend: the model behind the store protocol.

It lets the kit's own tests run :class:`StateSessionSuite` without any engine, and is the base
of some broken variants. Storage lives in a process-wide dict keyed by (root, namespace), so
that opening a context twice reaches the same sessions (``durable`` within one process).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from agentstores.conformance.backend import Backend, Capability, Family, StoreContext
from agentstores.conformance.models.state_session import (
    StateSessionModel,
    check_list_arguments,
)
from agentstores.spec.errors import InvalidArgument, NotFound, StorageUnavailable
from agentstores.spec.state_session import DEFAULT_USER_ID, StateModule, check_ttl_seconds
from agentstores.spec.values import Clock, check_id, system_clock

__all__ = ["BACKEND", "MemoryStateSessionStore", "open_store"]

_STORAGE: dict[tuple[str, str], StateSessionModel] = {}


def _check_modules(modules: dict[str, Any], method: str) -> None:
    for name, module in modules.items():
        check_id(name, what="module name")
        if not callable(getattr(module, method, None)):
            raise InvalidArgument(f"module {name!r} has no {method}()")


class MemoryStateSessionStore:
    """The model (:class:`StateSessionModel`) with the store protocol's async methods."""

    def __init__(
        self,
        model: StateSessionModel | None = None,
        *,
        ttl_seconds: int | None = None,
        clock: Clock = system_clock,
    ) -> None:
        ttl = check_ttl_seconds(ttl_seconds)
        self.model = model if model is not None else StateSessionModel()
        self.ttl_ms = None if ttl is None else ttl * 1000
        self.clock = clock
        self.closed = False

    def _check_open(self) -> None:
        if self.closed:
            raise StorageUnavailable("the store is closed")

    async def save_session_state(
        self, session_id: str, user_id: str = DEFAULT_USER_ID, **state_modules_mapping: StateModule
    ) -> None:
        """Snapshot every module, then replace the session's state in the model."""
        self._check_open()
        _check_modules(state_modules_mapping, "state_dict")
        states = {name: module.state_dict() for name, module in state_modules_mapping.items()}
        await asyncio.sleep(0)  # let other tasks interleave, as a real engine would
        self.model.save(session_id, user_id, states, now=self.clock(), ttl_ms=self.ttl_ms)

    async def load_session_state(
        self,
        session_id: str,
        user_id: str = DEFAULT_USER_ID,
        allow_not_exist: bool = True,
        **state_modules_mapping: StateModule,
    ) -> None:
        """Restore each named module the session has."""
        self._check_open()
        if not isinstance(allow_not_exist, bool):
            raise InvalidArgument("allow_not_exist must be a bool")
        _check_modules(state_modules_mapping, "load_state_dict")
        await asyncio.sleep(0)
        states = self.model.load(
            session_id, user_id, list(state_modules_mapping), now=self.clock(), ttl_ms=self.ttl_ms
        )
        if states is None:
            if allow_not_exist:
                return
            raise NotFound(f"no state for session {session_id!r} of user {user_id!r}")
        for name, module in state_modules_mapping.items():
            if name in states:
                module.load_state_dict(states[name])

    async def delete_session_state(self, session_id: str, user_id: str = DEFAULT_USER_ID) -> bool:
        """Delete the session; whether it existed."""
        self._check_open()
        await asyncio.sleep(0)
        return self.model.delete(session_id, user_id, now=self.clock())

    async def list_sessions(
        self, user_id: str = DEFAULT_USER_ID, *, after: str | None = None, limit: int | None = None
    ) -> list[str]:
        """The user's sessions in code-point order."""
        self._check_open()
        check_list_arguments(user_id, after, limit)
        await asyncio.sleep(0)
        return self.model.list_sessions(user_id, after=after, limit=limit, now=self.clock())

    async def close(self) -> None:
        """Mark the store closed; idempotent."""
        self.closed = True


def open_store(context: StoreContext) -> AbstractAsyncContextManager[MemoryStateSessionStore]:
    """Open the in-memory store of ``context`` (shared by every opening of it)."""

    @asynccontextmanager
    async def manager() -> AsyncIterator[MemoryStateSessionStore]:
        model = _STORAGE.setdefault((str(context.root), context.namespace), StateSessionModel())
        store = MemoryStateSessionStore(
            model, ttl_seconds=context.options.get("ttl_seconds"), clock=context.clock
        )
        try:
            yield store
        finally:
            await store.close()

    return manager()


BACKEND = Backend(
    name="memory-state-session",
    openers={Family.STATE_SESSION: open_store},
    capabilities=frozenset({Capability.DURABLE, Capability.TTL}),
    description="the state-session model as a store (kit self-test)",
)
