"""Broken state-session stores: each is a reference store with one bug real stores have had.

:data:`BROKEN` maps each broken backend to the requirement the kit must report as failed.
``tests/test_broken_state_session.py`` runs the suite on each and checks exactly that. The
first two reproduce the key and file names of agentscope's ``JSONSession`` and
``RedisSession``; the in-place writer is ``open(path, "w")`` followed by a chunked write.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from agentstores.conformance.backend import Backend, Capability, Family, StoreContext
from agentstores.reference import state_session_rules as rules
from agentstores.reference.jsonfile.state_session import FAMILY_DIRECTORY, JSONStateSessionStore
from agentstores.reference.redis import server
from agentstores.reference.redis._client import Script, text, translate_errors
from agentstores.reference.redis.state_session import RedisStateSessionStore
from agentstores.reference.sqlite._db import context_location
from agentstores.reference.sqlite.state_session import SQLiteStateSessionStore
from agentstores.spec.state_session import DEFAULT_USER_ID, StateModule
from agentstores.spec.values import JSONObject, dump_json

__all__ = ["BROKEN"]


# --- ids and names ---------------------------------------------------------------------------


class JoinedFileNames(JSONStateSessionStore):
    """Names session files ``{user}_{session}.json``, as agentscope's JSONSession does."""

    def session_path(self, session_id: str, user_id: str) -> Path:
        return self.directory / "sessions" / f"{user_id}_{session_id}.json"


class JoinedRedisKeys(RedisStateSessionStore):
    """Keys sessions ``user:{u}:session:{s}``, the pattern of agentscope's RedisSession."""

    def state_key(self, session_id: str, user_id: str) -> str:
        return f"{self._keys.prefix}user:{user_id}:session:{session_id}:state"


class EmptyUserIsDefault(JSONStateSessionStore):
    """Treats user id ``""`` as the default user (the seed's two defaults, merged)."""

    @staticmethod
    def _user(user_id: str) -> str:
        return DEFAULT_USER_ID if user_id == "" else user_id

    async def save_session_state(
        self, session_id: str, user_id: str = DEFAULT_USER_ID, **modules: StateModule
    ) -> None:
        await super().save_session_state(session_id, self._user(user_id), **modules)

    async def load_session_state(
        self,
        session_id: str,
        user_id: str = DEFAULT_USER_ID,
        allow_not_exist: bool = True,
        **modules: StateModule,
    ) -> None:
        await super().load_session_state(
            session_id, self._user(user_id), allow_not_exist, **modules
        )

    async def delete_session_state(self, session_id: str, user_id: str = DEFAULT_USER_ID) -> bool:
        return await super().delete_session_state(session_id, self._user(user_id))

    async def list_sessions(
        self, user_id: str = DEFAULT_USER_ID, *, after: str | None = None, limit: int | None = None
    ) -> list[str]:
        return await super().list_sessions(self._user(user_id), after=after, limit=limit)


# --- saving and loading ----------------------------------------------------------------------


class InPlaceWrites(JSONStateSessionStore):
    """Rewrites an existing session file in place, chunk by chunk, without the lock: a
    concurrent reader sees a truncated or half-written file."""

    async def save_session_state(
        self, session_id: str, user_id: str = DEFAULT_USER_ID, **modules: StateModule
    ) -> None:
        session, user = rules.check_session(session_id, user_id)
        path = self.session_path(session, user)
        if not path.exists():
            await super().save_session_state(session, user, **modules)
            return
        texts = rules.snapshot(modules)
        document = {"user_id": user, "session_id": session, "modules": {}}
        body = dump_json(document)[: -len("{}}")] + "{"
        body += ",".join(f"{dump_json(name)}:{state}" for name, state in texts.items()) + "}}"
        data = body.encode("utf-8")
        # Blocking, in-place and unlocked on purpose: that is the bug.
        with open(path, "r+b") as file:  # noqa: ASYNC230
            file.truncate(0)
            for start in range(0, len(data), 8192):
                file.write(data[start : start + 8192])
                file.flush()
                await asyncio.sleep(0.001)  # as a chunked async writer yields


class KeepsUnnamedModules(SQLiteStateSessionStore):
    """Merges a save into the stored state, so modules the save does not name survive."""

    async def save_session_state(
        self, session_id: str, user_id: str = DEFAULT_USER_ID, **modules: StateModule
    ) -> None:
        session, user = rules.check_session(session_id, user_id)
        table = self.database.table("state_modules")

        def stored(conn: sqlite3.Connection) -> list[tuple[str, str]]:
            rows = conn.execute(
                f"SELECT module, state FROM {table} WHERE user_id = ? AND session_id = ?",
                (user, session),
            ).fetchall()
            return [(str(name), str(state)) for name, state in rows]

        kept = rules.parse_states(dict(await self.database.read(stored)))
        merged: dict[str, Any] = {name: _Fixed(state) for name, state in kept.items()}
        await super().save_session_state(session, user, **{**merged, **modules})


class _Fixed:
    """A module that always has one state (to re-save what was stored)."""

    def __init__(self, state: JSONObject) -> None:
        self.state = state

    def state_dict(self) -> JSONObject:
        return self.state

    def load_state_dict(self, state_dict: JSONObject, /) -> None:
        self.state = state_dict


class MissingLoadIsQuiet(SQLiteStateSessionStore):
    """Returns quietly from a load of a missing session even with allow_not_exist=False."""

    async def load_session_state(
        self,
        session_id: str,
        user_id: str = DEFAULT_USER_ID,
        allow_not_exist: bool = True,
        **modules: StateModule,
    ) -> None:
        rules.check_load(session_id, user_id, allow_not_exist, modules)
        await super().load_session_state(session_id, user_id, True, **modules)


class NegativeLimitMeansAll(SQLiteStateSessionStore):
    """Reads ``limit=-1`` as "no limit", as some stores do."""

    async def list_sessions(
        self, user_id: str = DEFAULT_USER_ID, *, after: str | None = None, limit: int | None = None
    ) -> list[str]:
        if isinstance(limit, int) and limit < 0:
            limit = None
        return await super().list_sessions(user_id, after=after, limit=limit)


# --- time to live ----------------------------------------------------------------------------


class LoadDoesNotSlide(RedisStateSessionStore):
    """Reads with plain HMGET: a load never restarts the time to live."""

    async def load_session_state(
        self,
        session_id: str,
        user_id: str = DEFAULT_USER_ID,
        allow_not_exist: bool = True,
        **modules: StateModule,
    ) -> None:
        session, user, names = rules.check_load(session_id, user_id, allow_not_exist, modules)
        async with translate_errors("load"):
            values = await self.client.hmget(self.state_key(session, user), ["", *names])
        if values[0] is None:
            if allow_not_exist:
                return
            raise rules.missing(session, user)
        texts = {n: v for n, v in zip(names, values[1:], strict=True) if v is not None}
        rules.restore(modules, rules.parse_states(texts))


_SAVE_DROPPING_TTL = Script(
    """
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], '', '1')
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
if ARGV[1] ~= '' then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
redis.call('ZADD', KEYS[2], 0, ARGV[2])
return 1
"""
)


class SaveWithoutTtlIsPermanent(RedisStateSessionStore):
    """Replaces the hash without carrying its expiry over: a handle without TTL makes another
    handle's expiring session permanent (a plain ``SET`` without ``KEEPTTL``)."""

    async def save_session_state(
        self, session_id: str, user_id: str = DEFAULT_USER_ID, **modules: StateModule
    ) -> None:
        session, user = rules.check_session(session_id, user_id)
        texts = rules.snapshot(modules)
        args = [self._ttl_arg, session, *(x for pair in texts.items() for x in pair)]
        keys = [self.state_key(session, user), self.sessions_key(user)]
        async with translate_errors("save"):
            await _SAVE_DROPPING_TTL(self.client, keys, args)


class ListsExpiredSessions(RedisStateSessionStore):
    """Lists the user's sorted set as it is, expired sessions included."""

    async def list_sessions(
        self, user_id: str = DEFAULT_USER_ID, *, after: str | None = None, limit: int | None = None
    ) -> list[str]:
        user, after_id, count = rules.check_list(user_id, after, limit)
        if count == 0:
            return []
        low = "-" if after_id is None else "(" + after_id
        async with translate_errors("list"):
            members = await self.client.zrange(
                self.sessions_key(user),
                low,
                "+",
                bylex=True,
                offset=0,
                num=-1 if count is None else count,
            )
        return [text(m) for m in members]


# --- backends --------------------------------------------------------------------------------

_CAPABILITIES = frozenset({Capability.DURABLE, Capability.TTL})


def _json(cls: type[JSONStateSessionStore]) -> Callable[[StoreContext], Any]:
    def opener(ctx: StoreContext) -> AbstractAsyncContextManager[JSONStateSessionStore]:
        return cls(
            ctx.root / ctx.namespace / FAMILY_DIRECTORY,
            ttl_seconds=ctx.options.get(rules.TTL_OPTION),
            clock=ctx.clock,
        )

    return opener


def _sqlite(cls: type[SQLiteStateSessionStore]) -> Callable[[StoreContext], Any]:
    def opener(ctx: StoreContext) -> AbstractAsyncContextManager[SQLiteStateSessionStore]:
        path, prefix = context_location(ctx)
        return cls(
            path, prefix=prefix, ttl_seconds=ctx.options.get(rules.TTL_OPTION), clock=ctx.clock
        )

    return opener


def _redis(cls: type[RedisStateSessionStore]) -> Callable[[StoreContext], Any]:
    def opener(ctx: StoreContext) -> AbstractAsyncContextManager[RedisStateSessionStore]:
        return cls(
            server.current_url(),
            prefix=ctx.namespace + ":",
            ttl_seconds=ctx.options.get(rules.TTL_OPTION),
        )

    return opener


def _backend(name: str, opener: Callable[[StoreContext], Any], *, redis: bool = False) -> Backend:
    return Backend(
        name=f"broken-state-session-{name}",
        openers={Family.STATE_SESSION: opener},
        capabilities=_CAPABILITIES,
        lifespan=server.kit_lifespan if redis else None,
        description=f"a reference state-session store with one bug: {name}",
    )


#: Each broken backend and the requirement the suite must report as failed for it.
BROKEN: dict[str, tuple[Backend, str]] = {
    "joined-file-names": (_backend("joined-file-names", _json(JoinedFileNames)), "ST-11"),
    "joined-redis-keys": (
        _backend("joined-redis-keys", _redis(JoinedRedisKeys), redis=True),
        "ST-11",
    ),
    "empty-user-is-default": (
        _backend("empty-user-is-default", _json(EmptyUserIsDefault)),
        "ST-1",
    ),
    "in-place-writes": (_backend("in-place-writes", _json(InPlaceWrites)), "ST-7"),
    "keeps-unnamed-modules": (
        _backend("keeps-unnamed-modules", _sqlite(KeepsUnnamedModules)),
        "ST-3",
    ),
    "missing-load-is-quiet": (
        _backend("missing-load-is-quiet", _sqlite(MissingLoadIsQuiet)),
        "ST-5",
    ),
    "negative-limit-means-all": (
        _backend("negative-limit-means-all", _sqlite(NegativeLimitMeansAll)),
        "ST-9",
    ),
    "load-does-not-slide": (
        _backend("load-does-not-slide", _redis(LoadDoesNotSlide), redis=True),
        "ST-16",
    ),
    "save-without-ttl-is-permanent": (
        _backend("save-without-ttl-is-permanent", _redis(SaveWithoutTtlIsPermanent), redis=True),
        "ST-17",
    ),
    "lists-expired-sessions": (
        _backend("lists-expired-sessions", _redis(ListsExpiredSessions), redis=True),
        "ST-15",
    ),
}
