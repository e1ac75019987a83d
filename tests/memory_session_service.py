"""A small in-memory session service, for trying the suite without an engine.

It validates with the reference rules and keeps its data in the kit's model, one model per
context (so that two stores opened on one context share storage and a reopen finds the data).
Every operation runs without awaiting in between, so it is atomic on the event loop.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from agentstores.conformance.backend import Backend, Capability, Family, StoreContext
from agentstores.conformance.models.session_service import SessionServiceModel
from agentstores.reference import session_service_rules as rules
from agentstores.spec.errors import StorageUnavailable
from agentstores.spec.session_service import (
    CreateRequest,
    Event,
    EventFilter,
    GetRequest,
    ListRequest,
    SearchOptions,
    SearchResult,
    Session,
    UpdateRequest,
    check_state_delta,
)
from agentstores.spec.values import Clock

__all__ = ["BACKEND", "MemorySessionService"]

_MODELS: dict[tuple[str, str], SessionServiceModel] = {}


class MemorySessionService:
    """The model behind the :class:`~agentstores.spec.session_service.SessionService` API."""

    def __init__(self, model: SessionServiceModel, clock: Clock) -> None:
        self._model = model
        self._clock = clock
        self._closed = False

    def _live(self) -> SessionServiceModel:
        if self._closed:
            raise StorageUnavailable("the store is closed")
        return self._model

    async def create(self, request: CreateRequest) -> Session:
        req = rules.check_create(request)
        session_id = req.session_id if req.session_id is not None else rules.new_id()
        return self._live().create(req, now=self._clock(), session_id=session_id)

    async def get(self, request: GetRequest) -> Session | None:
        return self._live().get(rules.check_get(request))

    async def update(self, request: UpdateRequest) -> None:
        self._live().update(rules.check_update(request), now=self._clock())

    async def delete(self, app_name: str, user_id: str, session_id: str) -> None:
        self._live().delete(*rules.check_key(app_name, user_id, session_id))

    async def list(self, request: ListRequest) -> list[Session]:
        return self._live().list(rules.check_list(request))

    async def append_event(self, session: Session, event: Event) -> Session:
        handle = rules.check_handle(session)
        checked = rules.check_event(event)
        event_id = checked.id if checked.id is not None else rules.new_id()
        return self._live().append_event(handle, checked, now=self._clock(), event_id=event_id)

    async def get_events(
        self, app_name: str, user_id: str, session_id: str, filter: EventFilter | None = None
    ) -> builtins.list[Event]:
        key = rules.check_key(app_name, user_id, session_id)
        checked = rules.check_filter(filter)
        return self._live().get_events(*key, checked)

    async def update_state(self, session: Session, delta: Mapping[str, Any]) -> Session:
        handle = rules.check_handle(session)
        checked = rules.copy_json(check_state_delta(delta))
        return self._live().update_state(handle, checked, now=self._clock())

    async def search(self, options: SearchOptions) -> builtins.list[SearchResult]:
        return self._live().search(rules.check_search(options))

    async def close(self) -> None:
        self._closed = True


@asynccontextmanager
async def open_store(ctx: StoreContext) -> AsyncIterator[MemorySessionService]:
    """The store of ``ctx``: its model is created on first open and kept for reopening."""
    model = _MODELS.setdefault((str(ctx.root), ctx.namespace), SessionServiceModel())
    store = MemorySessionService(model, ctx.clock)
    try:
        yield store
    finally:
        await store.close()


BACKEND = Backend(
    name="memory-session-service",
    openers={Family.SESSION_SERVICE: open_store},
    capabilities=frozenset({Capability.DURABLE}),
    description="in-memory session service (the kit's model behind the API)",
)
