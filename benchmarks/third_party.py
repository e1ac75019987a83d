"""Adapters of the session stores people use today to the bench's History interface.

Each adapter drives one third-party store the way its own documentation persists a
conversation, so that ``agentstores.conformance.bench_workloads.history_channels`` times it
with the same code, sizes and messages as the reference backends:

* agentscope 1.0.x ``JSONSession`` / ``RedisSession``: a conversation is an ``InMemoryMemory``
  saved with ``save_session_state``. These stores save whole state dicts, so persisting one
  more message is ``memory.add(msg)`` followed by ``save_session_state`` of the memory; the
  newest 20 are read by ``load_session_state`` into a fresh memory.
* openai-agents ``SQLiteSession`` / ``RedisSession``: ``add_items([item])``, and
  ``get_items(limit=20)``.
* Google ADK ``DatabaseSessionService`` on SQLite (``sqlite+aiosqlite``): ``append_event``,
  and ``get_session`` with ``GetSessionConfig(num_recent_events=20)``.

An adapter factory is an async context manager that takes a fresh directory (and a Redis URL)
and yields a History; it returns None from :func:`available` when its package is missing,
so that the comparison can say so instead of inventing figures.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentstores.conformance.bench_workloads import History, bench_text

__all__ = ["ADAPTERS", "Adapter", "available"]

_USER = "bench-user"


def _load(module: str) -> Any:
    """A module of a third-party package, untyped (they are not installed with the kit)."""
    return importlib.import_module(module)


def _role(position: int) -> str:
    return "user" if position % 2 == 0 else "assistant"


def version(distribution: str) -> str | None:
    """The installed version of ``distribution``, or None if it is not installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


# --- agentscope ------------------------------------------------------------------------------


@dataclass
class _Memory:
    session_id: str
    memory: Any


class AgentScopeHistory:
    """agentscope's session classes: whole-state saves of an ``InMemoryMemory``."""

    method = "memory.add + save_session_state"
    reads_newest = True

    def __init__(self, session: Any) -> None:
        self._session = session
        self._memory_class = _load("agentscope.memory").InMemoryMemory
        self._msg = _load("agentscope.message").Msg

    def _message(self, position: int) -> Any:
        role = _role(position)
        return self._msg(role, bench_text(position), role)

    async def start(self, index: int) -> _Memory:
        return _Memory(f"bench-{index}", self._memory_class())

    async def append(self, handle: _Memory, position: int) -> None:
        await handle.memory.add(self._message(position))
        await self._session.save_session_state(
            handle.session_id, user_id=_USER, memory=handle.memory
        )

    async def fill(self, handle: _Memory, start: int, stop: int) -> None:
        await handle.memory.add([self._message(p) for p in range(start, stop)])
        await self._session.save_session_state(
            handle.session_id, user_id=_USER, memory=handle.memory
        )

    async def newest(self, handle: _Memory, count: int) -> int:
        memory = self._memory_class()
        await self._session.load_session_state(handle.session_id, user_id=_USER, memory=memory)
        return len((await memory.get_memory())[-count:])


@asynccontextmanager
async def agentscope_json(root: Path, redis_url: str) -> AsyncIterator[History[Any]]:
    """agentscope ``JSONSession`` in ``root``."""
    session_class = _load("agentscope.session").JSONSession
    yield AgentScopeHistory(session_class(save_dir=str(root)))


@asynccontextmanager
async def agentscope_redis(root: Path, redis_url: str) -> AsyncIterator[History[Any]]:
    """agentscope ``RedisSession`` on the reference's Redis server, under a fresh prefix."""
    from urllib.parse import urlparse

    url = urlparse(redis_url)
    session = _load("agentscope.session").RedisSession(
        host=url.hostname or "localhost",
        port=url.port or 6379,
        db=int((url.path or "/0").lstrip("/") or 0),
        key_prefix=f"{root.name}:agentscope:",
    )
    try:
        yield AgentScopeHistory(session)
    finally:
        await session.close()


# --- openai-agents -----------------------------------------------------------------------------


class OpenAIAgentsHistory:
    """openai-agents sessions: one session object per conversation."""

    method = "add_items"
    reads_newest = True

    def __init__(self, make: Callable[[str], Any]) -> None:
        self._make = make
        self.sessions: list[Any] = []

    @staticmethod
    def _item(position: int) -> dict[str, str]:
        return {"role": _role(position), "content": bench_text(position)}

    async def start(self, index: int) -> Any:
        session = self._make(f"bench-{index}")
        self.sessions.append(session)
        return session

    async def append(self, handle: Any, position: int) -> None:
        await handle.add_items([self._item(position)])

    async def fill(self, handle: Any, start: int, stop: int) -> None:
        if stop > start:
            await handle.add_items([self._item(p) for p in range(start, stop)])

    async def newest(self, handle: Any, count: int) -> int:
        return len(await handle.get_items(limit=count))


@asynccontextmanager
async def openai_agents_sqlite(root: Path, redis_url: str) -> AsyncIterator[History[Any]]:
    """openai-agents ``SQLiteSession`` on one database file in ``root``."""
    session_class = _load("agents").SQLiteSession
    path = root / "openai_agents.sqlite3"
    history = OpenAIAgentsHistory(lambda session_id: session_class(session_id, path))
    try:
        yield history
    finally:
        for session in history.sessions:
            session.close()


@asynccontextmanager
async def openai_agents_redis(root: Path, redis_url: str) -> AsyncIterator[History[Any]]:
    """openai-agents ``RedisSession`` sharing one client, under a fresh key prefix."""
    import redis.asyncio as aioredis

    session_class = _load("agents.extensions.memory.redis_session").RedisSession
    client = aioredis.Redis.from_url(redis_url)
    prefix = f"{root.name}:openai-agents"
    history = OpenAIAgentsHistory(
        lambda session_id: session_class(session_id, redis_client=client, key_prefix=prefix)
    )
    try:
        yield history
    finally:
        await client.aclose()


# --- Google ADK --------------------------------------------------------------------------------


class ADKHistory:
    """Google ADK session services: a conversation is a session of events."""

    method = "append_event"
    reads_newest = True
    app = "bench"

    def __init__(self, service: Any) -> None:
        self._service = service
        self._event = _load("google.adk.events").Event
        self._config = _load("google.adk.sessions.base_session_service").GetSessionConfig
        self._types = _load("google.genai.types")

    async def start(self, index: int) -> Any:
        return await self._service.create_session(app_name=self.app, user_id=_USER)

    async def append(self, handle: Any, position: int) -> None:
        role = _role(position)
        content = self._types.Content(
            role=role, parts=[self._types.Part(text=bench_text(position))]
        )
        event = self._event(invocation_id=f"inv-{position}", author=role, content=content)
        await self._service.append_event(handle, event)

    async def fill(self, handle: Any, start: int, stop: int) -> None:
        for position in range(start, stop):
            await self.append(handle, position)

    async def newest(self, handle: Any, count: int) -> int:
        session = await self._service.get_session(
            app_name=self.app,
            user_id=_USER,
            session_id=handle.id,
            config=self._config(num_recent_events=count),
        )
        return 0 if session is None else len(session.events)


@asynccontextmanager
async def adk_sqlite(root: Path, redis_url: str) -> AsyncIterator[History[Any]]:
    """Google ADK ``DatabaseSessionService`` on a SQLite file in ``root`` (aiosqlite)."""
    service_class = _load("google.adk.sessions").DatabaseSessionService
    service = service_class(db_url=f"sqlite+aiosqlite:///{root / 'adk.sqlite3'}")
    try:
        yield ADKHistory(service)
    finally:
        await service.close()


# --- the table of adapters -------------------------------------------------------------------


@dataclass(frozen=True)
class Adapter:
    """One third-party store: its engine, its label, its package and how to open it."""

    engine: str
    label: str
    distribution: str
    opener: Callable[[Path, str], AbstractAsyncContextManager[History[Any]]]
    durability: str


#: The third-party stores of the comparison, by engine.
ADAPTERS = (
    Adapter(
        "json",
        "agentscope JSONSession",
        "agentscope",
        agentscope_json,
        "rewrites one JSON file per save, no fsync",
    ),
    Adapter(
        "sqlite",
        "openai-agents SQLiteSession",
        "openai-agents",
        openai_agents_sqlite,
        "WAL, synchronous FULL (default)",
    ),
    Adapter(
        "sqlite",
        "google-adk DatabaseSessionService",
        "google-adk",
        adk_sqlite,
        "SQLAlchemy + aiosqlite, rollback journal, synchronous FULL (defaults)",
    ),
    Adapter(
        "redis",
        "agentscope RedisSession",
        "agentscope",
        agentscope_redis,
        "one SET of the whole state per save",
    ),
    Adapter(
        "redis",
        "openai-agents RedisSession",
        "openai-agents",
        openai_agents_redis,
        "WATCH + MULTI/EXEC pipeline per add",
    ),
)


def available(adapter: Adapter) -> str | None:
    """The installed version of the adapter's package, or None when it cannot be imported."""
    found = version(adapter.distribution)
    if found is None:
        return None
    logging.getLogger("as").setLevel(logging.WARNING)  # agentscope logs every save at INFO
    return found
