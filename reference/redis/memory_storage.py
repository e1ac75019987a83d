"""The Redis memory store (spec ``memory_storage.md``).

Keys (see :class:`~._client.KeySpace`; the seed's table prefix is the key prefix, MS-29).
Conversations and summaries carry the user's hash tag; memories carry the store's tag:

* ``ms.mems:<user>`` (hash, store slot): memory id -> the memory as JSON;
* ``ms.owner:<memory id>`` (string, store slot): the owner of a memory id, so that ids are
  unique in the store (MS-3) and ``delete_user_memory`` finds a memory by id alone (MS-10);
* ``ms.schema`` (string, store slot): the layout version (MS-28);
* ``ms.sum:<session>`` (hash, user slot): ``summary``, ``created_at``, ``updated_at``;
* ``ms.order:<session>`` (list, user slot): message ids in save order (MS-18);
  ``ms.data:<session>`` (hash): id -> the stored message as JSON;
  ``ms.time:<session>`` (sorted set): id scored by ``created_at``, for retention (MS-22);
* ``ms.sessions`` (set, user slot): the sessions in which the user has messages.

Costs: saving a message is one script of O(1) commands; the newest N messages are one
script of one ``LRANGE`` of N ids and one ``HMGET``, which returns the records as one text
(:func:`~._client.unframe`), decoded by shape (they were checked before they were written;
damaged data is StorageUnavailable); the count is ``LLEN``; clean-up by limit touches only
the dropped messages of that one conversation; clean-up by time rebuilds the list of each
conversation of the user that loses messages. A user's memories are read whole (``HVALS``)
and ordered, searched or ranked in Python; semantic retrieval embeds them all with the query.

Every write is one Lua script, atomic on the server. Where a script needs what the store read
first (the owner of an id, the members to clear, a memory's creation time), it re-checks that
state and the store retries if another client changed it meanwhile. Sorted-set scores are
doubles: times beyond 2**53 ms (year 287396) would lose precision in retention.

Slots and clusters (a ``RedisCluster`` client, or a node's URL with ``cluster=True``): every
script declares keys of one tag. Memory ids are unique across users and deletable by id alone,
so an id's owner key must change in the same script as the owner's memories: both live in the
store's slot. Claiming an id in one slot and storing the memory in another would leave, after
a failure between the two steps, an id that is taken but has no memory. So one store's
memories live on one shard (they are few and short: facts distilled from conversations), while
the bulk, conversations and summaries, spreads over the cluster with the users. The operations
that span a user's sessions (``cleanup_old_messages``, the session set it reads) stay in that
user's slot, and no operation spans users, so nothing is read across slots.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Self

import redis.asyncio as aioredis

from agentstores.spec.errors import AlreadyExists, NotFound, NotSupported, StorageUnavailable
from agentstores.spec.memory_storage import (
    ConversationMessage,
    Embedder,
    MemoryRetrieval,
    SessionSummary,
    UserMemory,
)
from agentstores.spec.messages import Message, message_to_json
from agentstores.spec.values import Clock, check_id, dump_json, system_clock

from .. import memory_storage_rules as rules
from .._records import is_plain, message_from_stored, scan_all, scan_json
from ._client import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_POOL_TIMEOUT,
    DEFAULT_SOCKET_TIMEOUT,
    RedisClient,
    Script,
    encode_json,
    load_record,
    text,
    translate_errors,
    unframe,
)
from ._store import RedisStore, kit_openers

__all__ = ["SCHEMA_VERSION", "RedisMemoryStorage", "open_cluster_store", "open_store"]

#: The layout version kept in the store's ``ms.schema`` key (MS-28).
SCHEMA_VERSION = 1
#: How often a store re-runs a script whose precondition another client changed meanwhile.
_RETRIES = 100
#: How many conversations' key lists a store remembers (a few hundred kilobytes at most).
_RECENT_KEYS = 1024

# Lua keeps at most a few thousand values on its stack: big id lists go in chunks.
_CHUNKED = """
local function chunked(command, key, items)
  for i = 1, #items, 500 do
    redis.call(command, key, unpack(items, i, math.min(i + 499, #items)))
  end
end
"""

_SAVE_MEMORY = Script(
    """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1
"""
)

# Replace a memory only if it is still what the caller read (its creation time stays).
_REPLACE_MEMORY = Script(
    """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""
)

_DELETE_OWNED = Script(
    """
if redis.call('GET', KEYS[1]) ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
"""
)

# KEYS[1] the user's memories, KEYS[1 + i] the owner key of ARGV[i].
_DELETE_BY_IDS = Script(
    """
for i = 1, #ARGV do
  if redis.call('HDEL', KEYS[1], ARGV[i]) == 1 then redis.call('DEL', KEYS[i + 1]) end
end
return 1
"""
)

# Clear only if the user's memories are exactly ARGV (else someone added one: retry).
_CLEAR = Script(
    """
if redis.call('HLEN', KEYS[1]) ~= #ARGV then return 0 end
for i = 1, #ARGV do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 0 then return 0 end
end
for i = 1, #ARGV + 1 do redis.call('DEL', KEYS[i]) end
return 1
"""
)

_PUT_SUMMARY = Script(
    """
if ARGV[3] == '1' and redis.call('EXISTS', KEYS[1]) == 0 then return false end
redis.call('HSETNX', KEYS[1], 'created_at', ARGV[2])
redis.call('HSET', KEYS[1], 'summary', ARGV[1], 'updated_at', ARGV[2])
return redis.call('HGET', KEYS[1], 'created_at')
"""
)

# KEYS: order, data, time, sessions. ARGV: id, record, created_at, session id.
_SAVE_MESSAGE = Script(
    """
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[4])
return 1
"""
)

# One text (see _client.unframe): the number of records, then the records ('' for a listed id
# without data), joined by FRAME_SEPARATOR.
_GET_MESSAGES = Script(
    """
local limit = tonumber(ARGV[1])
local ids
if limit == 0 then ids = redis.call('LRANGE', KEYS[1], 0, -1)
else ids = redis.call('LRANGE', KEYS[1], -limit, -1) end
local sep = string.char(30)
if #ids == 0 then return '0' end
if #ids <= 500 then  -- the usual read: the records joined as they come
  local records = redis.call('HMGET', KEYS[2], unpack(ids))
  for j = 1, #records do if not records[j] then records[j] = '' end end
  return #ids .. sep .. table.concat(records, sep)
end
local out = {tostring(#ids)}
for i = 1, #ids, 500 do  -- unpack has a stack limit
  local part = redis.call('HMGET', KEYS[2], unpack(ids, i, math.min(i + 499, #ids)))
  for j = 1, #part do out[#out + 1] = part[j] or '' end
end
return table.concat(out, sep)
"""
)

_DELETE_MESSAGES = Script(
    """
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('SREM', KEYS[4], ARGV[1])
return 1
"""
)

_CLEANUP_BY_LIMIT = Script(
    _CHUNKED
    + """
local drop = redis.call('LLEN', KEYS[1]) - tonumber(ARGV[1])
if drop <= 0 then return 0 end
local ids = redis.call('LRANGE', KEYS[1], 0, drop - 1)
redis.call('LTRIM', KEYS[1], drop, -1)
chunked('HDEL', KEYS[2], ids)
chunked('ZREM', KEYS[3], ids)
return drop
"""
)

# KEYS[1] the user's sessions; then (order, data, time) per session ARGV[1 + i].
# ARGV[1] the bound; the sessions must be exactly ARGV[2..] (else retry).
_CLEANUP_OLD = Script(
    _CHUNKED
    + """
if redis.call('SCARD', KEYS[1]) ~= #ARGV - 1 then return 0 end
for i = 2, #ARGV do
  if redis.call('SISMEMBER', KEYS[1], ARGV[i]) == 0 then return 0 end
end
for i = 2, #ARGV do
  local order, data, time = KEYS[3 * i - 4], KEYS[3 * i - 3], KEYS[3 * i - 2]
  local old = redis.call('ZRANGEBYSCORE', time, '-inf', '(' .. ARGV[1])
  if #old > 0 then
    if #old == redis.call('LLEN', order) then
      redis.call('DEL', order, data, time)
      redis.call('SREM', KEYS[1], ARGV[i])
    else
      local gone = {}
      for _, id in ipairs(old) do gone[id] = true end
      local kept = {}
      for _, id in ipairs(redis.call('LRANGE', order, 0, -1)) do
        if not gone[id] then kept[#kept + 1] = id end
      end
      redis.call('DEL', order)
      chunked('RPUSH', order, kept)
      chunked('HDEL', data, old)
      redis.call('ZREMRANGEBYSCORE', time, '-inf', '(' .. ARGV[1])
    end
  end
end
return 1
"""
)

_MIGRATE = Script(
    """
redis.call('SETNX', KEYS[1], ARGV[1])
return redis.call('GET', KEYS[1])
"""
)


def _new_message_id() -> str:
    """A fresh message id: 32 hex digits, as ``rules.new_message_id`` gives (MS-17), without
    building a UUID."""
    return os.urandom(16).hex()


_RECORD_KEYS = frozenset(("id", "session_id", "user_id", "created_at", "message"))
_MESSAGE_KEYS = frozenset(("role", "content", "created_at", "id", "metadata"))
# _decode_record fills the records' __dict__ itself (_records.assemble, inlined: the hot path
# of get_messages), which is only right for plain frozen dataclasses.
if not is_plain(ConversationMessage, Message):  # pragma: no cover - the spec's records are
    raise ImportError("ConversationMessage and Message must be plain frozen dataclasses")
_new = object.__new__
_fill = object.__setattr__


def _decode_record(body: str) -> ConversationMessage:
    """The message whose stored record is ``body`` (``conversation_message_to_json``'s text),
    in fresh objects; StorageUnavailable if it is not of that shape (damaged data)."""
    try:
        try:
            obj, end = scan_json(body, 0)
        except StopIteration as exc:
            raise ValueError(f"not JSON at {exc.value}") from None
        if end != len(body):
            raise TypeError("not a stored message record")
    except (ValueError, TypeError) as exc:
        raise StorageUnavailable(f"corrupt stored message in Redis: {exc}") from exc
    return _record_from_object(obj)


def _decode_records(bodies: Sequence[str]) -> list[ConversationMessage]:
    """:func:`_decode_record` of each body, in order, parsed in one scan (``scan_all``), or
    one by one if one of them is damaged, to report it."""
    objects = scan_all(bodies)
    if objects is None:
        return [_decode_record(body) for body in bodies]
    return [_record_from_object(obj) for obj in objects]


def _record_from_object(obj: object) -> ConversationMessage:
    """The message of a parsed stored record (its containers become the message's).

    The record was checked before it was written, so only its shape is checked here (as
    ``rules.conversation_message_from_json`` would, without checking the message's values
    again, as :func:`~.._records.message_from_stored`)."""
    try:
        if type(obj) is not dict or obj.keys() != _RECORD_KEYS:
            raise TypeError("not a stored message record")
        message = obj["message"]
        if (
            type(obj["id"]) is not str
            or type(obj["session_id"]) is not str
            or type(obj["user_id"]) is not str
            or type(obj["created_at"]) is not int
            or type(message) is not dict
        ):
            raise TypeError("a field of the record has the wrong type")
        if message.keys() == _MESSAGE_KEYS:  # message_to_json writes every field
            parts = message["content"]
            if type(parts) is not list or type(message["metadata"]) is not dict:
                raise TypeError("message parts are not a list or its metadata not an object")
            message["content"] = tuple(parts)
            obj["message"] = decoded = _new(Message)
            _fill(decoded, "__dict__", message)
        else:
            obj["message"] = message_from_stored(message)
        record = _new(ConversationMessage)
        _fill(record, "__dict__", obj)
        return record
    except (ValueError, TypeError) as exc:
        raise StorageUnavailable(f"corrupt stored message in Redis: {exc}") from exc


def _memory(raw: bytes | str) -> UserMemory:
    return rules.memory_from_json(load_record(raw, what="memory"))


class RedisMemoryStorage(RedisStore):
    """A :class:`~agentstores.spec.memory_storage.MemoryStorage` on Redis.

    Args:
        url: a Redis URL (``redis://host:6379/0``); or give ``client`` (a ``Redis`` or
            ``RedisCluster``) or ``connection_pool`` instead (exactly one of the three; a
            caller's client or pool is not closed here).
        cluster: ``url`` names a node of a Redis Cluster.
        prefix: prepended to every key (no ``{`` or ``}``): the seed's table prefix (MS-29).
        clock: the source of every time the store stamps (G-6).
        embedder: enables ``semantic`` retrieval (MS-7); without it semantic is NotSupported.
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
        clock: Clock = system_clock,
        embedder: Embedder | None = None,
        socket_connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        pool_timeout: float = DEFAULT_POOL_TIMEOUT,
    ) -> None:
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
        self._clock = clock
        self._embedder = embedder
        self._recent_keys: dict[tuple[str, str], list[str]] = {}

    # --- keys --------------------------------------------------------------------------------

    def _memories_key(self, user_id: str) -> str:
        # The store's slot, with the owner keys (see the module docstring).
        return self._keys.key("ms.mems", user_id)

    def _owner_key(self, memory_id: str) -> str:
        return self._keys.key("ms.owner", memory_id)

    def _summary_key(self, session_id: str, user_id: str) -> str:
        return self._keys.key("ms.sum", session_id, tag=(user_id,))

    def _sessions_key(self, user_id: str) -> str:
        return self._keys.key("ms.sessions", tag=(user_id,))

    def _message_keys(self, session_id: str, user_id: str) -> list[str]:
        """The conversation's keys and the user's session set: the keys of ``save_message``,
        remembered for the conversations used lately (an agent saves to a few, often)."""
        cache_key = (session_id, user_id)
        keys = self._recent_keys.get(cache_key)
        if keys is None:
            if len(self._recent_keys) >= _RECENT_KEYS:
                self._recent_keys.clear()
            keys = [*self._conversation_keys(session_id, user_id), self._sessions_key(user_id)]
            self._recent_keys[cache_key] = keys
        return keys

    def _conversation_keys(self, session_id: str, user_id: str) -> list[str]:
        """The order list, data hash and time set of the conversation of (session, user)."""
        return [
            self._keys.key(kind, session_id, tag=(user_id,))
            for kind in ("ms.order", "ms.data", "ms.time")
        ]

    async def _script(
        self, script: Script, what: str, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        async with translate_errors(what):
            return await script(self._handle.client, keys, args)

    # --- lifecycle (MS-26 .. MS-28) ------------------------------------------------------------

    async def health(self) -> None:
        """Return if the server answers PING; StorageUnavailable otherwise (MS-26)."""
        async with translate_errors("health"):
            await self._handle.client.ping()

    async def migrate(self) -> None:
        """Record the layout version; StorageUnavailable if the data is newer (MS-28)."""
        found = await self._script(
            _MIGRATE, "migrate", [self._keys.key("ms.schema")], [SCHEMA_VERSION]
        )
        if int(text(found)) > SCHEMA_VERSION:
            raise StorageUnavailable(
                f"the keys under {self._keys.prefix!r} have layout version {text(found)}, "
                f"newer than {SCHEMA_VERSION}"
            )

    async def close(self) -> None:
        """Close the client if this store made it; idempotent (G-16, MS-27)."""
        await super().close()

    async def __aenter__(self) -> Self:
        try:
            await self.migrate()
        except BaseException:
            await self.close()
            raise
        return self

    # --- user memories (MS-3 .. MS-13) ---------------------------------------------------------

    async def _load_memories(self, user_id: str) -> list[UserMemory]:
        async with translate_errors("read memories"):
            values = await self._handle.client.hvals(self._memories_key(user_id))
        return [_memory(value) for value in values]

    async def save_user_memory(self, memory: UserMemory) -> UserMemory:
        """Store a new memory stamped now; AlreadyExists if its id is taken (MS-3)."""
        rules.check_memory(memory)
        now = self._clock()
        stored = UserMemory(memory.id, memory.user_id, memory.memory, memory.input, now, now)
        keys = [self._owner_key(memory.id), self._memories_key(memory.user_id)]
        args = [memory.id, memory.user_id, dump_json(rules.memory_to_json(stored))]
        if not await self._script(_SAVE_MEMORY, "save_user_memory", keys, args):
            raise AlreadyExists(f"memory {memory.id!r} exists")
        return stored

    async def get_user_memories(
        self,
        user_id: str,
        limit: int = 0,
        retrieval: MemoryRetrieval = MemoryRetrieval.LAST_N,
        query: str | None = None,
    ) -> list[UserMemory]:
        """The user's memories by retrieval, at most ``limit`` (MS-4 .. MS-8)."""
        check_id(user_id, what="user id")
        limit = rules.check_limit(limit)
        chosen, checked_query = rules.check_retrieval(retrieval, query)
        if chosen is MemoryRetrieval.SEMANTIC and self._embedder is None:
            raise NotSupported("this store has no embedder: semantic retrieval is off")
        memories = await self._load_memories(user_id)
        if chosen is MemoryRetrieval.SEMANTIC:
            assert self._embedder is not None and checked_query is not None
            ranked = await rules.rank_semantic(self._embedder, checked_query, memories)
            return rules.take(ranked, limit)
        return rules.take(rules.order_memories(memories, chosen), limit)

    async def update_user_memory(self, memory: UserMemory) -> UserMemory:
        """Replace text and input of the user's memory; NotFound otherwise (MS-9)."""
        rules.check_memory(memory)
        key = self._memories_key(memory.user_id)
        for _ in range(_RETRIES):
            async with translate_errors("update_user_memory"):
                raw = await self._handle.client.hget(key, memory.id)
            if raw is None:
                raise NotFound(f"user {memory.user_id!r} has no memory {memory.id!r}")
            old = _memory(raw)
            new = UserMemory(
                old.id, old.user_id, memory.memory, memory.input, old.created_at, self._clock()
            )
            args = [memory.id, raw, dump_json(rules.memory_to_json(new))]
            if await self._script(_REPLACE_MEMORY, "update_user_memory", [key], args):
                return new
        raise StorageUnavailable("update_user_memory: the memory kept changing; try again")

    async def delete_user_memory(self, memory_id: str) -> None:
        """Delete the memory with this id, whoever owns it; missing is a no-op (MS-10)."""
        check_id(memory_id, what="memory id")
        owner_key = self._owner_key(memory_id)
        for _ in range(_RETRIES):
            async with translate_errors("delete_user_memory"):
                owner = await self._handle.client.get(owner_key)
            if owner is None:
                return
            user_id = text(owner)
            keys = [owner_key, self._memories_key(user_id)]
            if await self._script(_DELETE_OWNED, "delete_user_memory", keys, [memory_id, user_id]):
                return
        raise StorageUnavailable("delete_user_memory: the memory kept changing; try again")

    async def delete_user_memories_by_ids(self, user_id: str, memory_ids: Sequence[str]) -> None:
        """Delete the listed memories of ``user_id`` in one script (MS-11)."""
        check_id(user_id, what="user id")
        ids = list(dict.fromkeys(rules.check_memory_ids(memory_ids)))
        if not ids:
            return
        keys = [self._memories_key(user_id), *(self._owner_key(i) for i in ids)]
        await self._script(_DELETE_BY_IDS, "delete_user_memories_by_ids", keys, ids)

    async def clear_user_memories(self, user_id: str) -> None:
        """Delete every memory of ``user_id`` (MS-12)."""
        check_id(user_id, what="user id")
        key = self._memories_key(user_id)
        for _ in range(_RETRIES):
            async with translate_errors("clear_user_memories"):
                ids = [text(i) for i in await self._handle.client.hkeys(key)]
            if not ids:
                return
            keys = [key, *(self._owner_key(i) for i in ids)]
            if await self._script(_CLEAR, "clear_user_memories", keys, ids):
                return
        raise StorageUnavailable("clear_user_memories: the memories kept changing; try again")

    async def search_user_memories(
        self, user_id: str, query: str, limit: int = 0
    ) -> list[UserMemory]:
        """The user's memories containing ``query`` caselessly, in last_n order (MS-13)."""
        check_id(user_id, what="user id")
        needle = rules.check_text(query, what="query").casefold()
        limit = rules.check_limit(limit)
        found = [m for m in await self._load_memories(user_id) if rules.matches(m, needle)]
        return rules.take(rules.order_memories(found, MemoryRetrieval.LAST_N), limit)

    # --- session summaries (MS-14 .. MS-16) ----------------------------------------------------

    async def _put_summary(self, summary: SessionSummary, existing_only: bool) -> SessionSummary:
        now = self._clock()
        key = self._summary_key(summary.session_id, summary.user_id)
        args = [summary.summary, now, "1" if existing_only else "0"]
        created = await self._script(_PUT_SUMMARY, "save_session_summary", [key], args)
        if created is None:
            raise NotFound(f"no summary of session {summary.session_id!r}")
        return SessionSummary(
            summary.session_id, summary.user_id, summary.summary, int(text(created)), now
        )

    async def save_session_summary(self, summary: SessionSummary) -> SessionSummary:
        """Create or replace the summary of (session, user) (MS-14)."""
        rules.check_summary(summary)
        return await self._put_summary(summary, False)

    async def update_session_summary(self, summary: SessionSummary) -> SessionSummary:
        """Replace an existing summary; NotFound if there is none (MS-16)."""
        rules.check_summary(summary)
        return await self._put_summary(summary, True)

    async def get_session_summary(self, session_id: str, user_id: str) -> SessionSummary | None:
        """The summary of (session, user), or None (MS-15)."""
        rules.check_pair(session_id, user_id)
        async with translate_errors("get_session_summary"):
            values = await self._handle.client.hmget(
                self._summary_key(session_id, user_id), ["summary", "created_at", "updated_at"]
            )
        summary, created, updated = values
        if summary is None or created is None or updated is None:
            return None  # a summary hash is written whole by one script, so all or none
        return SessionSummary(
            session_id, user_id, text(summary), int(text(created)), int(text(updated))
        )

    async def delete_session_summary(self, session_id: str, user_id: str) -> None:
        """Delete the summary of (session, user); missing is a no-op (MS-15)."""
        rules.check_pair(session_id, user_id)
        async with translate_errors("delete_session_summary"):
            await self._handle.client.delete(self._summary_key(session_id, user_id))

    # --- messages (MS-17 .. MS-23) -------------------------------------------------------------

    async def save_message(
        self, session_id: str, user_id: str, message: Message
    ) -> ConversationMessage:
        """Append the message: one script of O(1) commands (MS-17, MS-18)."""
        checked = rules.check_message_args(session_id, user_id, message)
        message_id, now = _new_message_id(), self._clock()
        # The stored record is encoded once, before anything is awaited (G-7); the message
        # returned is rebuilt from that text, so it shares nothing with the caller's.
        body = encode_json(
            {
                "id": message_id,
                "session_id": session_id,
                "user_id": user_id,
                "created_at": now,
                "message": message_to_json(checked),
            }
        )
        args = [message_id, body, now, session_id]
        keys = self._message_keys(session_id, user_id)
        await self._script(_SAVE_MESSAGE, "save_message", keys, args)
        return _decode_record(body)

    async def get_messages(
        self, session_id: str, user_id: str, limit: int = 0
    ) -> list[ConversationMessage]:
        """The newest ``limit`` messages (all for 0), oldest first; reads only them (MS-19)."""
        rules.check_pair(session_id, user_id)
        limit = rules.check_limit(limit)
        keys = self._conversation_keys(session_id, user_id)[:2]
        pieces = unframe(await self._script(_GET_MESSAGES, "get_messages", keys, [limit]))
        if len(pieces) != int(pieces[0]) + 1:
            raise StorageUnavailable(
                "damaged data in Redis: a stored text holds a control character"
            )
        return _decode_records(pieces[1:])

    async def delete_messages(self, session_id: str, user_id: str) -> None:
        """Delete the conversation of (session, user) (MS-20)."""
        rules.check_pair(session_id, user_id)
        keys = [*self._conversation_keys(session_id, user_id), self._sessions_key(user_id)]
        await self._script(_DELETE_MESSAGES, "delete_messages", keys, [session_id])

    async def get_message_count(self, user_id: str, session_id: str) -> int:
        """The number of messages of (session, user); user first, as in the seed (MS-21)."""
        rules.check_pair(session_id, user_id)
        async with translate_errors("get_message_count"):
            count = await self._handle.client.llen(self._conversation_keys(session_id, user_id)[0])
        return int(count)

    async def cleanup_old_messages(self, user_id: str, before: int) -> None:
        """Delete the user's messages with created_at < before, all sessions (MS-22)."""
        check_id(user_id, what="user id")
        before = rules.check_before(before)
        sessions_key = self._sessions_key(user_id)
        for _ in range(_RETRIES):
            async with translate_errors("cleanup_old_messages"):
                sessions = sorted(text(s) for s in await self._handle.client.smembers(sessions_key))
            if not sessions:
                return
            keys = [sessions_key]
            for session_id in sessions:
                keys += self._conversation_keys(session_id, user_id)
            if await self._script(_CLEANUP_OLD, "cleanup_old_messages", keys, [before, *sessions]):
                return
        raise StorageUnavailable("cleanup_old_messages: the sessions kept changing; try again")

    async def cleanup_messages_by_limit(
        self, user_id: str, session_id: str, keep_limit: int
    ) -> None:
        """Keep the newest ``keep_limit`` messages; touches only the dropped ones (MS-23)."""
        rules.check_pair(session_id, user_id)
        keep = rules.check_keep_limit(keep_limit)
        keys = self._conversation_keys(session_id, user_id)
        await self._script(_CLEANUP_BY_LIMIT, "cleanup_messages_by_limit", keys, [keep])


open_store, open_cluster_store = kit_openers(
    lambda context, connection: RedisMemoryStorage(
        **connection, clock=context.clock, embedder=context.options.get("embedder")
    ),
    note='``context.options["embedder"]``, if given, enables semantic retrieval.',
)
