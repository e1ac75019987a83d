"""The raw engine operations the reference backends are measured against (``--baselines``).

For each engine, the cheapest operation that could persist one appended message, issued from
asyncio the way the reference issues its own:

* ``redis``: one ``RPUSH`` round trip with ``redis.asyncio`` on the reference's server.
* ``sqlite``: one ``BEGIN IMMEDIATE; INSERT; COMMIT`` on a connection with the reference's
  pragmas (WAL, ``synchronous=FULL``, foreign keys, busy timeout), issued through
  :class:`agentstores.reference.sqlite._db.Database` itself (its worker thread and queue).
* ``json``: one append of a JSON line to a file, with ``fsync`` (the JSON reference's default
  policy: every acknowledged write is fsynced), run in a worker thread.

The payload is the JSON encoding of a benchmark message, so every store writes about the same
bytes. A reference's append within 2x of this is the bar of issue 8.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from agentstores.spec.messages import message_to_json
from agentstores.spec.values import dump_json

from .bench_stats import Call
from .bench_workloads import BASELINE_FAMILY, RawAppend, bench_message

__all__ = ["BASELINE_FAMILY", "ENGINES", "raw_append"]
#: Warm-up operations before timing (connections, files, caches).
_WARMUP = 10


def _payload() -> str:
    return dump_json(message_to_json(bench_message(12_345)))


async def _warm(append: Call) -> None:
    for _ in range(_WARMUP):
        await append()


@asynccontextmanager
async def _sqlite(root: Path, appends: int) -> AsyncIterator[RawAppend]:
    # The reference's own engine wrapper: its pragmas, its worker thread and its dispatch, so
    # the baseline differs from a store's append only in what the store does on top.
    from agentstores.reference.sqlite._db import Database

    db = Database(
        root / "baseline.sqlite3",
        prefix="raw_",
        family="baseline",
        migrations=[
            "CREATE TABLE raw_raw (id INTEGER PRIMARY KEY, session TEXT NOT NULL, "
            "body TEXT NOT NULL)"
        ],
    )
    payload = _payload()
    insert_sql = f"INSERT INTO {db.table('raw')} (session, body) VALUES (?, ?)"

    def insert(conn: sqlite3.Connection) -> None:
        conn.execute(insert_sql, ("s", payload))

    async def append() -> None:
        await db.write(insert)

    def restart_log(conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()

    try:
        await db.open()
        # A store that has been written to for a while appends into a write-ahead log that
        # was checkpointed and restarted, overwriting frames of a file that no longer grows,
        # which makes each commit's fsync cheaper on most file systems. Give the baseline
        # that same steady state for as many commits as will be timed.
        for _ in range(appends + _WARMUP):
            await append()
        await db.query(restart_log)
        await _warm(append)
        yield RawAppend(append, "sqlite INSERT+COMMIT")
    finally:
        await db.close()


@asynccontextmanager
async def _json(root: Path, appends: int) -> AsyncIterator[RawAppend]:
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-json")
    loop = asyncio.get_running_loop()
    path = root / "baseline.jsonl"
    line = _payload().encode() + b"\n"

    def write() -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o666)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    async def append() -> None:
        await loop.run_in_executor(executor, write)

    try:
        await _warm(append)
        yield RawAppend(append, "json append+fsync")
    finally:
        executor.shutdown(wait=True)


@asynccontextmanager
async def _redis(root: Path, appends: int) -> AsyncIterator[RawAppend]:
    import redis.asyncio as aioredis  # the redis extra; only the Redis baseline needs it

    from agentstores.reference.redis.server import current_url

    from .backend import new_namespace

    client = aioredis.Redis.from_url(current_url())
    key = f"{new_namespace()}:bench:baseline"
    payload = _payload()

    async def append() -> None:
        await client.rpush(key, payload)

    try:
        await _warm(append)
        yield RawAppend(append, "redis RPUSH")
    finally:
        await client.delete(key)  # the one key this baseline created
        await client.aclose()


#: The engines that have a baseline, by reference backend name.
ENGINES: dict[str, Callable[[Path, int], AbstractAsyncContextManager[RawAppend]]] = {
    "json": _json,
    "sqlite": _sqlite,
    "redis": _redis,
}


def raw_append(engine: str, root: Path, *, appends: int) -> AbstractAsyncContextManager[RawAppend]:
    """The raw append of ``engine`` (a key of :data:`ENGINES`), set up under ``root``.

    ``appends`` is how many appends will be timed (the SQLite baseline prepares its log for
    them).
    Use in ``async with``; the operation is warmed up on entry. The Redis baseline needs the
    reference Redis backend's lifespan entered (its server).
    """
    return ENGINES[engine](root, appends)
