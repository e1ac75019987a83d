"""The thread/run family on Redis (spec ``thread_run.md``): hashes, lists, lexicographic
sorted sets, and one Lua script per compound operation.

Keys (layout and escaping in :mod:`agentstores.reference.redis._client`; ``T`` is a thread id,
``R`` a run id, ``S`` a status)::

    tr.thread:T           hash   created_at, updated_at (decimal; absent = None), title
                                 (absent = None), custom (JSON), order (T's member in tr.threads)
    tr.messages:T         list   one JSON message (message_to_json) per element, in order
    tr.threads            zset   every thread: hex16(2**63-1 - effective time) + T
    tr.runs               hash   R -> the run record as JSON (run_to_json)
    tr.run_meta           hash   R -> hex16(created_at) + hex16(updated_at) + S + ":" + T
    tr.runs_by_created    zset   every run: hex16(created_at) + R
    tr.runs_by_created:S  zset   the same, runs in status S
    tr.thread_runs:T      zset   T's runs: hex16(created_at) + R
    tr.thread_runs:T:S    zset   the same, T's runs in status S
    tr.thread_latest:T    zset   T's runs: hex16(updated_at) + hex16(created_at) + R

Every sorted set has all scores 0, so Redis orders it by the member's bytes. Times are
fixed-width lowercase hex (16 digits hold any time up to 2**63-1, which a double score could
not), and UTF-8 byte order is code-point order, so rank order *is* the spec's order: TR-5 for
``tr.threads``, TR-15 for the run indexes, and TR-14's maximum is the last member of
``tr.thread_latest:T``. Listing is ``ZRANGE`` by rank, O(log n + page). One index per filter
combination of ``list_runs`` keeps every query a range read. ``tr.run_meta`` lets scripts
unindex a run and check transitions without parsing JSON in Lua (Lua's cjson would round big
integers and ``-0.0``); JSON is written and read by Python only.

Atomicity: each write is one Lua script (:data:`_WRITE_THREAD`, :data:`_SAVE_MESSAGES`,
:data:`_CREATE_RUN`, :data:`_CHECKPOINT`, :data:`_DELETE_THREAD`) that checks and writes in one
round trip; scripts run in isolation, so readers never see half an operation (G-17, TR-19)
and concurrent ``create_run`` calls of one id have one winner (TR-22). Multi-key reads are
scripts too, so pages and totals agree.

Slots and clusters (a ``RedisCluster`` client, or a node's URL with ``cluster=True``): runs are
global by id (TR-12: a run id is unique across threads, and a checkpoint of a run stored on
another thread is refused, TR-21), and ``list_threads``/``list_runs`` order every thread and
run of the store, so each write must check the run-id registry and update store-wide indexes
in the same atomic step as the thread's keys. Every key of one store therefore carries the
store's tag (``{@<prefix>}``): a store's keys share one slot, every script declares all the
keys it touches, each script runs whole on the primary of that slot, and the listings that
span threads are single range reads there, as on one server. The cost: one store lives on one
shard of the cluster; stores of distinct prefixes (e.g. one per tenant or agent) spread over
the cluster. Per-thread tags would spread one store, but the id registry and the global
indexes would then sit in other slots, written in separate steps: a failover between the
steps would leave an id taken by no run, or a listing naming a run in a stale status, which
the spec does not allow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import redis.asyncio as aioredis

from agentstores.spec.errors import AlreadyExists, Conflict, NotFound, StorageUnavailable
from agentstores.spec.messages import Message, message_from_json, message_to_json
from agentstores.spec.thread_run import (
    RunPage,
    RunQuery,
    RunRecord,
    RunStatus,
    Thread,
    ThreadMetadata,
    allowed_transition,
)
from agentstores.spec.values import (
    Clock,
    check_id,
    check_limit_offset,
    check_timestamp,
    dump_json,
    system_clock,
)

from .. import thread_run_rules as rules
from ._client import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_POOL_TIMEOUT,
    DEFAULT_SOCKET_TIMEOUT,
    RedisClient,
    Script,
    load_record,
    text,
    translate_errors,
)
from ._store import RedisStore, kit_openers

__all__ = ["RedisThreadRunStore", "open_cluster_store", "open_store"]

_MAX_TIME = 2**63 - 1
#: Redis takes ZRANGE bounds as signed 64-bit; a larger requested page means "to the end".
_MAX_RANK = 2**62
_STATUSES = (RunStatus.RUNNING, RunStatus.WAITING, RunStatus.DONE)


def _hex(value: int) -> str:
    return f"{value:016x}"


# --- Lua ------------------------------------------------------------------------------------
#
# The run scripts share KEYS[1..11] (see _run_keys): 1 tr.runs, 2 tr.run_meta,
# 3 tr.runs_by_created, 4..6 tr.runs_by_created:S, 7 tr.thread_runs:T, 8..10
# tr.thread_runs:T:S, 11 tr.thread_latest:T, all for the one thread T the script is about.
# Thread scripts add 12 tr.thread:T, 13 tr.messages:T, 14 tr.threads.

_RUN_LIB = """
local SLOT = {running = 0, waiting = 1, done = 2}

local function parse_meta(meta)
  local status, thread = string.match(meta, '^([a-z]+):(.*)$', 33)
  return string.sub(meta, 1, 16), string.sub(meta, 17, 32), status, thread
end

-- Remove a stored run (of the script's thread) from the records and every index.
local function drop_run(run_id, meta)
  local c, u, status = parse_meta(meta)
  local by_created = c .. run_id
  redis.call('ZREM', KEYS[3], by_created)
  redis.call('ZREM', KEYS[4 + SLOT[status]], by_created)
  redis.call('ZREM', KEYS[7], by_created)
  redis.call('ZREM', KEYS[8 + SLOT[status]], by_created)
  redis.call('ZREM', KEYS[11], u .. c .. run_id)
  redis.call('HDEL', KEYS[1], run_id)
  redis.call('HDEL', KEYS[2], run_id)
end

-- Store a run (of the script's thread) and index it; c and u are hex16 times.
local function put_run(run_id, json, c, u, status, thread)
  redis.call('HSET', KEYS[1], run_id, json)
  redis.call('HSET', KEYS[2], run_id, c .. u .. status .. ':' .. thread)
  local by_created = c .. run_id
  redis.call('ZADD', KEYS[3], 0, by_created)
  redis.call('ZADD', KEYS[4 + SLOT[status]], 0, by_created)
  redis.call('ZADD', KEYS[7], 0, by_created)
  redis.call('ZADD', KEYS[8 + SLOT[status]], 0, by_created)
  redis.call('ZADD', KEYS[11], 0, u .. c .. run_id)
end

-- Replace the list at key with ARGV[first..], in chunks (unpack has a stack limit).
local function replace_list(key, first)
  redis.call('DEL', key)
  for i = first, #ARGV, 1000 do
    redis.call('RPUSH', key, unpack(ARGV, i, math.min(i + 999, #ARGV)))
  end
end
"""

# KEYS: 1 tr.thread:T, 2 tr.threads. ARGV: 1 mode ("upsert" | "update"), 2 the new order
# member, 3.. field/value pairs. Returns 0 if mode is "update" and the thread is missing.
_WRITE_THREAD = Script(
    """
if ARGV[1] == 'update' and redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local old = redis.call('HGET', KEYS[1], 'order')
if old then redis.call('ZREM', KEYS[2], old) end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'order', ARGV[2], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], 0, ARGV[2])
return 1
"""
)

# KEYS: 1 tr.thread:T, 2 tr.messages:T. ARGV: the messages' JSON. 0 if the thread is missing.
_SAVE_MESSAGES = Script(
    _RUN_LIB
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
replace_list(KEYS[2], 1)
return 1
"""
)

# KEYS 1..11. ARGV: run_id, json, hex created, hex updated, status, thread. 0 if the id exists.
_CREATE_RUN = Script(
    _RUN_LIB
    + """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
put_run(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
return 1
"""
)

# KEYS 1..14. ARGV: 1..6 as _CREATE_RUN, 7 the stored statuses that may become the new one
# (",running,waiting,"), 8 now (decimal), 9 the thread's new order member, 10.. messages.
# Returns {'ok'}, {'thread', stored thread} or {'status', stored status}; checks come first,
# so a refused checkpoint writes nothing (TR-20, TR-21).
_CHECKPOINT = Script(
    _RUN_LIB
    + """
local run_id = ARGV[1]
local meta = redis.call('HGET', KEYS[2], run_id)
if meta then
  local _, _, status, thread = parse_meta(meta)
  if thread ~= ARGV[6] then return {'thread', thread} end
  if not string.find(ARGV[7], ',' .. status .. ',', 1, true) then return {'status', status} end
  drop_run(run_id, meta)
end
local now = ARGV[8]
if redis.call('EXISTS', KEYS[12]) == 1 then
  local old = redis.call('HGET', KEYS[12], 'order')
  if old then redis.call('ZREM', KEYS[14], old) end
  if redis.call('HEXISTS', KEYS[12], 'created_at') == 0 then
    redis.call('HSET', KEYS[12], 'created_at', now)
  end
  redis.call('HSET', KEYS[12], 'updated_at', now, 'order', ARGV[9])
else
  redis.call('HSET', KEYS[12], 'created_at', now, 'updated_at', now, 'custom', '{}',
             'order', ARGV[9])
end
redis.call('ZADD', KEYS[14], 0, ARGV[9])
replace_list(KEYS[13], 10)
put_run(run_id, ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
return {'ok'}
"""
)

# KEYS 1..14. Deletes the thread, its messages and every run whose thread is T (TR-4).
_DELETE_THREAD = Script(
    _RUN_LIB
    + """
for _, member in ipairs(redis.call('ZRANGE', KEYS[7], 0, -1)) do
  local run_id = string.sub(member, 17)
  local meta = redis.call('HGET', KEYS[2], run_id)
  if meta then drop_run(run_id, meta) end
end
local old = redis.call('HGET', KEYS[12], 'order')
if old then redis.call('ZREM', KEYS[14], old) end
redis.call('DEL', KEYS[12], KEYS[13])
return 1
"""
)

# KEYS: 1 tr.thread_latest:T, 2 tr.runs. The JSON of T's latest run, or nil.
_LATEST_RUN = Script(
    """
local last = redis.call('ZRANGE', KEYS[1], -1, -1)[1]
if not last then return false end
return redis.call('HGET', KEYS[2], string.sub(last, 33))
"""
)

# KEYS: 1 tr.thread:T, 2 tr.messages:T. nil if T is missing, else its messages' JSON.
_LOAD_MESSAGES = Script(
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
return {redis.call('LRANGE', KEYS[2], 0, -1)}
"""
)

# KEYS: 1 a by-created index, 2 tr.runs. ARGV: offset, limit (already clamped to 1..200).
# Returns {total, offset clamped to total, {json...}} read in one consistent step.
_LIST_RUNS = Script(
    """
local total = redis.call('ZCARD', KEYS[1])
local offset = tonumber(ARGV[1])
if offset > total then offset = total end
local items = {}
for i, member in ipairs(redis.call('ZRANGE', KEYS[1], offset, offset + tonumber(ARGV[2]) - 1)) do
  items[i] = redis.call('HGET', KEYS[2], string.sub(member, 17))
end
return {total, offset, items}
"""
)


class RedisThreadRunStore(RedisStore):
    """A :class:`~agentstores.spec.thread_run.ThreadRunStore` on Redis.

    Args:
        url: a Redis URL (``redis://host:6379/0``); or give ``client`` (a ``Redis`` or
            ``RedisCluster``) or ``connection_pool`` instead (exactly one of the three; a
            caller's client or pool is not closed here).
        cluster: ``url`` names a node of a Redis Cluster.
        prefix: prepended to every key (no ``{`` or ``}``); stores with distinct prefixes
            never see each other's data (G-19).
        clock: the clock checkpoints stamp threads with (G-6).
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
        self._threads = self._keys.key("tr.threads")

    # --- keys ------------------------------------------------------------------------------

    def _thread_key(self, thread_id: str) -> str:
        return self._keys.key("tr.thread", thread_id)

    def _messages_key(self, thread_id: str) -> str:
        return self._keys.key("tr.messages", thread_id)

    def _run_keys(self, thread_id: str) -> list[str]:
        """KEYS[1..11] of the run scripts, for runs of ``thread_id``."""
        key = self._keys.key
        return [
            key("tr.runs"),
            key("tr.run_meta"),
            key("tr.runs_by_created"),
            *(key("tr.runs_by_created", status.value) for status in _STATUSES),
            key("tr.thread_runs", thread_id),
            *(key("tr.thread_runs", thread_id, status.value) for status in _STATUSES),
            key("tr.thread_latest", thread_id),
        ]

    def _thread_script_keys(self, thread_id: str) -> list[str]:
        """KEYS[1..14] of the scripts that touch a thread and its runs."""
        return [
            *self._run_keys(thread_id),
            self._thread_key(thread_id),
            self._messages_key(thread_id),
            self._threads,
        ]

    def _run_index(self, query: RunQuery) -> str:
        """The by-created index that holds exactly the runs ``query`` selects (TR-15)."""
        parts: list[str] = []
        if query.thread_id is not None:
            parts.append(query.thread_id)
        if query.status is not None:
            parts.append(query.status.value)
        kind = "tr.thread_runs" if query.thread_id is not None else "tr.runs_by_created"
        return self._keys.key(kind, *parts)

    @staticmethod
    def _order_member(thread_id: str, effective_time: int) -> str:
        return _hex(_MAX_TIME - effective_time) + thread_id

    @staticmethod
    def _run_args(run: RunRecord) -> list[str]:
        return [
            run.run_id,
            dump_json(rules.run_to_json(run)),
            _hex(run.created_at),
            _hex(run.updated_at),
            run.status.value,
            run.thread_id,
        ]

    # --- threads (TR-1 .. TR-6, TR-10) ------------------------------------------------------

    async def load_thread(self, thread_id: str) -> Thread | None:
        """The thread, or None (TR-1)."""
        check_id(thread_id, what="thread id")
        async with translate_errors("load_thread"):
            fields = await self._handle.client.hgetall(self._thread_key(thread_id))
        if not fields:
            return None
        return Thread(id=thread_id, metadata=self._metadata_from_hash(fields))

    @staticmethod
    def _metadata_from_hash(fields: dict[Any, Any]) -> ThreadMetadata:
        data = {text(name): text(value) for name, value in fields.items()}
        try:
            created = data.get("created_at")
            updated = data.get("updated_at")
            return ThreadMetadata(
                created_at=None if created is None else int(created),
                updated_at=None if updated is None else int(updated),
                title=data.get("title"),
                custom=load_record(data.get("custom", "{}"), what="thread custom"),
            )
        except ValueError as exc:
            raise StorageUnavailable("stored thread metadata is corrupt") from exc

    async def _write_thread(self, mode: str, thread_id: str, metadata: ThreadMetadata) -> bool:
        fields: list[str] = ["custom", dump_json(dict(metadata.custom))]
        if metadata.created_at is not None:
            fields += ["created_at", str(metadata.created_at)]
        if metadata.updated_at is not None:
            fields += ["updated_at", str(metadata.updated_at)]
        if metadata.title is not None:
            fields += ["title", metadata.title]
        order = self._order_member(thread_id, rules.effective_time(metadata))
        async with translate_errors(f"{mode} thread"):
            done = await _WRITE_THREAD(
                self._handle.client,
                [self._thread_key(thread_id), self._threads],
                [mode, order, *fields],
            )
        return bool(done)

    async def save_thread(self, thread: Thread) -> None:
        """Create the thread or replace its metadata exactly; messages and runs stay (TR-2)."""
        rules.check_thread(thread)
        await self._write_thread("upsert", thread.id, thread.metadata)

    async def update_thread_metadata(self, thread_id: str, metadata: ThreadMetadata) -> None:
        """Replace a thread's metadata; NotFound for a missing thread (TR-10)."""
        check_id(thread_id, what="thread id")
        rules.check_metadata(metadata)
        if not await self._write_thread("update", thread_id, metadata):
            raise NotFound(f"thread {thread_id!r} does not exist")

    async def delete_thread(self, thread_id: str) -> None:
        """Delete the thread, its messages and its runs at once; missing is a no-op (TR-4)."""
        check_id(thread_id, what="thread id")
        async with translate_errors("delete_thread"):
            await _DELETE_THREAD(self._handle.client, self._thread_script_keys(thread_id), [])

    async def list_threads(self, offset: int = 0, limit: int = 50) -> list[str]:
        """Thread ids by effective time descending, then id ascending, paged (TR-5, TR-6)."""
        limit, offset = check_limit_offset(limit, offset)
        if limit == 0 or offset >= _MAX_RANK:
            return []
        stop = min(offset + limit - 1, _MAX_RANK)
        async with translate_errors("list_threads"):
            members = await self._handle.client.zrange(self._threads, offset, stop)
        # Without WITHSCORES, ZRANGE replies with the members only.
        return [text(member)[16:] for member in cast(list[bytes | str], members)]

    # --- messages (TR-7 .. TR-9) ------------------------------------------------------------

    async def load_messages(self, thread_id: str) -> list[Message] | None:
        """The thread's messages in order; None for a missing thread (TR-7)."""
        check_id(thread_id, what="thread id")
        keys = [self._thread_key(thread_id), self._messages_key(thread_id)]
        async with translate_errors("load_messages"):
            reply = await _LOAD_MESSAGES(self._handle.client, keys, [])
        if reply is None:
            return None
        return [message_from_json(load_record(item, what="message")) for item in reply[0]]

    async def save_messages(self, thread_id: str, messages: Sequence[Message]) -> None:
        """Replace the thread's messages; NotFound for a missing thread (TR-8)."""
        check_id(thread_id, what="thread id")
        checked = rules.check_messages(messages)
        await self._replace_messages(thread_id, [dump_json(message_to_json(m)) for m in checked])

    async def delete_messages(self, thread_id: str) -> None:
        """Empty the thread's messages; NotFound for a missing thread (TR-9)."""
        check_id(thread_id, what="thread id")
        await self._replace_messages(thread_id, [])

    async def _replace_messages(self, thread_id: str, encoded: list[str]) -> None:
        async with translate_errors("save_messages"):
            done = await _SAVE_MESSAGES(
                self._handle.client,
                [self._thread_key(thread_id), self._messages_key(thread_id)],
                encoded,
            )
        if not done:
            raise NotFound(f"thread {thread_id!r} does not exist")

    # --- runs (TR-11 .. TR-17) --------------------------------------------------------------

    async def create_run(self, record: RunRecord) -> None:
        """Store a new run; AlreadyExists if its id is stored on any thread (TR-12)."""
        rules.check_run(record)
        async with translate_errors("create_run"):
            created = await _CREATE_RUN(
                self._handle.client, self._run_keys(record.thread_id), self._run_args(record)
            )
        if not created:
            raise AlreadyExists(f"run {record.run_id!r} exists")

    @staticmethod
    def _run_from_raw(raw: bytes | str) -> RunRecord:
        return rules.run_from_json(load_record(raw, what="run"))

    async def load_run(self, run_id: str) -> RunRecord | None:
        """The run, or None (TR-13)."""
        check_id(run_id, what="run id")
        async with translate_errors("load_run"):
            raw = await self._handle.client.hget(self._keys.key("tr.runs"), run_id)
        return None if raw is None else self._run_from_raw(raw)

    async def latest_run(self, thread_id: str) -> RunRecord | None:
        """The thread's run with the highest (updated_at, created_at, run_id) (TR-14)."""
        check_id(thread_id, what="thread id")
        keys = [self._keys.key("tr.thread_latest", thread_id), self._keys.key("tr.runs")]
        async with translate_errors("latest_run"):
            raw = await _LATEST_RUN(self._handle.client, keys, [])
        return None if raw is None else self._run_from_raw(raw)

    async def list_runs(self, query: RunQuery) -> RunPage:
        """Selected runs by (created_at, run_id), with total and has_more (TR-15, TR-16)."""
        offset, limit = rules.check_query(query)
        keys = [self._run_index(query), self._keys.key("tr.runs")]
        async with translate_errors("list_runs"):
            total, start, raw_items = await _LIST_RUNS(
                self._handle.client, keys, [str(min(offset, _MAX_RANK)), str(limit)]
            )
        if any(raw is None for raw in raw_items):
            raise StorageUnavailable("a run index names a run that is not stored")
        items = [self._run_from_raw(raw) for raw in raw_items]
        return rules.run_page(items, int(start), int(total))

    # --- checkpoint (TR-18 .. TR-21) --------------------------------------------------------

    async def checkpoint(self, thread_id: str, messages: Sequence[Message], run: RunRecord) -> None:
        """Upsert the thread, replace its messages, upsert the run: one atomic script (TR-19)."""
        thread_id, checked, run = rules.check_checkpoint(thread_id, messages, run)
        now = check_timestamp(self._clock(), what="clock reading")
        allowed = [old.value for old in _STATUSES if allowed_transition(old, run.status)]
        args = [
            *self._run_args(run),
            "," + ",".join(allowed) + ",",
            str(now),
            # TR-18 sets updated_at = now, so now is the thread's effective time (TR-5).
            self._order_member(thread_id, now),
            *(dump_json(message_to_json(m)) for m in checked),
        ]
        async with translate_errors("checkpoint"):
            reply = await _CHECKPOINT(
                self._handle.client, self._thread_script_keys(thread_id), args
            )
        outcome = [text(part) for part in reply]
        if outcome[0] == "thread":
            raise Conflict(
                f"run {run.run_id!r} is stored on thread {outcome[1]!r}",
                expected=thread_id,
                actual=outcome[1],
            )
        if outcome[0] == "status":
            stored = RunStatus(outcome[1])
            raise Conflict(
                f"run {run.run_id!r} may not go from {stored.value} to {run.status.value}",
                expected=run.status,
                actual=stored,
            )


open_store, open_cluster_store = kit_openers(
    lambda context, connection: RedisThreadRunStore(**connection, clock=context.clock)
)
