"""The session-store family on Redis (spec ``session_store.md``): a hash and two lists per
session, each session in its own hash slot, a registry of ids, and a Lua script per write.

Keys (layout and escaping in :mod:`agentstores.reference.redis._client`; ``S`` is a session
id; ``{S}`` marks the session's hash tag, ``{@}`` the store's)::

    {S}ss.session    hash   one field per key of the SS-17 session object, each value JSON
                            (so ``null`` is None)
    {S}ss.messages   list   the conversation: one JSON message (message_to_json) per element
    {S}ss.times      list   the messages' created_at as 16 hex digits, ``-`` when None,
                            element for element beside ss.messages
    {@}ss.registry   set    the id of every session
    {@}ss.ids        hash   YYYYMMDD -> the last number issued that day (SS-4)

``message_count`` is ``LLEN ss.messages``, so ``get_session`` without messages reads the hash
and one integer, never the messages (SS-5).

Atomicity: every write to a session is one Lua script on that session's three keys (one
slot) that checks the session exists and writes in one step; ``add_message`` is an ``RPUSH``
and the ``updated_at`` bump in the same script (SS-8), so it costs the same whatever the
conversation's length. Updates set only their hash fields, so concurrent updates of different
fields never lose each other (G-18). Scripts never parse JSON (Lua's cjson would round big
integers): values are copied as strings, and truncate compares the fixed-width hex times of
ss.times. Reads of one session are scripts too, so a session is always read whole.

Slots and clusters (a ``RedisCluster`` client, or a node's URL with ``cluster=True``): a
session's keys share its own tag, so sessions (and their conversations, the bulk of the data)
spread over the whole cluster, and each per-session operation runs whole on one primary. The
operations that span sessions work in steps, each atomic in one slot:

* ``create_session``, ``import_session``: one script in the store's slot takes the next
  number of the day and adds the new id to ``ss.registry``; a second script in the new
  session's slot writes the session whole. ``copy_session`` first reads the source whole (one
  script in its slot), then does the same. A failure between the steps leaves an id in the
  registry with no session: readers skip it, and the id is never reused (SS-4 allows the gap).
* ``delete_session``: one script deletes the session whole, then ``SREM`` unregisters it (a
  failure between leaves an id that readers skip).
* ``list_sessions``, ``list_sessions_by_types``, ``get_insights``, ``search_chat_history``:
  ``SMEMBERS ss.registry``, then one read script per session in one pipeline (which a cluster
  client sends as one batch per node, concurrently), then sorting (SS-6) or matching in
  Python. Each session is seen whole, but the sessions are not read at one instant: a session
  created or deleted during the listing may or may not be in it, and two sessions changed one
  after the other during a listing may be seen one before and one after its change. The cost
  is O(number of sessions) per listing (plus the messages for search: plain Redis has no text
  index), as before, and one round trip per node.

On one server the same layout and the same steps are used, so the references behave alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import redis.asyncio as aioredis

from agentstores.spec.errors import InvalidArgument, NotFound, StorageUnavailable
from agentstores.spec.messages import Message, message_from_json, message_to_json
from agentstores.spec.session_store import (
    ChatHistoryMatch,
    Session,
    SessionInsights,
    SessionType,
)
from agentstores.spec.values import Clock, check_timestamp, dump_json, system_clock

from .. import session_store_rules as rules
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
)
from ._store import RedisStore, kit_openers

__all__ = ["RedisSessionStore", "open_cluster_store", "open_store"]

_NO_TIME = "-"
#: How many sessions' key lists a store remembers (a few hundred kilobytes at most).
_RECENT_KEYS = 1024
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
# Per-session scripts share KEYS[1] ss.session:S, KEYS[2] ss.messages:S, KEYS[3] ss.times:S
# (one slot). Conversations travel in ARGV as n, then n messages, then n time codes.

_LIB = """
-- RPUSH values[first..last] onto key, in chunks (unpack has a stack limit).
local function push(key, values, first, last)
  for i = first, last, 1000 do
    redis.call('RPUSH', key, unpack(values, i, math.min(i + 999, last)))
  end
end

-- Replace the conversation with the n messages and times in ARGV from index `at` on.
local function put_conversation(at)
  local n = tonumber(ARGV[at])
  redis.call('DEL', KEYS[2], KEYS[3])
  push(KEYS[2], ARGV, at + 1, at + n)
  push(KEYS[3], ARGV, at + n + 1, at + 2 * n)
end
"""

# KEYS: 1 ss.ids, 2 ss.registry (the store's slot). ARGV: 1 the day (YYYYMMDD).
# Takes the day's next number and registers the id it makes, in the form of
# rules.format_session_id (day, "_", number). Returns the number.
_RESERVE = Script(
    """
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('SADD', KEYS[2], ARGV[1] .. '_' .. n)
return n
"""
)

# ARGV: 1 k, 2..1+k field/value pairs, then a conversation. 0 if S exists.
_CREATE = Script(
    _LIB
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local k = tonumber(ARGV[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 2, 1 + k))
put_conversation(2 + k)
return 1
"""
)

# ARGV: 1 now, 2.. field/value pairs. 0 if S is missing.
_UPDATE = Script(
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'updated_at', ARGV[1], unpack(ARGV, 2))
return 1
"""
)

# ARGV: 1 now, 2 message, 3 time code. 0 if S is missing.
_ADD = Script(
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('RPUSH', KEYS[3], ARGV[3])
redis.call('HSET', KEYS[1], 'updated_at', ARGV[1])
return 1
"""
)

# ARGV: 1 now, then a conversation. 0 if S is missing.
_REPLACE = Script(
    _LIB
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
put_conversation(2)
redis.call('HSET', KEYS[1], 'updated_at', ARGV[1])
return 1
"""
)

# ARGV: 1 now, 2 the threshold as hex16. Keeps undated messages and those created before the
# threshold (SS-10); fixed-width hex compares like the numbers.
_TRUNCATE = Script(
    _LIB
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local times = redis.call('LRANGE', KEYS[3], 0, -1)
local kept = {}
for i, t in ipairs(times) do
  if t == '-' or t < ARGV[2] then kept[#kept + 1] = i end
end
if #kept < #times then
  local messages = redis.call('LRANGE', KEYS[2], 0, -1)
  local kept_messages, kept_times = {}, {}
  for j, i in ipairs(kept) do
    kept_messages[j] = messages[i]
    kept_times[j] = times[i]
  end
  redis.call('DEL', KEYS[2], KEYS[3])
  push(KEYS[2], kept_messages, 1, #kept_messages)
  push(KEYS[3], kept_times, 1, #kept_times)
end
redis.call('HSET', KEYS[1], 'updated_at', ARGV[1])
return 1
"""
)

# Deletes S and its conversation. 0 if S is missing.
_DELETE = Script(
    """
return redis.call('DEL', KEYS[1], KEYS[2], KEYS[3]) > 0 and 1 or 0
"""
)

# ARGV: 1 "1" to read the messages too. nil if S is missing, else
# {HGETALL as a flat list, message count[, messages]}: one session, read whole.
_READ = Script(
    """
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then return false end
if ARGV[1] == '1' then
  return {fields, redis.call('LLEN', KEYS[2]), redis.call('LRANGE', KEYS[2], 0, -1)}
end
return {fields, redis.call('LLEN', KEYS[2])}
"""
)

# ARGV: the field names a copy carries (SS-19). nil if S is missing, else
# {{values as stored}, messages, time codes}: the source of a copy, read whole.
_COPY_SOURCE = Script(
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
return {redis.call('HMGET', KEYS[1], unpack(ARGV)), redis.call('LRANGE', KEYS[2], 0, -1),
        redis.call('LRANGE', KEYS[3], 0, -1)}
"""
)


@dataclass(frozen=True)
class _Read:
    """One session as read in a transaction: its hash, message count and maybe messages."""

    fields: dict[str, str]
    count: int
    messages: list[bytes | str] | None


def _hash(flat: Sequence[Any]) -> dict[str, str]:
    """A HGETALL reply (a flat list, as scripts return it) as a dict of str."""
    return {text(flat[i]): text(flat[i + 1]) for i in range(0, len(flat), 2)}


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


class RedisSessionStore(RedisStore, rules.SessionUpdates, rules.SessionQueries):
    """A :class:`~agentstores.spec.session_store.SessionStore` on Redis.

    Args:
        url: a Redis URL (``redis://host:6379/0``); or give ``client`` (a ``Redis`` or
            ``RedisCluster``) or ``connection_pool`` instead (exactly one of the three; a
            caller's client or pool is not closed here).
        cluster: ``url`` names a node of a Redis Cluster.
        prefix: prepended to every key (no ``{`` or ``}``); stores with distinct prefixes
            never see each other's data (G-19).
        clock: the source of every time the store stamps (G-6).
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
        self._registry = self._keys.key("ss.registry")
        self._ids = self._keys.key("ss.ids")
        self._recent_keys: dict[str, list[str]] = {}

    # --- keys and helpers ------------------------------------------------------------------

    def session_keys(self, session_id: str) -> list[str]:
        """The keys of a session: its hash, the store's registry, its messages and times (a
        back door for tests; the per-session scripts take the three in the session's slot)."""
        tag = (session_id,)
        return [
            self._keys.key("ss.session", tag=tag),
            self._registry,
            self._keys.key("ss.messages", tag=tag),
            self._keys.key("ss.times", tag=tag),
        ]

    def _script_keys(self, session_id: str) -> list[str]:
        """KEYS[1..3] of the per-session scripts: hash, messages, times (one slot); remembered
        for the sessions used lately (an agent adds to the same few, message after message)."""
        keys = self._recent_keys.get(session_id)
        if keys is None:
            if len(self._recent_keys) >= _RECENT_KEYS:
                self._recent_keys.clear()
            hash_key, _, messages_key, times_key = self.session_keys(session_id)
            keys = self._recent_keys[session_id] = [hash_key, messages_key, times_key]
        return keys

    @property
    def client(self) -> RedisClient:
        """The store's client (a back door for tests)."""
        return self._handle.client

    def _now(self) -> int:
        return check_timestamp(self._clock(), what="clock reading")

    async def _new_id(self, now: int) -> str:
        """Reserve and register an id (SS-4); a failure after this leaves a registered id
        without a session, which readers skip and nobody reuses."""
        day = rules.day_of(now)
        async with translate_errors("reserve a session id"):
            number = await _RESERVE(self._handle.client, [self._ids, self._registry], [day])
        return rules.format_session_id(day, int(number))

    @staticmethod
    def _parse_read(reply: Any) -> _Read | None:
        if reply is None:
            return None
        fields = _hash(reply[0])
        return _Read(fields, int(reply[1]), reply[2] if len(reply) > 2 else None)

    async def _read_one(self, session_id: str, *, messages: bool) -> _Read:
        """One session, read whole by one script."""
        flag = "1" if messages else "0"
        async with translate_errors("read session"):
            reply = await _READ(self._handle.client, self._script_keys(session_id), [flag])
        read = self._parse_read(reply)
        if read is None:
            raise NotFound(f"no session {session_id!r}")
        return read

    async def _all(self, *, messages: bool) -> list[_Read]:
        """Every session, each read whole (see the module docstring for what a concurrent
        write may do): the registry, then one read script per session in one pipeline."""
        flag = "1" if messages else "0"
        async with translate_errors("list sessions"):
            members = await self._handle.client.smembers(self._registry)
            ids = sorted(text(member) for member in members)
            replies = await _READ.many(
                self._handle.client, [(self._script_keys(i), [flag]) for i in ids]
            )
        reads = (self._parse_read(reply) for reply in replies)
        return [read for read in reads if read is not None]

    async def _write(self, script: Script, session_id: str, args: Sequence[str]) -> None:
        """Run a per-session write script; NotFound if it found no session."""
        async with translate_errors("write session"):
            done = await script(self._handle.client, self._script_keys(session_id), args)
        if not done:
            raise NotFound(f"no session {session_id!r}")

    async def _update_fields(self, session_id: str, fields: Mapping[str, Any]) -> None:
        """Set ``fields`` and ``updated_at = now`` in one script (SS-11 .. SS-14): the write of
        the partial updates (:class:`~..session_store_rules.SessionUpdates`)."""
        now = self._now()
        await self._write(_UPDATE, session_id, [dump_json(now), *_field_args(fields)])

    async def _create(
        self, session_id: str, pairs: Sequence[str], conversation: Sequence[str]
    ) -> None:
        """Write a new (registered) session whole: its fields and a conversation's ARGV."""
        args = [str(len(pairs)), *pairs, *conversation]
        async with translate_errors("create session"):
            created = await _CREATE(self._handle.client, self._script_keys(session_id), args)
        if not created:  # the id counter went backwards: storage was tampered with
            raise StorageUnavailable(f"session id {session_id!r} is taken: corrupt id counter")

    async def _insert(self, session: Session, conversation: Sequence[Message]) -> Session:
        """Store a new session with its conversation in one script."""
        pairs = _field_args(rules.session_to_json(session))
        await self._create(session.id, pairs, _conversation_args(conversation))
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

    async def _list(self, types: frozenset[SessionType]) -> list[Session]:
        """The listings' query (:class:`~..session_store_rules.SessionQueries`): every session
        in one pipeline, sorted here (SS-6)."""
        sessions = [_session(read) for read in await self._all(messages=False)]
        chosen = [s for s in sessions if s.session_type in types]
        # SS-6's order: the registry is a set, so the listing is sorted here.
        return sorted(chosen, key=lambda s: rules.list_order(s.id, s.updated_at))

    async def delete_session(self, session_id: str) -> None:
        """Delete the session and its conversation in one script, then unregister it (SS-7).

        The id leaves the registry only after a delete that found the session: an id whose
        creation is under way (registered, not yet written) is never unregistered.
        """
        rules.check_session_id(session_id)
        await self._write(_DELETE, session_id, [])
        async with translate_errors("unregister session"):
            await self._handle.client.srem(self._registry, session_id)

    async def get_insights(self) -> SessionInsights:
        """Session count and token total over every session (SS-16)."""
        return rules.insights(_session(read) for read in await self._all(messages=False))

    # --- conversation (SS-8 .. SS-10) -------------------------------------------------------

    async def add_message(self, session_id: str, message: Message) -> None:
        """RPUSH the message and bump updated_at in one script (SS-8)."""
        rules.check_session_id(session_id)
        (checked,) = rules.check_conversation([message])
        now = self._now()
        args = [str(now), encode_json(message_to_json(checked)), _time_code(checked)]
        await self._write(_ADD, session_id, args)

    async def replace_conversation(self, session_id: str, conversation: Sequence[Message]) -> None:
        """Replace the conversation and bump updated_at in one script (SS-9)."""
        rules.check_session_id(session_id)
        messages = rules.check_conversation(conversation)
        now = self._now()
        await self._write(_REPLACE, session_id, [dump_json(now), *_conversation_args(messages)])

    async def truncate_conversation(self, session_id: str, timestamp: int) -> None:
        """Drop the messages created at or after ``timestamp`` in one script (SS-10)."""
        rules.check_session_id(session_id)
        check_timestamp(timestamp, what="timestamp")
        now = self._now()
        await self._write(_TRUNCATE, session_id, [dump_json(now), _hex(timestamp)])

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
        """A new session with what SS-19 lists: the source is read whole by one script in its
        slot, then the copy is registered and written whole in its own (module docstring)."""
        rules.check_session_id(session_id)
        name = rules.check_name(new_name, what="new_name")
        async with translate_errors("copy session"):
            source = await _COPY_SOURCE(
                self._handle.client, self._script_keys(session_id), list(_CARRIED)
            )
        if source is None:
            raise NotFound(f"no session {session_id!r}")
        values, messages, times = source
        if any(value is None for value in values) or len(messages) != len(times):
            raise StorageUnavailable(f"stored session {session_id!r} is corrupt")
        now = self._now()
        new_id = await self._new_id(now)
        # The fields the copy does not take from its source; the carried ones are copied as
        # stored, so the copy is one consistent snapshot of the source.
        own = {
            key: value
            for key, value in rules.session_to_json(
                rules.new_session(new_id, "-", name, SessionType.USER, now)
            ).items()
            if key not in _CARRIED
        }
        own["user_set_name"] = True
        carried = {key: text(value) for key, value in zip(_CARRIED, values, strict=True)}
        fields = {key: dump_json(value) for key, value in own.items()} | carried
        pairs = [part for item in fields.items() for part in item]
        conversation = [str(len(messages)), *messages, *times]
        await self._create(new_id, pairs, conversation)
        return _session(_Read(fields, len(messages), None))

    # --- search (SS-20 .. SS-22) ------------------------------------------------------------

    async def _search(self, request: rules.SearchRequest) -> list[ChatHistoryMatch]:
        """The search's query (:class:`~..session_store_rules.SessionQueries`): a scan of every
        conversation (plain Redis has no text index), matched in Python (SS-20 .. SS-22)."""
        candidates: list[rules.Candidate] = []
        for read in await self._all(messages=True):
            session = _session(read)
            if session.id == request.exclude_session_id or read.messages is None:
                continue
            for position, message in enumerate(_messages(read.messages)):
                candidates.append(rules.Candidate(session.id, session.name, position, message))
        return rules.select_matches(request, candidates)


open_store, open_cluster_store = kit_openers(
    lambda context, connection: RedisSessionStore(**connection, clock=context.clock)
)
