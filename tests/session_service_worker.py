"""A worker process for ``tests/test_session_service.py``: appends events to the session
("app", "user", "s1") of a reference session service, each from a fresh read, retrying on
``Conflict``, and prints the versions its appends were acknowledged with (a JSON list).

Usage: ``python -m tests.session_service_worker ENGINE LOCATION PREFIX WORKER COUNT`` where
ENGINE is ``json`` (LOCATION a directory), ``sqlite`` (LOCATION a database file) or ``redis``
(LOCATION a URL).
"""

from __future__ import annotations

import asyncio
import json
import sys
from contextlib import AbstractAsyncContextManager
from typing import Any

from agentstores.reference.jsonfile.session_service import JSONSessionService
from agentstores.reference.redis.session_service import RedisSessionService
from agentstores.reference.sqlite.session_service import SQLiteSessionService
from agentstores.spec.errors import Conflict
from agentstores.spec.session_service import Event, EventActions, GetRequest

KEY = ("app", "user", "s1")


def open_store(engine: str, location: str, prefix: str) -> AbstractAsyncContextManager[Any]:
    """The reference store of ``engine`` at ``location``."""
    if engine == "json":
        return JSONSessionService(location)
    if engine == "sqlite":
        return SQLiteSessionService(location, prefix=prefix)
    if engine == "redis":
        return RedisSessionService(location, prefix=prefix)
    raise SystemExit(f"unknown engine {engine!r}")


async def work(engine: str, location: str, prefix: str, worker: int, count: int) -> list[int]:
    """Append ``count`` events, retrying each on Conflict; return the acknowledged versions."""
    versions: list[int] = []
    async with open_store(engine, location, prefix) as store:
        for i in range(count):
            while True:
                seen = await store.get(GetRequest(*KEY, num_recent_events=0))
                assert seen is not None
                delta = {"count": seen.version + 1}
                event = Event(author="user", id=f"w{worker}-{i}", actions=EventActions(delta))
                try:
                    done = await store.append_event(seen, event)
                except Conflict:
                    continue
                versions.append(done.version)
                break
    return versions


if __name__ == "__main__":
    engine, location, prefix, worker, count = sys.argv[1:]
    print(json.dumps(asyncio.run(work(engine, location, prefix, int(worker), int(count)))))
