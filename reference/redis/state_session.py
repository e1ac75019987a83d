"""The state-session family on Redis (spec ``state_session.md``): one hash per session, one
lexicographic sorted set per user, Lua scripts for every write.

Keys (layout and escaping in :mod:`agentstores.reference.redis._client`; ``U`` a user id,
``S`` a session id)::

    {#:U}st.state:S     hash   "" -> "1" (the session exists), module name -> state as JSON
    {#:U}st.sessions    zset   the user's session ids, all scores 0 (so ordered by bytes)

Both keys of a session carry the user's hash tag, so every operation touches one cluster slot
and a user's sessions spread over the cluster with the users. Components are escaped, so no
two (user, session) pairs share a key whatever they contain (ST-11); the empty field name
cannot be a module name (module names are ids, G-1).

On a Redis Cluster (a ``RedisCluster`` client, or a node's URL with ``cluster=True``): every
script declares keys of one user's tag, so each runs whole on the primary of that user's slot.
No operation spans users: ``list_sessions`` reads the user's sorted set and checks each batch
against the hashes in one script, all in the user's slot, so it costs what it costs on one
server. A user's sessions live on one shard; many users spread over the cluster.

TTL is Redis's own key expiry (milliseconds on the server's clock): a store configured with a
TTL sets ``PEXPIRE`` on every save and in the load script when the session is found, so the
deadline slides (ST-16); a store without one re-applies the remaining time it finds before
replacing the hash, so a save never makes expiring data permanent (ST-17: scripts see one
frozen time, so the deadline is kept to the millisecond). The user's sorted set is never
expired: members whose hash is gone (expired) are removed when a listing meets them, in a
script that re-checks each hash, so a concurrent save is never unlisted.

Every write is one script (:data:`_SAVE`, :data:`_DELETE`); the load is a script too, so its
read and the sliding expiry happen together. Scripts run in isolation, so a load never sees a
half-replaced hash (ST-7). JSON is produced and parsed in Python only (exact big integers and
``-0.0``); Lua only moves strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import redis.asyncio as aioredis

from agentstores.spec.state_session import DEFAULT_USER_ID, StateModule

from .. import state_session_rules as rules
from ._client import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_POOL_TIMEOUT,
    DEFAULT_SOCKET_TIMEOUT,
    RedisClient,
    Script,
    text,
    translate_errors,
)
from ._store import RedisStore, kit_openers

__all__ = ["RedisStateSessionStore", "open_cluster_store", "open_store"]

#: How many members of a user's sorted set a listing checks per round trip.
_LIST_BATCH = 256

# KEYS: state hash, user's sessions. ARGV: ttl ms or "", session id, name, state, name, ...
_SAVE = Script(
    """
local keep = nil
if ARGV[1] == '' then
  local left = redis.call('PTTL', KEYS[1])
  if left > 0 then keep = left end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], '', '1')
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
if ARGV[1] ~= '' then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
elseif keep then
  redis.call('PEXPIRE', KEYS[1], keep)
end
redis.call('ZADD', KEYS[2], 0, ARGV[2])
return 1
"""
)

# KEYS: state hash. ARGV: ttl ms or "", module names. Returns nil, or {"1", state or nil, ...}.
_LOAD = Script(
    """
local values = redis.call('HMGET', KEYS[1], '', unpack(ARGV, 2))
if not values[1] then
  return false
end
if ARGV[1] ~= '' then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return values
"""
)

# KEYS: state hash, user's sessions. ARGV: session id. Returns 1 if the session existed.
_DELETE = Script(
    """
local removed = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return removed
"""
)

# KEYS: user's sessions, then the state hash of each member. ARGV: the members.
# Returns the members whose hash exists; unlists the others (expired or left by a crash).
_PRUNE = Script(
    """
local alive = {}
for i = 2, #ARGV + 1 do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    alive[#alive + 1] = ARGV[i - 1]
  else
    redis.call('ZREM', KEYS[1], ARGV[i - 1])
  end
end
return alive
"""
)


class RedisStateSessionStore(RedisStore):
    """A :class:`~agentstores.spec.state_session.StateSessionStore` on Redis.

    Args:
        url: a Redis URL (``redis://host:6379/0``); or give ``client`` (a ``Redis`` or
            ``RedisCluster``) or ``connection_pool`` instead (exactly one of the three; a
            caller's client or pool is not closed here).
        cluster: ``url`` names a node of a Redis Cluster.
        prefix: prepended to every key (no ``{`` or ``}``); stores with distinct prefixes never
            see each other's sessions (ST-12).
        ttl_seconds: the time to live of sessions this store saves or loads (ST-15 .. ST-17),
            a positive int, measured by the server; None (default) for none (ST-18).
        socket_connect_timeout, socket_timeout, max_connections, pool_timeout: for a client
            made from ``url``: seconds to connect, seconds to wait for each reply, the most
            connections the store opens, and seconds a call waits for a free one; a call that
            runs out of any of them raises StorageUnavailable (G-22). See
            :class:`~agentstores.reference.redis._client.ClientHandle`.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: RedisClient | None = None,
        connection_pool: aioredis.ConnectionPool | None = None,
        cluster: bool = False,
        prefix: str = "agentstores:",
        ttl_seconds: int | None = None,
        socket_connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        pool_timeout: float = DEFAULT_POOL_TIMEOUT,
    ) -> None:
        ttl_ms = rules.ttl_milliseconds(ttl_seconds)
        self._ttl_arg = "" if ttl_ms is None else str(ttl_ms)
        super().__init__(
            url=url,
            client=client,
            connection_pool=connection_pool,
            cluster=cluster,
            prefix=prefix,
            socket_connect_timeout=socket_connect_timeout,
            socket_timeout=socket_timeout,
            max_connections=max_connections,
            pool_timeout=pool_timeout,
        )

    def state_key(self, session_id: str, user_id: str) -> str:
        """The key of a session's hash: a back door for tests (layout in the module doc)."""
        return self._keys.key("st.state", session_id, tag=(user_id,))

    def sessions_key(self, user_id: str) -> str:
        """The key of a user's sorted set of session ids."""
        return self._keys.key("st.sessions", tag=(user_id,))

    @property
    def client(self) -> RedisClient:
        """The Redis client (for tests and tools; writing keys directly bypasses the spec)."""
        return self._handle.client

    # --- the protocol ----------------------------------------------------------------------

    async def save_session_state(
        self,
        session_id: str,
        user_id: str = DEFAULT_USER_ID,
        **state_modules_mapping: StateModule,
    ) -> None:
        """Replace the session's whole state with the named modules' (ST-2, ST-3, ST-7)."""
        session, user = rules.check_session(session_id, user_id)
        texts = rules.snapshot(state_modules_mapping)
        args: list[str] = [self._ttl_arg, session]
        for name, state in texts.items():
            args += [name, state]
        async with translate_errors("save_session_state"):
            await _SAVE(
                self._handle.client, [self.state_key(session, user), self.sessions_key(user)], args
            )

    async def load_session_state(
        self,
        session_id: str,
        user_id: str = DEFAULT_USER_ID,
        allow_not_exist: bool = True,
        **state_modules_mapping: StateModule,
    ) -> None:
        """Restore each named module the session has (ST-4, ST-5); a TTL slides (ST-16)."""
        session, user, names = rules.check_load(
            session_id, user_id, allow_not_exist, state_modules_mapping
        )
        async with translate_errors("load_session_state"):
            reply = await _LOAD(
                self._handle.client, [self.state_key(session, user)], [self._ttl_arg, *names]
            )
        if reply is None:
            if allow_not_exist:
                return
            raise rules.missing(session, user)
        values: Sequence[bytes | str | None] = reply[1:]
        texts = {
            name: value for name, value in zip(names, values, strict=True) if value is not None
        }
        rules.restore(state_modules_mapping, rules.parse_states(texts))

    async def delete_session_state(self, session_id: str, user_id: str = DEFAULT_USER_ID) -> bool:
        """Delete the session; whether it existed (ST-8)."""
        session, user = rules.check_session(session_id, user_id)
        async with translate_errors("delete_session_state"):
            removed = await _DELETE(
                self._handle.client,
                [self.state_key(session, user), self.sessions_key(user)],
                [session],
            )
        return bool(removed)

    async def list_sessions(
        self,
        user_id: str = DEFAULT_USER_ID,
        *,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[str]:
        """The user's live session ids in code-point order, after ``after`` (ST-9, ST-10).

        UTF-8 byte order is code-point order, so the sorted set's order is the spec's; each
        batch is checked against the hashes in one script, which drops expired members.
        """
        user, after_id, count = rules.check_list(user_id, after, limit)
        index = self.sessions_key(user)
        found: list[str] = []
        low = "-" if after_id is None else "(" + after_id
        async with translate_errors("list_sessions"):
            while count is None or len(found) < count:
                want = _LIST_BATCH if count is None else min(_LIST_BATCH, count - len(found))
                # Without scores, ZRANGE replies with the members only.
                reply = cast(
                    "list[bytes | str]",
                    await self._handle.client.zrange(
                        index, low, "+", bylex=True, offset=0, num=want
                    ),
                )
                members = [text(member) for member in reply]
                if not members:
                    break
                keys = [index, *(self.state_key(member, user) for member in members)]
                alive = await _PRUNE(self._handle.client, keys, members)
                found += [text(member) for member in alive]
                if len(members) < want:
                    break
                low = "(" + members[-1]
        return found


open_store, open_cluster_store = kit_openers(
    lambda context, connection: RedisStateSessionStore(
        **connection, ttl_seconds=context.options.get(rules.TTL_OPTION)
    ),
    note="The TTL is that of the context option ``ttl_seconds``.",
)
