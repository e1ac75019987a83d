"""Broken session stores: each is a reference store with one bug that real stores have had.

:data:`BROKEN` maps each broken backend's name to the backend and the requirement the kit must
report as failed. ``tests/test_broken_session_store.py`` runs the suite on each and checks
exactly that.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
from typing import Any, TypeVar

from agentstores.conformance.backend import Backend, Capability, Family, Opener, StoreContext
from agentstores.reference import session_store_rules as rules
from agentstores.reference.jsonfile._files import Transaction
from agentstores.reference.jsonfile.session_store import JSONSessionStore
from agentstores.reference.redis import server
from agentstores.reference.redis.session_store import RedisSessionStore
from agentstores.reference.sqlite._db import context_location
from agentstores.reference.sqlite.session_store import SQLiteSessionStore
from agentstores.spec.errors import NotFound
from agentstores.spec.messages import Message, message_to_json
from agentstores.spec.session_store import (
    ChatHistoryMatch,
    Session,
    SessionType,
    TokenStatsUpdate,
)
from agentstores.spec.values import dump_json

__all__ = ["BROKEN"]

S = TypeVar("S")


# --- openers ---------------------------------------------------------------------------------


def _json(cls: type[JSONSessionStore]) -> Opener:
    def opener(ctx: StoreContext) -> AbstractAsyncContextManager[JSONSessionStore]:
        return cls(ctx.root / ctx.namespace, clock=ctx.clock)

    return opener


def _sqlite(cls: type[SQLiteSessionStore]) -> Opener:
    def opener(ctx: StoreContext) -> AbstractAsyncContextManager[SQLiteSessionStore]:
        path, prefix = context_location(ctx)
        return cls(path, prefix=prefix, clock=ctx.clock)

    return opener


def _redis(cls: type[RedisSessionStore]) -> Opener:
    @asynccontextmanager
    async def opener(ctx: StoreContext) -> AsyncIterator[RedisSessionStore]:
        async with cls(server.current_url(), prefix=ctx.namespace + ":", clock=ctx.clock) as store:
            yield store

    return opener


# --- conversation bugs -----------------------------------------------------------------------


class TruncateExclusive(JSONSessionStore):
    """Truncates "after" the timestamp, as the seed documents it, keeping the message at it."""

    async def truncate_conversation(self, session_id: str, timestamp: int) -> None:
        await super().truncate_conversation(session_id, timestamp + 1)


class AppendWithoutStamp(RedisSessionStore):
    """Appends with a bare RPUSH and forgets to bump updated_at."""

    async def add_message(self, session_id: str, message: Message) -> None:
        rules.check_session_id(session_id)
        (checked,) = rules.check_conversation([message])
        hash_key, _, messages_key, times_key = self.session_keys(session_id)
        if not await self.client.exists(hash_key):
            raise NotFound(session_id)
        await self.client.rpush(messages_key, dump_json(message_to_json(checked)))
        code = "-" if checked.created_at is None else f"{checked.created_at:016x}"
        await self.client.rpush(times_key, code)


class AppendByRewrite(RedisSessionStore):
    """Appends by reading the whole conversation and writing it back (O(n), and two tasks
    appending at once lose one another's messages)."""

    async def add_message(self, session_id: str, message: Message) -> None:
        rules.check_session_id(session_id)
        (checked,) = rules.check_conversation([message])
        current = await self.get_session(session_id, include_messages=True)
        assert current.conversation is not None
        await self.replace_conversation(session_id, [*current.conversation, checked])


class AlwaysWithMessages(RedisSessionStore):
    """Returns the conversation even when it was not asked for."""

    async def get_session(self, session_id: str, include_messages: bool = False) -> Session:
        rules.check_include_messages(include_messages)
        return await super().get_session(session_id, True)


class DeleteKeepsMessages(SQLiteSessionStore):
    """Deletes the session row and leaves its messages behind (no cascade)."""

    async def delete_session(self, session_id: str) -> None:
        rules.check_session_id(session_id)
        sessions = self.database.table("ss_sessions")

        def write(conn: sqlite3.Connection) -> None:
            cursor = conn.execute(f"DELETE FROM {sessions} WHERE session_id = ?", (session_id,))
            if cursor.rowcount == 0:
                raise NotFound(session_id)

        await self.database.write(write)


# --- update and listing bugs -----------------------------------------------------------------


class TokenUpdateOverwrites(SQLiteSessionStore):
    """Writes every field of a token update, so absent (None) fields erase stored counters."""

    async def update_token_stats(self, session_id: str, stats: TokenStatsUpdate) -> None:
        rules.check_session_id(session_id)
        rules.check_token_stats(stats)
        names = ("schedule_id", *rules.COUNTER_FIELDS)
        await self._update_fields(session_id, {name: getattr(stats, name) for name in names})


class ListByCreatedAt(SQLiteSessionStore):
    """Lists the newest created sessions first instead of the most recently updated."""

    async def _list(self, types: frozenset[SessionType]) -> list[Session]:
        listed = await super()._list(types)
        return sorted(listed, key=lambda s: (-s.created_at, s.id))


# --- id bugs ---------------------------------------------------------------------------------


class IdFromMaximum(SQLiteSessionStore):
    """Numbers a day's sessions from the highest existing one (as goose's SQLite code does), so
    deleting the newest session frees its id for the next."""

    def _new_id(self, conn: sqlite3.Connection, now: int) -> str:
        day = rules.day_of(now)
        rows = conn.execute(f"SELECT session_id FROM {self.database.table('ss_sessions')}")
        ids = [str(row[0]) for row in rows]
        numbers = [int(i.rsplit("_", 1)[1]) for i in ids if i.startswith(day + "_")]
        return rules.format_session_id(day, max(numbers, default=0) + 1)


class VolatileIdCounter(JSONSessionStore):
    """Keeps the id counter in memory: a reopened store starts counting at 1 again."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._counters: dict[str, int] = {}

    def _new_id(self, transaction: Transaction, now: int) -> str:
        day = rules.day_of(now)
        self._counters[day] = self._counters.get(day, 0) + 1
        return rules.format_session_id(day, self._counters[day])


# --- export, import and copy bugs --------------------------------------------------------------


class ImportKeepsId(JSONSessionStore):
    """Imports under the exported id instead of a new one (overwriting a session of that id)."""

    async def import_session(self, document: str) -> Session:
        template, conversation = rules.parse_export(document)
        lines = [message_to_json(m) for m in conversation]
        now = self._clock()

        def create() -> Session:
            return self._create(
                lambda _: rules.imported_session(template, template.id, now), lines, now
            )

        return await self._dir.run(create)


class ImportAnyVersion(SQLiteSessionStore):
    """Imports documents of any version, as if every future format were version 1."""

    async def import_session(self, document: str) -> Session:
        try:
            data = json.loads(document)
        except (TypeError, ValueError):
            return await super().import_session(document)
        if isinstance(data, dict) and "version" in data:
            data["version"] = 1
            document = json.dumps(data)
        return await super().import_session(document)


class CopyCarriesTokens(JSONSessionStore):
    """Copies the token counters along with the rest."""

    async def copy_session(self, session_id: str, new_name: str) -> Session:
        copied = await super().copy_session(session_id, new_name)
        source = await self.get_session(session_id)
        counters = {name: getattr(source, name) for name in rules.COUNTER_FIELDS}
        await self.update_token_stats(copied.id, TokenStatsUpdate(**counters))
        return replace(copied, **counters)


# --- search bugs -----------------------------------------------------------------------------


class SearchIgnoresExclusion(RedisSessionStore):
    """Searches every session, the excluded one too."""

    async def search_chat_history(
        self,
        query: str,
        limit: int | None = None,
        after_date: int | None = None,
        before_date: int | None = None,
        exclude_session_id: str | None = None,
    ) -> list[ChatHistoryMatch]:
        return await super().search_chat_history(query, limit, after_date, before_date, None)


class SearchCaseSensitive(JSONSessionStore):
    """Matches words case-sensitively."""

    async def search_chat_history(
        self,
        query: str,
        limit: int | None = None,
        after_date: int | None = None,
        before_date: int | None = None,
        exclude_session_id: str | None = None,
    ) -> list[ChatHistoryMatch]:
        request = rules.check_search(query, limit, after_date, before_date, exclude_session_id)
        every = await super().search_chat_history(
            query, 2**62, after_date, before_date, exclude_session_id
        )
        words: Sequence[str] = query.split()
        kept = [m for m in every if any(word in m.message_content for word in words)]
        return kept[: request.limit]


class SearchBeforeInclusive(SQLiteSessionStore):
    """Includes messages created exactly at before_date."""

    async def search_chat_history(
        self,
        query: str,
        limit: int | None = None,
        after_date: int | None = None,
        before_date: int | None = None,
        exclude_session_id: str | None = None,
    ) -> list[ChatHistoryMatch]:
        if isinstance(before_date, int) and not isinstance(before_date, bool):
            before_date += 1
        return await super().search_chat_history(
            query, limit, after_date, before_date, exclude_session_id
        )


# --- the table -------------------------------------------------------------------------------

_JSON = (_json, frozenset({Capability.DURABLE}), None)
_SQLITE = (_sqlite, frozenset({Capability.DURABLE}), None)
_REDIS = (_redis, frozenset({Capability.DURABLE}), server.kit_lifespan)


def _backend(name: str, cls: type[Any], engine: tuple[Any, ...]) -> Backend:
    make_opener: Callable[[type[Any]], Opener]
    make_opener, capabilities, lifespan = engine
    return Backend(
        name=f"broken-{name}",
        openers={Family.SESSION_STORE: make_opener(cls)},
        capabilities=capabilities,
        lifespan=lifespan,
        description=cls.__doc__ or "",
    )


#: name -> (backend, the requirement the suite must report as failed)
BROKEN: dict[str, tuple[Backend, str]] = {
    "truncate-exclusive": (_backend("truncate-exclusive", TruncateExclusive, _JSON), "SS-10"),
    "append-without-stamp": (
        _backend("append-without-stamp", AppendWithoutStamp, _REDIS),
        "SS-8",
    ),
    "append-by-rewrite": (_backend("append-by-rewrite", AppendByRewrite, _REDIS), "SS-23"),
    "always-with-messages": (
        _backend("always-with-messages", AlwaysWithMessages, _REDIS),
        "SS-5",
    ),
    "delete-keeps-messages": (
        _backend("delete-keeps-messages", DeleteKeepsMessages, _SQLITE),
        "SS-7",
    ),
    "token-update-overwrites": (
        _backend("token-update-overwrites", TokenUpdateOverwrites, _SQLITE),
        "SS-12",
    ),
    "list-by-created-at": (_backend("list-by-created-at", ListByCreatedAt, _SQLITE), "SS-6"),
    "id-from-maximum": (_backend("id-from-maximum", IdFromMaximum, _SQLITE), "SS-4"),
    "volatile-id-counter": (
        _backend("volatile-id-counter", VolatileIdCounter, _JSON),
        "SS-24",
    ),
    "import-keeps-id": (_backend("import-keeps-id", ImportKeepsId, _JSON), "SS-18"),
    "import-any-version": (_backend("import-any-version", ImportAnyVersion, _SQLITE), "SS-18"),
    "copy-carries-tokens": (_backend("copy-carries-tokens", CopyCarriesTokens, _JSON), "SS-19"),
    "search-ignores-exclusion": (
        _backend("search-ignores-exclusion", SearchIgnoresExclusion, _REDIS),
        "SS-20",
    ),
    "search-case-sensitive": (
        _backend("search-case-sensitive", SearchCaseSensitive, _JSON),
        "SS-20",
    ),
    "search-before-inclusive": (
        _backend("search-before-inclusive", SearchBeforeInclusive, _SQLITE),
        "SS-21",
    ),
}
