"""The session-store family on Redis (spec ``session_store.md``): a hash per session, two
lists per conversation, one sorted set for the listings, and a Lua script per write.

Keys (layout and escaping in :mod:`agentstores.reference.redis._client`; ``S`` is a session
id)::

    ss.session:S     hash   one field per key of the SS-17 session object, each value JSON
                            (so ``null`` is None), and ``order`` (S's member in ss.sessions)
    ss.messages:S    list   the conversation: one JSON message (message_to_json) per element
    ss.times:S       list   the messages' created_at as 16 hex digits, ``-`` when None,
                            element for element beside ss.messages:S
    ss.sessions      zset   every session: hex16(2**63-1 - updated_at) + S, all scores 0
    ss.ids           hash   YYYYMMDD -> the last number issued that day (SS-4)

The sorted set orders by member bytes, so rank order is SS-6's order (updated_at descending,
then id). ``message_count`` is ``LLEN ss.messages:S``, so ``get_session`` without messages
reads the hash and one integer, never the messages (SS-5).

Atomicity: every write is one Lua script that checks the session exists and writes in one
step; ``add_message`` is an ``RPUSH`` and the ``updated_at`` bump in the same script (SS-8),
so it costs the same whatever the conversation's length. Updates set only their hash fields,
so concurrent updates of different fields never lose each other (G-18). Scripts never parse
JSON (Lua's cjson would round big integers): values are copied or compared as strings, and
truncate compares the fixed-width hex times of ss.times:S. Reads of one session are MULTI/EXEC
transactions. Listings, insights and search read the sorted set, then every listed session in
one MULTI/EXEC, so each session is seen whole; a session created between the two steps is
left out, one deleted between them is skipped.

Slots: as in the thread/run family, every key carries the store's hash tag, so a store lives
in one slot and every script declares all the keys it touches.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, cast

import redis.asyncio as aioredis

from agentstores.conformance.backend import StoreContext
from agentstores.spec.errors import InvalidArgument, NotFound, StorageUnavailable
from agentstores.spec.messages import Message, message_from_json, message_to_json
from agentstores.spec.session_store import (
    ChatHistoryMatch,
    ExtensionData,
    ModelConfig,
    Recipe,
    Session,
    SessionInsights,
    SessionType,
    TokenStatsUpdate,
)
from agentstores.spec.values import Clock, check_timestamp, dump_json, system_clock

from .. import session_store_rules as rules
from . import server
from ._client import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_SOCKET_TIMEOUT,
    ClientHandle,
    KeySpace,
    Script,
    load_record,
    text,
    translate_errors,
)

__all__ = ["RedisSessionStore", "open_store"]

_MAX_TIME = 2**63 - 1
_NO_TIME = "-"
#: SS-19: the fields a copy takes from its source as they are stored.
_CARRIED = (
    "working_dir",
    "session_type",
    "extension_data",
    "schedule_id",
    "recipe",
    "user_recipe_values",
)


def _hex(value: int) -> str:
    return f"{value:016x}"


def _time_code(message: Message) -> str:
    return _NO_TIME if message.created_at is None else _hex(message.created_at)


# --- Lua ------------------------------------------------------------------------------------
#
# Per-session scripts share KEYS[1] ss.session:S, KEYS[2] ss.sessions, KEYS[3] ss.messages:S,
# KEYS[4] ss.times:S. Conversations travel in ARGV as n, then n messages, then n time codes.

_LIB = """
-- Move the session to its new place in ss.sessions and stamp updated_at.
local function touch(now, member)
  local old = redis.call('HGET', KEYS[1], 'order')
  if old then redis.call('ZREM', KEYS[2], old) end
  redis.call('HSET', KEYS[1], 'updated_at', now, 'order', member)
  redis.call('ZADD', KEYS[2], 0, member)
end

-- RPUSH values[first..last] onto key, in chunks (unpack has a stack limit).
local function push(key, values, first, last)
  for i = first, last, 1000 do
    redis.call('RPUSH', key, unpack(values, i, math.min(i + 999, last)))
  end
end

-- Replace the conversation with the n messages and times in ARGV from index `at` on.
local function put_conversation(at)
  local n = tonumber(ARGV[at])
  redis.call('DEL', KEYS[3], KEYS[4])
  push(KEYS[3], ARGV, at + 1, at + n)
  push(KEYS[4], ARGV, at + n + 1, at + 2 * n)
  return at + 2 * n + 1
end
"""

# ARGV: 1 order member, 2 k, 3..2+k field/value pairs, then a conversation. 0 if S exists.
_CREATE = Script(
    _LIB
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local k = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'order', ARGV[1], unpack(ARGV, 3, 2 + k))
redis.call('ZADD', KEYS[2], 0, ARGV[1])
put_conversation(3 + k)
return 1
"""
)

# ARGV: 1 now, 2 order member, 3.. field/value pairs. 0 if S is missing.
_UPDATE = Script(
    _LIB
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if #ARGV > 2 then redis.call('HSET', KEYS[1], unpack(ARGV, 3)) end
touch(ARGV[1], ARGV[2])
return 1
"""
)

# ARGV: 1 now, 2 order member, 3 message, 4 time code. 0 if S is missing.
_ADD = Script(
    _LIB
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('RPUSH', KEYS[3], ARGV[3])
redis.call('RPUSH', KEYS[4], ARGV[4])
touch(ARGV[1], ARGV[2])
return 1
"""
)

# ARGV: 1 now, 2 order member, then a conversation. 0 if S is missing.
_REPLACE = Script(
    _LIB
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
put_conversation(3)
touch(ARGV[1], ARGV[2])
return 1
"""
)

# ARGV: 1 now, 2 order member, 3 the threshold as hex16. Keeps undated messages and those
# created before the threshold (SS-10); fixed-width hex compares like the numbers.
_TRUNCATE = Script(
    _LIB
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local times = redis.call('LRANGE', KEYS[4], 0, -1)
local kept = {}
for i, t in ipairs(times) do
  if t == '-' or t < ARGV[3] then kept[#kept + 1] = i end
end
if #kept < #times then
  local messages = redis.call('LRANGE', KEYS[3], 0, -1)
  local kept_messages, kept_times = {}, {}
  for j, i in ipairs(kept) do
    kept_messages[j] = messages[i]
    kept_times[j] = times[i]
  end
  redis.call('DEL', KEYS[3], KEYS[4])
  push(KEYS[3], kept_messages, 1, #kept_messages)
  push(KEYS[4], kept_times, 1, #kept_times)
end
touch(ARGV[1], ARGV[2])
return 1
"""
)

# Deletes S, its conversation and its place in ss.sessions. 0 if S is missing.
_DELETE = Script(
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local old = redis.call('HGET', KEYS[1], 'order')
if old then redis.call('ZREM', KEYS[2], old) end
redis.call('DEL', KEYS[1], KEYS[3], KEYS[4])
return 1
"""
)

# KEYS: 1 source hash, 2 ss.sessions, 3 source messages, 4 source times, 5 new hash,
# 6 new messages, 7 new times. ARGV: 1 order member, 2 c, 3..2+c the carried field names,
# then field/value pairs of the new session. Returns {} if the source is missing, else
# {message count, carried values...}; values are copied as stored, never parsed.
_COPY = Script(
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
if redis.call('EXISTS', KEYS[5]) == 1 then return redis.error_reply('copy target exists') end
local c = tonumber(ARGV[2])
local reply = {0}
local fields = {'order', ARGV[1]}
for i = 3, 2 + c do
  local value = redis.call('HGET', KEYS[1], ARGV[i])
  fields[#fields + 1] = ARGV[i]
  fields[#fields + 1] = value
  reply[#reply + 1] = value
end
for i = 3 + c, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[5], unpack(fields))
redis.call('ZADD', KEYS[2], 0, ARGV[1])
local messages = redis.call('LRANGE', KEYS[3], 0, -1)
local times = redis.call('LRANGE', KEYS[4], 0, -1)
for i = 1, #messages, 1000 do
  local last = math.min(i + 999, #messages)
  redis.call('RPUSH', KEYS[6], unpack(messages, i, last))
  redis.call('RPUSH', KEYS[7], unpack(times, i, last))
end
reply[1] = #messages
return reply
"""
)


@dataclass(frozen=True)
class _Read:
    """One session as read in a transaction: its hash, message count and maybe messages."""

    fields: dict[str, str]
    count: int
    messages: list[bytes | str] | None


def _session(read: _Read, conversation: tuple[Message, ...] | None = None) -> Session:
    try:
        obj = {key: load_record(read.fields[key], what=key) for key in rules.SESSION_KEYS}
        return rules.session_from_json(obj, message_count=read.count, conversation=conversation)
    except (KeyError, InvalidArgument) as exc:
        raise StorageUnavailable(f"stored session is corrupt: {exc}") from exc


def _messages(raw: Sequence[bytes | str]) -> tuple[Message, ...]:
    try:
        return tuple(message_from_json(load_record(item, what="message")) for item in raw)
    except InvalidArgument as exc:
        raise StorageUnavailable(f"stored message is corrupt: {exc}") from exc


def _conversation_args(messages: Sequence[Message]) -> list[str]:
    """ARGV of a conversation: n, the messages' JSON, their time codes (serialised now, G-7)."""
    return [
        str(len(messages)),
        *(dump_json(message_to_json(m)) for m in messages),
        *(_time_code(m) for m in messages),
    ]


def _field_args(fields: Mapping[str, Any]) -> list[str]:
    """Hash field/value pairs, each value as JSON."""
    pairs: list[str] = []
    for name, value in fields.items():
        pairs += [name, dump_json(value)]
    return pairs


class RedisSessionStore:
    """A :class:`~agentstores.spec.session_store.SessionStore` on Redis.

    Args:
        url: a Redis URL (``redis://host:6379/0``); or give ``client`` or ``connection_pool``
            instead (exactly one of the three; a caller's client or pool is not closed here).
        prefix: prepended to every key (no ``{`` or ``}``); stores with distinct prefixes
            never see each other's data (G-19).
        clock: the source of every time the store stamps (G-6).
        socket_connect_timeout, socket_timeout: seconds, for a client made from ``url``.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: aioredis.Redis | None = None,
        connection_pool: aioredis.ConnectionPool | None = None,
        prefix: str = "agentstores:",
        clock: Clock = system_clock,
        socket_connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
    ) -> None:
        self._keys = KeySpace(prefix)
        self._handle = ClientHandle(
            url=url,
            client=client,
            connection_pool=connection_pool,
            socket_connect_timeout=socket_connect_timeout,
            socket_timeout=socket_timeout,
        )
        self._clock = clock
        self._index = self._keys.key("ss.sessions")
        self._ids = self._keys.key("ss.ids")

    # --- keys and helpers ------------------------------------------------------------------

    def session_keys(self, session_id: str) -> list[str]:
        """KEYS[1..4] of the per-session scripts (also a back door for tests)."""
        return [
            self._keys.key("ss.session", session_id),
            self._index,
            self._keys.key("ss.messages", session_id),
            self._keys.key("ss.times", session_id),
        ]

    @property
    def client(self) -> aioredis.Redis:
        """The store's client (a back door for tests)."""
        return self._handle.client

    def _now(self) -> int:
        return check_timestamp(self._clock(), what="clock reading")

    @staticmethod
    def _member(session_id: str, updated_at: int) -> str:
        return _hex(_MAX_TIME - updated_at) + session_id

    async def _new_id(self, now: int) -> str:
        """Reserve an id (SS-4); a failure after this leaves a gap, never a reuse."""
        day = rules.day_of(now)
        async with translate_errors("reserve a session id"):
            number = await self._handle.client.hincrby(self._ids, day, 1)
        return rules.format_session_id(day, int(number))

    async def _read(self, session_ids: Sequence[str], *, messages: bool) -> list[_Read | None]:
        """Read sessions in one MULTI/EXEC: each is whole, or None if missing."""
        if not session_ids:
            return []
        async with (
            translate_errors("read sessions"),
            self._handle.client.pipeline(transaction=True) as pipe,
        ):
            for session_id in session_ids:
                hash_key, _, messages_key, _ = self.session_keys(session_id)
                pipe.hgetall(hash_key)
                pipe.llen(messages_key)
                if messages:
                    pipe.lrange(messages_key, 0, -1)
            replies = await pipe.execute()
        step = 3 if messages else 2
        found: list[_Read | None] = []
        for i in range(0, len(replies), step):
            raw = cast(dict[Any, Any], replies[i])
            if not raw:
                found.append(None)
                continue
            fields = {text(k): text(v) for k, v in raw.items()}
            found.append(_Read(fields, int(replies[i + 1]), replies[i + 2] if messages else None))
        return found

    async def _read_one(self, session_id: str, *, messages: bool) -> _Read:
        (read,) = await self._read([session_id], messages=messages)
        if read is None:
            raise NotFound(f"no session {session_id!r}")
        return read

    async def _all(self, *, messages: bool) -> list[_Read]:
        """Every session (see the module docstring for what a concurrent write may do)."""
        async with translate_errors("list sessions"):
            members = await self._handle.client.zrange(self._index, 0, -1)
        ids = [text(member)[16:] for member in cast(list[bytes | str], members)]
        return [read for read in await self._read(ids, messages=messages) if read is not None]

    async def _write(self, script: Script, session_id: str, args: Sequence[str]) -> None:
        """Run a per-session write script; NotFound if it found no session."""
        async with translate_errors("write session"):
            done = await script(self._handle.client, self.session_keys(session_id), args)
        if not done:
            raise NotFound(f"no session {session_id!r}")

    async def _update(self, session_id: str, fields: Mapping[str, Any]) -> None:
        """Set ``fields`` and ``updated_at = now`` in one script (SS-11 .. SS-14)."""
        now = self._now()
        args = [dump_json(now), self._member(session_id, now), *_field_args(fields)]
        await self._write(_UPDATE, session_id, args)

    async def _insert(self, session: Session, conversation: Sequence[Message]) -> Session:
        """Store a new session with its conversation in one script."""
        fields = rules.session_to_json(session)
        pairs = _field_args(fields)
        args = [
            self._member(session.id, session.updated_at),
            str(len(pairs)),
            *pairs,
            *_conversation_args(conversation),
        ]
        async with translate_errors("create session"):
            created = await _CREATE(self._handle.client, self.session_keys(session.id), args)
        if not created:  # the id counter went backwards: storage was tampered with
            raise StorageUnavailable(f"session id {session.id!r} is taken: corrupt id counter")
        return replace(session, message_count=len(conversation))

    # --- sessions (SS-3 .. SS-7, SS-16) -----------------------------------------------------

    async def create_session(
        self, working_dir: str, name: str, session_type: SessionType = SessionType.USER
    ) -> Session:
        """Create an empty session with a new id (SS-3, SS-4)."""
        working_dir, name, session_type = rules.check_new_session(working_dir, name, session_type)
        now = self._now()
        session_id = await self._new_id(now)
        return await self._insert(
            rules.new_session(session_id, working_dir, name, session_type, now), ()
        )

    async def get_session(self, session_id: str, include_messages: bool = False) -> Session:
        """The session; the messages are read only when asked for (SS-5)."""
        rules.check_session_id(session_id)
        rules.check_include_messages(include_messages)
        read = await self._read_one(session_id, messages=include_messages)
        conversation = None if read.messages is None else _messages(read.messages)
        return _session(read, conversation)

    async def list_sessions(self) -> list[Session]:
        """User and scheduled sessions, most recently updated first (SS-6)."""
        return await self._list(frozenset(rules.DEFAULT_LIST_TYPES))

    async def list_sessions_by_types(self, types: Sequence[SessionType]) -> list[Session]:
        """Sessions of the given types, most recently updated first, then by id (SS-6)."""
        return await self._list(rules.check_session_types(types))

    async def _list(self, types: frozenset[SessionType]) -> list[Session]:
        if not types:
            return []
        sessions = [_session(read) for read in await self._all(messages=False)]
        chosen = [s for s in sessions if s.session_type in types]
        # Already in rank order; sorting again keeps the order right if an update moved a
        # session between the two reads.
        return sorted(chosen, key=lambda s: rules.list_order(s.id, s.updated_at))

    async def delete_session(self, session_id: str) -> None:
        """Delete the session and its conversation in one script (SS-7)."""
        rules.check_session_id(session_id)
        await self._write(_DELETE, session_id, [])

    async def get_insights(self) -> SessionInsights:
        """Session count and token total over every session (SS-16)."""
        return rules.insights(_session(read) for read in await self._all(messages=False))

    # --- conversation (SS-8 .. SS-10) -------------------------------------------------------

    async def add_message(self, session_id: str, message: Message) -> None:
        """RPUSH the message and bump updated_at in one script (SS-8)."""
        rules.check_session_id(session_id)
        (checked,) = rules.check_conversation([message])
        now = self._now()
        args = [
            dump_json(now),
            self._member(session_id, now),
            dump_json(message_to_json(checked)),
            _time_code(checked),
        ]
        await self._write(_ADD, session_id, args)

    async def replace_conversation(self, session_id: str, conversation: Sequence[Message]) -> None:
        """Replace the conversation and bump updated_at in one script (SS-9)."""
        rules.check_session_id(session_id)
        messages = rules.check_conversation(conversation)
        now = self._now()
        args = [dump_json(now), self._member(session_id, now), *_conversation_args(messages)]
        await self._write(_REPLACE, session_id, args)

    async def truncate_conversation(self, session_id: str, timestamp: int) -> None:
        """Drop the messages created at or after ``timestamp`` in one script (SS-10)."""
        rules.check_session_id(session_id)
        check_timestamp(timestamp, what="timestamp")
        now = self._now()
        args = [dump_json(now), self._member(session_id, now), _hex(timestamp)]
        await self._write(_TRUNCATE, session_id, args)

    # --- updates (SS-11 .. SS-13) -----------------------------------------------------------

    async def update_session_name(self, session_id: str, name: str, user_set: bool) -> None:
        """Set the name and who set it (SS-11)."""
        rules.check_session_id(session_id)
        fields = rules.session_fields(
            rules.check_name(name), rules.check_bool(user_set, what="user_set")
        )
        await self._update(session_id, fields)

    async def update_extension_data(self, session_id: str, extension_data: ExtensionData) -> None:
        """Replace the extension data (SS-11)."""
        rules.check_session_id(session_id)
        data = rules.check_extension_data(extension_data)
        await self._update(session_id, {"extension_data": data})

    async def update_token_stats(self, session_id: str, stats: TokenStatsUpdate) -> None:
        """Set the counters that ``stats`` gives, leave the others (SS-12)."""
        rules.check_session_id(session_id)
        await self._update(session_id, rules.token_fields(rules.check_token_stats(stats)))

    async def update_provider_config(
        self, session_id: str, provider_name: str | None, model_config: ModelConfig | None
    ) -> None:
        """Set provider name and/or model config; None leaves a field unchanged (SS-13)."""
        rules.check_session_id(session_id)
        rules.check_provider_config(provider_name, model_config)
        await self._update(session_id, rules.provider_fields(provider_name, model_config))

    async def update_recipe(
        self,
        session_id: str,
        recipe: Recipe | None,
        user_recipe_values: Mapping[str, str] | None,
    ) -> None:
        """Set recipe and/or its user values; None leaves a field unchanged (SS-13)."""
        rules.check_session_id(session_id)
        rules.check_recipe(recipe, user_recipe_values)
        await self._update(session_id, rules.recipe_fields(recipe, user_recipe_values))

    # --- export, import, copy (SS-17 .. SS-19) ----------------------------------------------

    async def export_session(self, session_id: str) -> str:
        """The session and its conversation, read in one transaction, as a document (SS-17)."""
        rules.check_session_id(session_id)
        read = await self._read_one(session_id, messages=True)
        assert read.messages is not None
        return rules.export_document(_session(read), _messages(read.messages))

    async def import_session(self, document: str) -> Session:
        """Create a new session from an export document (SS-18)."""
        template, conversation = rules.parse_export(document)
        now = self._now()
        session_id = await self._new_id(now)
        return await self._insert(rules.imported_session(template, session_id, now), conversation)

    async def copy_session(self, session_id: str, new_name: str) -> Session:
        """A new session with what SS-19 lists, copied inside one script."""
        rules.check_session_id(session_id)
        name = rules.check_name(new_name, what="new_name")
        now = self._now()
        new_id = await self._new_id(now)
        # The fields the copy does not take from its source (the carried ones come from the
        # script, as stored, so that the copy is one consistent snapshot of the source).
        own = {
            key: value
            for key, value in rules.session_to_json(
                rules.new_session(new_id, "-", name, SessionType.USER, now)
            ).items()
            if key not in _CARRIED
        }
        own["user_set_name"] = True
        pairs = _field_args(own)
        source_keys = self.session_keys(session_id)
        target_keys = self.session_keys(new_id)
        keys = [*source_keys, target_keys[0], target_keys[2], target_keys[3]]
        args = [self._member(new_id, now), str(len(_CARRIED)), *_CARRIED, *pairs]
        async with translate_errors("copy session"):
            reply = await _COPY(self._handle.client, keys, args)
        if not reply:
            raise NotFound(f"no session {session_id!r}")
        carried = {key: text(value) for key, value in zip(_CARRIED, reply[1:], strict=True)}
        fields = {key: text(dump_json(value)) for key, value in own.items()} | carried
        return _session(_Read(fields, int(reply[0]), None))

    # --- search (SS-20 .. SS-22) ------------------------------------------------------------

    async def search_chat_history(
        self,
        query: str,
        limit: int | None = None,
        after_date: int | None = None,
        before_date: int | None = None,
        exclude_session_id: str | None = None,
    ) -> list[ChatHistoryMatch]:
        """Messages matching ``query``, newest first (SS-20 .. SS-22): a scan of every
        conversation (plain Redis has no text index), matched in Python."""
        request = rules.check_search(query, limit, after_date, before_date, exclude_session_id)
        if request.empty:
            return []
        candidates: list[rules.Candidate] = []
        for read in await self._all(messages=True):
            session = _session(read)
            if session.id == request.exclude_session_id or read.messages is None:
                continue
            for position, message in enumerate(_messages(read.messages)):
                candidates.append(rules.Candidate(session.id, session.name, position, message))
        return rules.select_matches(request, candidates)

    # --- life cycle -------------------------------------------------------------------------

    async def close(self) -> None:
        """Close the client if this store made it; idempotent (G-16)."""
        await self._handle.close()

    async def __aenter__(self) -> RedisSessionStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


@asynccontextmanager
async def _opened(context: StoreContext) -> AsyncIterator[RedisSessionStore]:
    async with RedisSessionStore(
        server.current_url(), prefix=context.namespace + ":", clock=context.clock
    ) as store:
        yield store


def open_store(context: StoreContext) -> AbstractAsyncContextManager[RedisSessionStore]:
    """The kit's opener: key prefix ``namespace:`` on the server of the backend's lifespan."""
    return _opened(context)
