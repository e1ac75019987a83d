"""Broken memory stores: each is a reference store with one bug that real stores have had.

:data:`BROKEN` maps each broken backend's name to the backend and the requirement the kit must
report as failed; ``tests/test_broken_memory_storage.py`` runs the suite on each and checks it.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from agentstores.conformance.backend import Backend, Capability, Family, Opener, StoreContext
from agentstores.reference import memory_storage_rules as rules
from agentstores.reference.jsonfile.memory_storage import JSONMemoryStorage
from agentstores.reference.redis import server
from agentstores.reference.redis._client import KeySpace
from agentstores.reference.redis.memory_storage import RedisMemoryStorage
from agentstores.reference.sqlite._db import context_location
from agentstores.reference.sqlite.memory_storage import SQLiteMemoryStorage
from agentstores.spec.memory_storage import (
    ConversationMessage,
    MemoryRetrieval,
    UserMemory,
)

__all__ = ["BROKEN"]


# --- messages --------------------------------------------------------------------------------


class NewestFirst(SQLiteMemoryStorage):
    """Returns the newest N messages newest first (the SQL order, not reversed)."""

    async def get_messages(
        self, session_id: str, user_id: str, limit: int = 0
    ) -> list[ConversationMessage]:
        return list(reversed(await super().get_messages(session_id, user_id, limit)))


class LimitZeroIsNothing(SQLiteMemoryStorage):
    """Passes ``LIMIT 0`` through to SQL, so limit 0 returns no messages instead of all."""

    async def get_messages(
        self, session_id: str, user_id: str, limit: int = 0
    ) -> list[ConversationMessage]:
        found = await super().get_messages(session_id, user_id, limit)
        return [] if limit == 0 else found


class OrderedByTime(SQLiteMemoryStorage):
    """Orders a conversation by created_at, so a clock that went back reorders messages."""

    async def get_messages(
        self, session_id: str, user_id: str, limit: int = 0
    ) -> list[ConversationMessage]:
        rules.check_limit(limit)
        everything = await super().get_messages(session_id, user_id, 0)
        ordered = sorted(everything, key=lambda record: record.created_at)
        return ordered if limit == 0 else ordered[-limit:]


class KeepsOneTooMany(SQLiteMemoryStorage):
    """An off-by-one in clean-up by limit: keeps keep_limit + 1 messages."""

    async def cleanup_messages_by_limit(
        self, user_id: str, session_id: str, keep_limit: int
    ) -> None:
        extra = 1 if isinstance(keep_limit, int) and keep_limit > 0 else 0
        await super().cleanup_messages_by_limit(user_id, session_id, keep_limit + extra)


class CleanupInclusive(SQLiteMemoryStorage):
    """Deletes messages stamped exactly ``before`` too (``<=`` instead of ``<``)."""

    async def cleanup_old_messages(self, user_id: str, before: int) -> None:
        bump = 1 if isinstance(before, int) and not isinstance(before, bool) and before >= 0 else 0
        await super().cleanup_old_messages(user_id, before + bump)


# --- memories --------------------------------------------------------------------------------


class ClearsByPrefix(SQLiteMemoryStorage):
    """Clears with ``LIKE user || '%'``: clearing "u" also clears "u:" and "user2"."""

    async def clear_user_memories(self, user_id: str) -> None:
        await super().clear_user_memories(user_id)
        table = self.database.table("ms_memories")

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(f"DELETE FROM {table} WHERE user_id LIKE ?", (user_id + "%",))

        await self.database.write(write)


class CaseSensitiveSearch(SQLiteMemoryStorage):
    """Searches with a case-sensitive substring test (``LIKE`` on a binary collation)."""

    async def search_user_memories(
        self, user_id: str, query: str, limit: int = 0
    ) -> list[UserMemory]:
        rules.check_text(query, what="query")
        rules.check_limit(limit)
        everything = await super().search_user_memories(user_id, "", 0)
        found = [m for m in everything if query in m.memory or query in m.input]
        return found if limit == 0 else found[:limit]


class UpdateIgnoresOwner(SQLiteMemoryStorage):
    """Updates a memory by id alone, so one user rewrites another's memory."""

    async def update_user_memory(self, memory: UserMemory) -> UserMemory:
        table = self.database.table("ms_memories")

        def owner(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(f"SELECT user_id FROM {table} WHERE id = ?", (memory.id,)).fetchone()
            return None if row is None else str(row[0])

        stored_owner = await self.database.read(owner) if isinstance(memory, UserMemory) else None
        if stored_owner is not None and stored_owner != memory.user_id:
            updated = await super().update_user_memory(
                UserMemory(memory.id, stored_owner, memory.memory, memory.input)
            )
            return UserMemory(
                updated.id,
                memory.user_id,
                updated.memory,
                updated.input,
                updated.created_at,
                updated.updated_at,
            )
        return await super().update_user_memory(memory)


class SemanticIsLastN(SQLiteMemoryStorage):
    """Quietly answers semantic retrieval with last_n, as the seed's SQL store does."""

    async def get_user_memories(
        self,
        user_id: str,
        limit: int = 0,
        retrieval: MemoryRetrieval = MemoryRetrieval.LAST_N,
        query: str | None = None,
    ) -> list[UserMemory]:
        if retrieval == MemoryRetrieval.SEMANTIC and query is not None:
            return await super().get_user_memories(user_id, limit, MemoryRetrieval.LAST_N)
        return await super().get_user_memories(user_id, limit, retrieval, query)


# --- keys and files --------------------------------------------------------------------------


class SummaryPerSession(JSONMemoryStorage):
    """Names a summary's file by the session alone, so two users of one session collide."""

    def _path(self, kind: str, *ids: str, suffix: str = ".json") -> Path:
        if kind == "summaries":
            ids = ids[:1]
        return super()._path(kind, *ids, suffix=suffix)


class GlobalOwnerIndex(RedisMemoryStorage):
    """Keeps the memory-id owner index outside the key prefix (one index for all namespaces)."""

    # Unique per process, so that runs against a shared server never meet each other's keys.
    _global = KeySpace(f"agentstores-owner-{uuid.uuid4().hex[:8]}:")

    def _owner_key(self, memory_id: str) -> str:
        return self._global.key("ms.owner", memory_id)


# --- backends --------------------------------------------------------------------------------


def _sqlite(cls: type[SQLiteMemoryStorage]) -> Opener:
    def opener(ctx: StoreContext) -> AbstractAsyncContextManager[Any]:
        path, prefix = context_location(ctx)
        return cls(path, prefix=prefix, clock=ctx.clock, embedder=ctx.options.get("embedder"))

    return opener


def _json(cls: type[JSONMemoryStorage]) -> Opener:
    def opener(ctx: StoreContext) -> AbstractAsyncContextManager[Any]:
        directory = ctx.root / ctx.namespace / "memory_storage"
        return cls(directory, clock=ctx.clock, embedder=ctx.options.get("embedder"))

    return opener


def _redis(cls: type[RedisMemoryStorage]) -> Opener:
    def opener(ctx: StoreContext) -> AbstractAsyncContextManager[Any]:
        return cls(
            server.current_url(),
            prefix=ctx.namespace + ":",
            clock=ctx.clock,
            embedder=ctx.options.get("embedder"),
        )

    return opener


def _backend(
    name: str,
    opener: Opener,
    *,
    capabilities: Sequence[Capability] = (),
    lifespan: Callable[[], Any] | None = None,
) -> Backend:
    return Backend(
        name=f"broken-{name}",
        openers={Family.MEMORY_STORAGE: opener},
        capabilities=frozenset({Capability.DURABLE, *capabilities}),
        lifespan=lifespan,
        description=f"memory storage with a bug: {name}",
    )


#: name -> (backend, the requirement the kit must report as failed).
BROKEN: dict[str, tuple[Backend, str]] = {
    "messages-newest-first": (_backend("messages-newest-first", _sqlite(NewestFirst)), "MS-19"),
    "limit-zero-is-nothing": (
        _backend("limit-zero-is-nothing", _sqlite(LimitZeroIsNothing)),
        "MS-19",
    ),
    "messages-ordered-by-time": (
        _backend("messages-ordered-by-time", _sqlite(OrderedByTime)),
        "MS-18",
    ),
    "cleanup-keeps-one-too-many": (
        _backend("cleanup-keeps-one-too-many", _sqlite(KeepsOneTooMany)),
        "MS-23",
    ),
    "cleanup-inclusive": (_backend("cleanup-inclusive", _sqlite(CleanupInclusive)), "MS-22"),
    "clear-by-prefix": (_backend("clear-by-prefix", _sqlite(ClearsByPrefix)), "MS-12"),
    "case-sensitive-search": (
        _backend("case-sensitive-search", _sqlite(CaseSensitiveSearch)),
        "MS-13",
    ),
    "update-ignores-owner": (
        _backend("update-ignores-owner", _sqlite(UpdateIgnoresOwner)),
        "MS-9",
    ),
    "semantic-is-last-n": (
        _backend(
            "semantic-is-last-n",
            _sqlite(SemanticIsLastN),
            capabilities=[Capability.SEMANTIC_SEARCH],
        ),
        "MS-7",
    ),
    "summary-per-session": (_backend("summary-per-session", _json(SummaryPerSession)), "MS-14"),
    "global-owner-index": (
        _backend("global-owner-index", _redis(GlobalOwnerIndex), lifespan=server.kit_lifespan),
        "MS-29",
    ),
}
