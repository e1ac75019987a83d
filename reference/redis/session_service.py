"""The session-service family on Redis (spec ``session_service.md``): hashes, lexicographic
sorted sets, and one Lua script per operation.

Keys (layout and escaping in :mod:`agentstores.reference.redis._client`; ``A`` an app, ``U`` a
user, ``S`` a session id); every key of an app carries the hash tag of ``A``::

    sv.session:U:S   hash   agent_id (JSON), metadata (JSON), created_at, last_update_time,
                            version, member (its sv.index entry)
    sv.sstate:U:S    hash   the session's own state: key -> JSON value
    sv.ustate:U      hash   the pair's user: state: key -> JSON value
    sv.astate        hash   the app's app: state: key -> JSON value
    sv.index:U       zset   the pair's sessions: hex16(2**63-1 - last_update_time) + S
    sv.order:U:S     zset   the session's events: hex16(timestamp) + hex16(the session's
                            version after the append: it grows with every append)
    sv.events:U:S    hash   sv.order member -> the event's stored text (:mod:`.._events`:
                            event_to_json without default-valued fields; older sessions
                            hold the full form, which reads the same)
    sv.ids:U:S       hash   event id -> sv.order member (duplicate ids, SV-13)

Every sorted set has all scores 0, so Redis orders it by the member's bytes: fixed-width hex
keeps any time up to 2**63-1 exact (a double score could not), and UTF-8 byte order is
code-point order. So ``sv.index:U`` is SV-6's order and ``sv.order:U:S`` is SV-16's; the newest
``n`` events are ``ZRANGE -n -1`` and a time range is a ``BYLEX`` range, each O(log N + n).
An append is a few O(log N) commands, whatever the session's length. State values are opaque
JSON strings to Lua (its cjson would round big integers and ``-0.0``); only Python parses them.
(Sessions written before the version keyed events kept an ``appended`` counter for it; every
version is at least that count, so their old and new events stay in append order.)

Cost of a write: the caller's event is checked and encoded once (:mod:`.._events`); the script
reads the session's fields in one ``HMGET``, claims the event id with ``HSETNX``, writes, and
returns only what the caller cannot know (agent id, metadata, creation time, and the state
scopes for SV-10's merged view), not the version and time it stamped.

Cost of a read: ``get`` and ``get_events`` are one script that returns what it read as one
text (the stored texts joined by a separator, :func:`~._client.unframe`): redis-py parses a
nested array reply element by element in Python, a bulk string at once. The stored texts
were checked before they were written, so a read decodes them by shape only
(:func:`.._events.decode_stored`): damaged data is StorageUnavailable, never a malformed
event.

Atomicity and concurrency: each write is one Lua script that checks and writes in isolation.
``append_event`` and ``update_state`` compare the stored ``version`` with the caller's inside
the script and refuse with ``Conflict`` if they differ, so the check holds for every client of
the server (SV-15), and the event, its state delta and the new version land together (SV-14).
Reads of a session are scripts too. ``list`` and ``search`` first read the pair's index, then
run a script that declares the sessions' keys, checks that the index is unchanged and reads
everything; if a write got in between, they try again.

Slots and clusters (a ``RedisCluster`` client, or a node's URL with ``cluster=True``): an
event's delta may change the app's ``app:`` state, and SV-14 wants the event and its whole
delta applied together, so every key of an app shares the app's hash tag, and every script
declares keys of that one tag: each runs whole on the primary of the app's slot, also on a
cluster. ``list`` and ``search`` span a user's sessions; they stay within the app's slot, so
they are one script each, as on one server (their optimistic re-read is there for writes that
land between reading the index and the script, not for the cluster). Nothing spans apps. The
cost: one app lives on one shard; many apps spread over the cluster. Per-session tags would
spread one app's sessions too, but then an event's ``app:`` delta would be a second write in
another slot, and SV-14 would not hold across a failure between the two.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from typing import Any, cast

import redis.asyncio as aioredis

from agentstores.spec.errors import AlreadyExists, Conflict, NotFound, StorageUnavailable
from agentstores.spec.session_service import (
    CreateRequest,
    Event,
    EventFilter,
    GetRequest,
    ListRequest,
    ScopedDelta,
    SearchOptions,
    SearchResult,
    Session,
    UpdateRequest,
    check_state_delta,
    split_state_delta,
)
from agentstores.spec.values import Clock, JSONObject, load_json, system_clock

from .. import _events
from .. import session_service_rules as rules
from .._records import build, scan_json
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

__all__ = ["RedisSessionService", "open_cluster_store", "open_store"]

_MAX_TIME = 2**63 - 1
#: Redis takes ZRANGE bounds as signed 64-bit; a larger page means "to the end".
_MAX_RANK = 2**62
#: How often list and search re-read when writes keep changing the index under them.
_READ_ATTEMPTS = 100
#: How many sessions' key lists a store remembers (a few hundred kilobytes at most).
_RECENT_KEYS = 1024


def _hex(value: int) -> str:
    return f"{value:016x}"


# --- Lua ------------------------------------------------------------------------------------
#
# Session scripts share KEYS[1..8] (see _session_keys): 1 sv.session, 2 sv.sstate, 3 sv.ustate,
# 4 sv.astate, 5 sv.index, 6 sv.events, 7 sv.order, 8 sv.ids.

# The write scripts are straight-line code put together from these pieces (Lua functions
# would be made afresh on every call: a closure each, which costs more than a command).
# ``@`` in a piece stands for the index in ARGV where its arguments start.

# Apply the three scoped parts of a delta, if the call has one (most appends do not): counts
# at ARGV[@], ARGV[@+1], ARGV[@+2], then the field/value pairs of the session's, the user's
# and the app's scope. One HSET per 500 pairs (unpack has a stack limit).
_PUT_DELTA = """
if #ARGV >= @ then
  local at = @ + 3
  for scope = 0, 2 do
    local last = at + 2 * tonumber(ARGV[@ + scope]) - 1
    for j = at, last, 1000 do
      redis.call('HSET', KEYS[2 + scope], unpack(ARGV, j, math.min(j + 999, last)))
    end
    at = last + 1
  end
end
"""

# SV-15, checked before anything is written (so that a refused or failing write writes
# nothing): the session's fields, if it may be written from version ARGV[1].
_FRESH = """
local s = redis.call('HMGET', KEYS[1], 'version', 'member', 'agent_id', 'metadata',
                     'created_at')
if not s[1] then return {'missing'} end
if s[1] ~= ARGV[1] then return {'conflict', s[1]} end
if not (s[3] and s[4] and s[5]) then return {'corrupt'} end
"""

# Move the session in the pair's index from its old place (if any) to ARGV[@].
_MOVE = """
if s[2] then redis.call('ZREM', KEYS[5], s[2]) end
redis.call('ZADD', KEYS[5], 0, ARGV[@])
"""

# What a write returns: one JSON text (one reply for the client to parse, where an array of
# hashes costs a parse per element): the array of agent id, metadata and created_at (s[3..5])
# and the three state scopes, each an object of the stored JSON values, copied, never parsed
# (cjson would round big integers; it only quotes the fields). The caller knows the version
# and time it wrote.
_WRITTEN = """
local out = {'[', s[3], ',', s[4], ',', s[5]}
for scope = 2, 4 do
  local flat = redis.call('HGETALL', KEYS[scope])
  out[#out + 1] = ',{'
  for i = 1, #flat, 2 do
    if i > 1 then out[#out + 1] = ',' end
    out[#out + 1] = cjson.encode(flat[i]) .. ':' .. flat[i + 1]
  end
  out[#out + 1] = '}'
end
out[#out + 1] = ']'
return table.concat(out)
"""


def _lua(*pieces: str, at: int = 0) -> str:
    """A script from pieces, ``@`` replaced by ``at``."""
    return "".join(pieces).replace("@", str(at))


# ARGV: 1 now, 2 index member, 3 agent JSON, 4 metadata JSON, then the delta if any: 5..7
# counts, 8.. pairs.
_CREATE = Script(
    """
if redis.call('EXISTS', KEYS[1]) == 1 then return {'exists'} end
redis.call('HSET', KEYS[1], 'agent_id', ARGV[3], 'metadata', ARGV[4], 'created_at', ARGV[1],
           'last_update_time', ARGV[1], 'version', '0', 'member', ARGV[2])
redis.call('ZADD', KEYS[5], 0, ARGV[2])
local s = {false, false, ARGV[3], ARGV[4], ARGV[1]}
"""
    + _lua(_PUT_DELTA, at=5)
    + _WRITTEN
)

# ARGV: 1 version read, 2 version after, 3 event id, 4 order member, 5 event JSON, 6 now,
# 7 index member, then the delta if any: 8..10 counts, 11.. pairs. Checks come first: a
# refused append writes nothing (HSETNX both checks the id and claims it).
_APPEND = Script(
    _FRESH
    + """
if redis.call('HSETNX', KEYS[8], ARGV[3], ARGV[4]) == 0 then return {'duplicate'} end
redis.call('ZADD', KEYS[7], 0, ARGV[4])
redis.call('HSET', KEYS[6], ARGV[4], ARGV[5])
redis.call('HSET', KEYS[1], 'version', ARGV[2], 'last_update_time', ARGV[6], 'member', ARGV[7])
"""
    + _lua(_MOVE, at=7)
    + _lua(_PUT_DELTA, at=8)
    + _WRITTEN
)

# ARGV: 1 version read, 2 version after, 3 now, 4 index member, then the delta if any: 5..7
# counts, 8.. pairs.
_UPDATE_STATE = Script(
    _FRESH
    + """
redis.call('HSET', KEYS[1], 'version', ARGV[2], 'last_update_time', ARGV[3], 'member', ARGV[4])
"""
    + _lua(_MOVE, at=4)
    + _lua(_PUT_DELTA, at=5)
    + _WRITTEN
)

# ARGV: 1 metadata JSON, 2 now, 3 index member. 0 if the session is missing.
_UPDATE = Script(
    """
local s = redis.call('HMGET', KEYS[1], 'version', 'member')
if not s[1] then return 0 end
redis.call('HSET', KEYS[1], 'metadata', ARGV[1], 'last_update_time', ARGV[2], 'member', ARGV[3])
"""
    + _lua(_MOVE, at=3)
    + """
return 1
"""
)

# 0 if the session is missing; else removes it, its events and its own state.
_DELETE = Script(
    """
local member = redis.call('HGET', KEYS[1], 'member')
if not member then return 0 end
redis.call('ZREM', KEYS[5], member)
redis.call('DEL', KEYS[1], KEYS[2], KEYS[6], KEYS[7], KEYS[8])
return 1
"""
)

# ARGV: 1 mode: 'all' (every event), 'last' (the newest ARGV[2] + 1), 'none' (no events) or
# 'range' (ARGV[2], ARGV[3]: BYLEX bounds; the events only, no session view: get_events).
# Returns false if the session is missing (no field of its hash), else one text: pieces joined
# by FRAME_SEPARATOR (see _client.unframe; one bulk string costs the client far less than
# nested arrays):
#   the counts "own user app events" (the state scopes' sizes, 0 in 'range' mode), the
#   session's agent_id, metadata, created_at, last_update_time and version ('' if missing),
#   then per scope (session, user, app) its keys and values (each key JSON-quoted: a key may
#   hold any character), then the events' texts in SV-16's order.
_READ = Script(
    """
local s = redis.call('HMGET', KEYS[1], 'agent_id', 'metadata', 'created_at',
                     'last_update_time', 'version', 'member')
if not (s[1] or s[2] or s[3] or s[4] or s[5] or s[6]) then return false end
local mode = ARGV[1]
local members
if mode == 'last' then
  -- Counted from the tail, which Redis reaches at once (a range by rank from the head walks
  -- the skip list: slow on a long, cold session), then put back in order.
  local newest = redis.call('ZREVRANGE', KEYS[7], 0, ARGV[2])
  local n = #newest
  members = {}
  for i = 1, n do members[i] = newest[n + 1 - i] end
elseif mode == 'all' then
  members = redis.call('ZRANGE', KEYS[7], 0, -1)
elseif mode == 'none' then
  members = {}
else
  members = redis.call('ZRANGE', KEYS[7], ARGV[2], ARGV[3], 'BYLEX')
end
local out = {''}
for i = 1, 5 do out[i + 1] = s[i] or '' end
local counts = {0, 0, 0, #members}
-- Most sessions have no state in any scope: one EXISTS then spares three HGETALLs (every
-- command a script runs costs more than its work on a cold server).
if mode ~= 'range' and redis.call('EXISTS', KEYS[2], KEYS[3], KEYS[4]) > 0 then
  for scope = 2, 4 do
    local flat = redis.call('HGETALL', KEYS[scope])
    counts[scope - 1] = #flat / 2
    for i = 1, #flat, 2 do
      out[#out + 1] = cjson.encode(flat[i])
      out[#out + 1] = flat[i + 1]
    end
  end
end
out[1] = table.concat(counts, ' ')
local sep = string.char(30)
if #members == 0 then return table.concat(out, sep) end
if #members <= 500 then  -- the usual read: the bodies joined as they come
  local bodies = redis.call('HMGET', KEYS[6], unpack(members))
  for j = 1, #bodies do if not bodies[j] then bodies[j] = '' end end
  return table.concat(out, sep) .. sep .. table.concat(bodies, sep)
end
for i = 1, #members, 500 do  -- unpack has a stack limit
  local part = redis.call('HMGET', KEYS[6], unpack(members, i, math.min(i + 499, #members)))
  for j = 1, #part do out[#out + 1] = part[j] or '' end
end
return table.concat(out, sep)
"""
)

# KEYS: 1 sv.index:U, 2 sv.ustate:U, 3 sv.astate, then per listed session sv.session:U:S and
# sv.sstate:U:S. ARGV: 1 start, 2 stop (ZRANGE ranks), 3.. the members the caller read there.
# {'retry'} if the index changed since, else {'ok', user state, app state, {session, state}...}.
_LIST = Script(
    """
local members = redis.call('ZRANGE', KEYS[1], ARGV[1], ARGV[2])
if #members ~= #ARGV - 2 then return {'retry'} end
for i, member in ipairs(members) do
  if member ~= ARGV[i + 2] then return {'retry'} end
end
local rows = {}
for i = 1, #members do
  rows[i] = {redis.call('HGETALL', KEYS[2 + 2 * i]), redis.call('HGETALL', KEYS[3 + 2 * i])}
end
return {'ok', redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3]), rows}
"""
)

# KEYS: 1 sv.index:U, then per session sv.session:U:S, sv.order:U:S, sv.events:U:S.
# ARGV: the whole index as the caller read it. {'retry'} if it changed, else
# {'ok', {agent JSON, {event JSON...}}...} with each session's events in SV-16's order.
_SEARCH = Script(
    """
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
if #members ~= #ARGV then return {'retry'} end
for i, member in ipairs(members) do
  if member ~= ARGV[i] then return {'retry'} end
end
local sessions = {}
for i = 1, #members do
  local base = 3 * i - 1
  local bodies = {}
  for j, m in ipairs(redis.call('ZRANGE', KEYS[base + 1], 0, -1)) do
    bodies[j] = redis.call('HGET', KEYS[base + 2], m)
  end
  sessions[i] = {redis.call('HGET', KEYS[base], 'agent_id'), bodies}
end
return {'ok', sessions}
"""
)


def _hash(flat: Sequence[Any]) -> dict[str, str]:
    """A HGETALL reply as a dict of str."""
    return {text(flat[i]): text(flat[i + 1]) for i in range(0, len(flat), 2)}


def _json_hash(flat: Sequence[Any], what: str) -> JSONObject:
    """A hash of JSON values (a state scope) as a dict."""
    return {key: load_record(value, what=what) for key, value in _hash(flat).items()}


def _status(reply: Any) -> str | None:
    """None for a write script's JSON text (it went through), else its refusal's word."""
    return None if isinstance(reply, bytes | str) else text(reply[0])


def _event(raw: bytes | str | None) -> Event:
    """An event of a script's array reply, decoded by shape (:mod:`.._events`)."""
    if raw is None:
        raise StorageUnavailable("a listed event has no data in Redis")
    try:
        body = text(raw)
    except UnicodeDecodeError as exc:
        raise StorageUnavailable("a stored event is not UTF-8 text") from exc
    return _events.decode_stored(body)


def _stored_json(piece: str, *, what: str) -> Any:
    """A stored JSON text parsed (stored texts hold no whitespace); StorageUnavailable if it
    is not exactly one JSON value (damaged data)."""
    try:
        value, end = scan_json(piece, 0)
    except (StopIteration, ValueError):
        end = -1
    if end != len(piece):
        raise StorageUnavailable(f"stored {what} in Redis is not valid JSON")
    return value


def _read_pieces(reply: bytes | str) -> tuple[list[str], tuple[int, int, int], int]:
    """A ``_READ`` reply split: its pieces, the sizes of the three state scopes (session,
    user, app) and the index of the first event's piece; StorageUnavailable if the pieces
    are not as many as the counts say (damaged data that holds the separator)."""
    pieces = unframe(reply)
    own, user, app, count = (int(n) for n in pieces[0].split(" "))
    first_event = 6 + 2 * (own + user + app)
    if len(pieces) != first_event + count:
        raise StorageUnavailable("damaged data in Redis: a stored text holds a separator")
    return pieces, (own, user, app), first_event


def _delta_args(parts: ScopedDelta) -> list[str]:
    """The three counts and the field/value pairs of a delta's stored scopes, as ARGV (encoded
    now, so that later changes to the caller's values do not reach the store, G-7); none for
    a delta that stores nothing."""
    scopes = (parts.session, parts.user, parts.app)
    if not any(scopes):
        return []
    args = [str(len(scope)) for scope in scopes]
    for scope in scopes:
        for key, value in scope.items():
            args += [key, encode_json(value)]
    return args


def _new_id() -> str:
    """A fresh event id (32 hex digits, as ``rules.new_id`` gives)."""
    return _events.new_event_id()


def _temp_copy(parts: ScopedDelta) -> JSONObject:
    """The ``temp:`` keys of a delta, in objects of the store's own (SV-9, G-7)."""
    return rules.copy_json(parts.temp) if parts.temp else {}


def _session(
    key: tuple[str, str, str],
    agent_id: str | None,
    state: JSONObject,
    events: tuple[Event, ...],
    last_update_time: int,
    created_at: int,
    metadata: JSONObject,
    version: int,
) -> Session:
    """The session (app, user, id) = ``key`` with these fields, built without re-checking
    them (the callers parsed or stamped each one)."""
    return build(
        Session,
        id=key[2],
        app_name=key[0],
        user_id=key[1],
        agent_id=agent_id,
        state=state,
        events=events,
        last_update_time=last_update_time,
        created_at=created_at,
        metadata=metadata,
        version=version,
    )


class RedisSessionService(RedisStore):
    """A :class:`~agentstores.spec.session_service.SessionService` on Redis.

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
        self._recent_keys: dict[tuple[str, str, str], list[str]] = {}

    # --- keys and replies ------------------------------------------------------------------

    def _key(self, kind: str, app: str, *parts: str) -> str:
        return self._keys.key(kind, *parts, tag=(app,))

    def _session_keys(self, app: str, user: str, session_id: str) -> list[str]:
        """KEYS[1..8] of the session scripts (remembered for the sessions used lately: an agent
        appends to the same few sessions over and over)."""
        cache_key = (app, user, session_id)
        keys = self._recent_keys.get(cache_key)
        if keys is None:
            if len(self._recent_keys) >= _RECENT_KEYS:
                self._recent_keys.clear()
            keys = self._recent_keys[cache_key] = self._build_session_keys(*cache_key)
        return keys

    def _build_session_keys(self, app: str, user: str, session_id: str) -> list[str]:
        return [
            self._key("sv.session", app, user, session_id),
            self._key("sv.sstate", app, user, session_id),
            self._key("sv.ustate", app, user),
            self._key("sv.astate", app),
            self._key("sv.index", app, user),
            self._key("sv.events", app, user, session_id),
            self._key("sv.order", app, user, session_id),
            self._key("sv.ids", app, user, session_id),
        ]

    @staticmethod
    def _member(now: int, session_id: str) -> str:
        """The session's entry in its pair's index: newest first, then by id (SV-6)."""
        return _hex(_MAX_TIME - now) + session_id

    @staticmethod
    def _session(
        app: str,
        user: str,
        session_id: str,
        fields: Mapping[str, str],
        state: JSONObject,
        events: tuple[Event, ...],
    ) -> Session:
        try:
            return Session(
                id=session_id,
                app_name=app,
                user_id=user,
                agent_id=load_record(fields["agent_id"], what="agent id"),
                state=state,
                events=events,
                last_update_time=int(fields["last_update_time"]),
                created_at=int(fields["created_at"]),
                metadata=load_record(fields["metadata"], what="metadata"),
                version=int(fields["version"]),
            )
        except (KeyError, ValueError) as exc:
            raise StorageUnavailable(f"corrupt session {session_id!r} in Redis: {exc}") from exc

    @staticmethod
    def _view(key: tuple[str, str, str], reply: bytes | str) -> Session:
        """The session of a ``_READ`` reply: its fields, merged state (SV-10) and events, the
        stored texts decoded by shape (they were checked before they were written)."""
        pieces, (own, user, app), first_event = _read_pieces(reply)
        state: JSONObject = {}
        # SV-10: the app's scope, then the user's, then the session's own win.
        for start, size in ((6 + 2 * (own + user), app), (6 + 2 * own, user), (6, own)):
            for i in range(start, start + 2 * size, 2):
                name = _stored_json(pieces[i], what="state key")
                if type(name) is not str:
                    raise StorageUnavailable("a stored state key in Redis is not a str")
                state[name] = _stored_json(pieces[i + 1], what="state value")
        events = _events.decode_stored_all(pieces[first_event:])
        agent_id = _stored_json(pieces[1], what="agent id")
        metadata = _stored_json(pieces[2], what="metadata")
        try:
            if not (agent_id is None or type(agent_id) is str) or type(metadata) is not dict:
                raise TypeError("agent id or metadata of the wrong type")
            created_at, last_update_time, version = (int(n) for n in pieces[3:6])
        except (ValueError, TypeError) as exc:
            raise StorageUnavailable(f"corrupt session {key[2]!r} in Redis: {exc}") from exc
        times = (last_update_time, created_at)
        return _session(key, agent_id, state, events, *times, metadata, version)

    @staticmethod
    def _written(
        key: tuple[str, str, str],
        reply: bytes | str,
        *,
        events: tuple[Event, ...],
        now: int,
        version: int,
        temp: JSONObject,
    ) -> Session:
        """The session after a write, from the script's ``written()`` reply (agent id,
        metadata, creation time, the three state scopes as they are now: SV-10), the time and
        version the write stamped, and the call's ``temp:`` keys (SV-9)."""
        try:
            agent, metadata, created, own, user_state, app_state = load_json(reply)
            if not isinstance(created, int) or not isinstance(metadata, dict):
                raise TypeError("created_at or metadata of the wrong type")
            state = {**app_state, **user_state, **own, **temp}
        except (ValueError, TypeError) as exc:  # also unparsable JSON and wrong shapes
            raise StorageUnavailable(f"corrupt session {key[2]!r} in Redis: {exc}") from exc
        return _session(key, agent, state, events, now, created, metadata, version)

    @staticmethod
    def _accepted(reply: Any, session: Session) -> bytes | str:
        """The reply of a write that went through (a JSON text), else the error a refused
        write's reply names (SV-13, SV-15)."""
        status = _status(reply)
        if status is None:
            return cast("bytes | str", reply)
        if status == "missing":
            raise NotFound(f"no session {session.id!r} for this app and user")
        if status == "conflict":
            actual = int(text(reply[1]))
            raise Conflict(
                f"session {session.id!r} changed since it was read",
                expected=session.version,
                actual=actual,
            )
        raise StorageUnavailable(f"session {session.id!r} in Redis: {status}")

    # --- sessions (SV-1 .. SV-6) -------------------------------------------------------------

    async def create(self, request: CreateRequest) -> Session:
        """Create a session and apply its initial state (SV-1, SV-2)."""
        req = rules.check_create(request)
        parts = split_state_delta(req.state)
        temp = parts.temp  # check_create made the request's dicts the store's own
        app, user = req.app_name, req.user_id
        async with translate_errors("create"):
            while True:
                session_id = req.session_id if req.session_id is not None else rules.new_id()
                now = self._clock()
                args = [
                    str(now),
                    self._member(now, session_id),
                    encode_json(req.agent_id),
                    encode_json(req.metadata),
                    *_delta_args(parts),
                ]
                keys = self._session_keys(app, user, session_id)
                reply = await _CREATE(self._handle.client, keys, args)
                if _status(reply) is None:
                    return self._written(
                        (app, user, session_id), reply, events=(), now=now, version=0, temp=temp
                    )
                if req.session_id is not None:
                    raise AlreadyExists(f"session {session_id!r} exists for this app and user")
                # A chosen id that is taken (practically never): choose again.

    async def get(self, request: GetRequest) -> Session | None:
        """The session with its merged state and events (SV-3, SV-10, SV-16)."""
        req = rules.check_get(request)
        key = (req.app_name, req.user_id, req.session_id)
        newest = req.num_recent_events
        if newest is None:
            args = ["all"]
        elif newest == 0:
            args = ["none"]
        else:  # ZREVRANGE 0 (n - 1); Redis takes a stop up to 2**63-1, and caps it at the end
            args = ["last", str(min(newest, _MAX_RANK) - 1)]
        async with translate_errors("get"):
            reply = await _READ(self._handle.client, self._session_keys(*key), args)
        if not reply:
            return None
        return self._view(key, reply)

    async def update(self, request: UpdateRequest) -> None:
        """Replace the session's metadata; version unchanged (SV-4)."""
        req = rules.check_update(request)
        now = self._clock()
        args = [encode_json(req.metadata), str(now), self._member(now, req.session_id)]
        keys = self._session_keys(req.app_name, req.user_id, req.session_id)
        async with translate_errors("update"):
            found = await _UPDATE(self._handle.client, keys, args)
        if not found:
            raise NotFound(f"no session {req.session_id!r} for this app and user")

    async def delete(self, app_name: str, user_id: str, session_id: str) -> None:
        """Delete the session, its events and its own state (SV-5)."""
        key = rules.check_key(app_name, user_id, session_id)
        async with translate_errors("delete"):
            found = await _DELETE(self._handle.client, self._session_keys(*key), [])
        if not found:
            raise NotFound(f"no session {session_id!r} for this app and user")

    async def list(self, request: ListRequest) -> list[Session]:
        """The pair's sessions, newest update first, paged, without events (SV-6)."""
        req = rules.check_list(request)
        app, user = req.app_name, req.user_id
        if req.limit == 0 or req.offset >= _MAX_RANK:
            return []
        start = req.offset
        stop = -1 if req.limit is None else min(start + req.limit - 1, _MAX_RANK)
        index = self._key("sv.index", app, user)
        fixed = [index, self._key("sv.ustate", app, user), self._key("sv.astate", app)]
        async with translate_errors("list"):
            for _ in range(_READ_ATTEMPTS):
                raw = await self._handle.client.zrange(index, start, stop)
                members = [text(m) for m in cast("list[bytes | str]", raw)]
                ids = [member[16:] for member in members]
                keys = list(fixed)
                for session_id in ids:
                    keys += [
                        self._key("sv.session", app, user, session_id),
                        self._key("sv.sstate", app, user, session_id),
                    ]
                reply = await _LIST(self._handle.client, keys, [str(start), str(stop), *members])
                if text(reply[0]) != "ok":
                    continue
                shared = {
                    **_json_hash(reply[2], "app state"),
                    **_json_hash(reply[1], "user state"),
                }
                return [
                    self._session(
                        app,
                        user,
                        session_id,
                        _hash(row[0]),
                        {**shared, **_json_hash(row[1], "session state")},
                        (),
                    )
                    for session_id, row in zip(ids, reply[3], strict=True)
                ]
        raise StorageUnavailable("list: the index kept changing; try again")

    # --- events and state (SV-11 .. SV-18) -------------------------------------------------

    async def append_event(self, session: Session, event: Event) -> Session:
        """Append the event and apply its delta atomically, if the session is fresh (SV-13).

        One script of a dozen O(log N) commands, whatever the session's length. Everything the
        caller gave is encoded before the first await (G-7)."""
        handle = rules.check_handle(session)
        checked = _events.checked_event(event)  # the caller's dicts: encoded before any await
        if checked.actions.state_delta:
            parts = split_state_delta(checked.actions.state_delta)
            delta, temp = _delta_args(parts), _temp_copy(parts)
        else:  # most events change no state
            delta, temp = [], {}
        key = (handle.app_name, handle.user_id, handle.id)
        keys = self._session_keys(*key)
        version = handle.version + 1
        event_id = checked.id if checked.id is not None else _new_id()
        now = self._clock()
        timestamp = now if checked.timestamp is None else checked.timestamp
        # The stored form, encoded once: the store's own copy (G-7).
        body = _events.encode_stored(checked, event_id=event_id, now=now)
        async with translate_errors("append_event"):
            while True:
                args = [
                    str(handle.version),
                    str(version),
                    event_id,
                    # SV-16: by time, then in append order, which the version counts.
                    _hex(timestamp) + _hex(version),
                    body,
                    str(now),
                    self._member(now, handle.id),
                    *delta,
                ]
                reply = await _APPEND(self._handle.client, keys, args)
                if _status(reply) != "duplicate":
                    break
                if checked.id is not None:
                    raise AlreadyExists(f"event {event_id!r} exists in session {handle.id!r}")
                # A chosen id that is taken (practically never): choose again, encoding the
                # stored copy, not the caller's event (which may have changed meanwhile).
                event_id = _new_id()
                body = _events.encode_stored(
                    _events.decode_stored(body), event_id=event_id, now=now
                )
        written = self._accepted(reply, handle)
        # The event returned is decoded from the text stored: it shares nothing (G-7).
        events = (*handle.events, _events.decode_stored(body))
        return self._written(key, written, events=events, now=now, version=version, temp=temp)

    async def update_state(self, session: Session, delta: Mapping[str, Any]) -> Session:
        """Apply a state delta without an event, if the session is fresh (SV-11, SV-15)."""
        handle = rules.check_handle(session)
        parts = split_state_delta(check_state_delta(delta))
        args_delta = _delta_args(parts)
        temp = _temp_copy(parts)
        key = (handle.app_name, handle.user_id, handle.id)
        now = self._clock()
        version = handle.version + 1
        args = [
            str(handle.version),
            str(version),
            str(now),
            self._member(now, handle.id),
            *args_delta,
        ]
        async with translate_errors("update_state"):
            reply = await _UPDATE_STATE(self._handle.client, self._session_keys(*key), args)
        written = self._accepted(reply, handle)
        return self._written(
            key, written, events=tuple(handle.events), now=now, version=version, temp=temp
        )

    async def get_events(
        self, app_name: str, user_id: str, session_id: str, filter: EventFilter | None = None
    ) -> builtins.list[Event]:
        """The session's events that the filter selects, in order, paged (SV-16 .. SV-18)."""
        key = rules.check_key(app_name, user_id, session_id)
        f = rules.check_filter(filter)
        # The time range is a range of the order index: a member is hex16(ts) + hex16(seq),
        # so "[" + hex16(start) starts at the first event at start, "(" + hex16(end) stops
        # before the first event at end (SV-18's half-open range).
        low = "-" if f.start_time is None else "[" + _hex(f.start_time)
        high = "+" if f.end_time is None else "(" + _hex(f.end_time)
        async with translate_errors("get_events"):
            reply = await _READ(self._handle.client, self._session_keys(*key), ["range", low, high])
        if not reply:
            raise NotFound(f"no session {session_id!r} for this app and user")
        pieces, _, first_event = _read_pieces(reply)
        return rules.filter_events(_events.decode_stored_all(pieces[first_event:]), f)

    # --- search (SV-19 .. SV-25) -------------------------------------------------------------

    async def search(self, options: SearchOptions) -> builtins.list[SearchResult]:
        """Matching events of the pair's sessions, most relevant first (SV-19 .. SV-24)."""
        opts = rules.check_search(options)
        app, user = opts.app_name, opts.user_id
        index = self._key("sv.index", app, user)
        async with translate_errors("search"):
            for _ in range(_READ_ATTEMPTS):
                raw = await self._handle.client.zrange(index, 0, -1)
                members = [text(m) for m in cast("list[bytes | str]", raw)]
                ids = [member[16:] for member in members]
                if opts.session_id is not None and opts.session_id not in ids:
                    return []
                keys = [index]
                for session_id in ids:
                    keys += [
                        self._key("sv.session", app, user, session_id),
                        self._key("sv.order", app, user, session_id),
                        self._key("sv.events", app, user, session_id),
                    ]
                reply = await _SEARCH(self._handle.client, keys, members)
                if text(reply[0]) == "ok":
                    break
            else:
                raise StorageUnavailable("search: the index kept changing; try again")
        hits = []
        for session_id, (raw_agent, bodies) in zip(ids, reply[1], strict=True):
            agent_id = load_record(raw_agent, what="agent id")
            if not rules.session_selected(opts, session_id, agent_id):
                continue
            for index_in_session, body in enumerate(bodies):
                hit = rules.search_hit(
                    opts,
                    session_id=session_id,
                    agent_id=agent_id,
                    message_index=index_in_session,
                    event=_event(body),
                )
                if hit is not None:
                    hits.append(hit)
        return rules.page_results(hits, opts)


open_store, open_cluster_store = kit_openers(
    lambda context, connection: RedisSessionService(**connection, clock=context.clock)
)
