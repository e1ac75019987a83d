"""The Redis server goes away, for every family: stopped and restarted, connections killed
mid-operation, a server that stops answering, a network that swallows everything.

Each test runs real ``redis-server`` processes of its own (never the one on port 6379) and
checks G-11 with the timeouts of G-22: every failed call is StorageUnavailable within the
documented time, no compound operation is left half applied, and the same store object works
again once the server is back, without being reopened.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from agentstores.conformance.backend import Family, StoreContext, new_namespace
from agentstores.conformance.clock import ManualClock
from agentstores.conformance.engine_fault_scenarios import SCENARIOS, Handles, Scenario
from agentstores.conformance.markers import requirement
from agentstores.spec.errors import StorageUnavailable

from .conftest import require_redis
from .engine_fault_servers import DurableRedis, Proxy
from .engine_fault_stores import open_redis

#: The timeouts the stores under test get, in seconds (G-22).
CONNECT_TIMEOUT = 0.5
SOCKET_TIMEOUT = 0.5
#: What a loaded test machine may add to a documented timeout.
SLACK = 2.5
FAMILIES = list(SCENARIOS)


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A private disposable redis-server for this module (killing its clients is fine)."""
    require_redis()
    from agentstores.reference.redis import server

    with server.disposable_server() as url:
        yield url


@pytest.fixture
def durable_redis() -> Iterator[DurableRedis]:
    """A private redis-server with an fsynced append-only file, for stop-and-start tests."""
    require_redis()
    try:
        server = DurableRedis()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.close()


@asynccontextmanager
async def _store(family: Family, url: str, namespace: str | None = None) -> AsyncIterator[Any]:
    # A Redis store keeps nothing in a directory: the context's root is never used.
    context = StoreContext(Path("unused"), namespace or new_namespace(), ManualClock())
    async with open_redis(
        family,
        context,
        url,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=SOCKET_TIMEOUT,
    ) as store:
        yield store


async def _fails_in_time(call: Any, bound: float, what: str) -> None:
    started = time.monotonic()
    with pytest.raises(StorageUnavailable):
        await asyncio.wait_for(call, bound + 30)  # a hang fails here, not in the CI's timeout
    elapsed = time.monotonic() - started
    assert elapsed < bound + SLACK, f"{what} took {elapsed:.1f} s, more than its {bound} s"


async def _after(scenario: Scenario, url: str) -> object:
    """The state the first operation of ``scenario`` leads to (on a fault-free prefix)."""
    async with _store(scenario.family, url) as store:
        handles = await scenario.seed(store)
        await scenario.operations[0].run(store, handles)
        return await scenario.observe(store)


@requirement("G-11", "G-22", "G-23")
@pytest.mark.parametrize("family", FAMILIES, ids=str)
def test_server_stopped_and_restarted(durable_redis: DurableRedis, family: Family) -> None:
    """G-11, G-22, G-23: while the server is down every call is StorageUnavailable within
    the connect timeout; once it is back, the same store object reads what was acknowledged
    before and writes again."""
    scenario = SCENARIOS[family]

    async def run() -> None:
        async with _store(family, durable_redis.url) as store:
            handles = await scenario.seed(store)
            before = await scenario.observe(store)
            durable_redis.stop()
            bound = CONNECT_TIMEOUT + SOCKET_TIMEOUT
            await _fails_in_time(scenario.light.run(store, handles), bound, "a write")
            await _fails_in_time(scenario.observe(store), bound, "a read")
            durable_redis.start()
            assert await scenario.observe(store) == before
            await scenario.light.run(store, handles)
            assert await scenario.observe(store) != before

    asyncio.run(run())


async def _pause_writes(admin: Any, ms: int) -> None:
    await admin.execute_command("CLIENT", "PAUSE", ms, "WRITE")


@requirement("G-11", "G-17", "G-23")
@pytest.mark.parametrize("family", FAMILIES, ids=str)
def test_connection_killed_mid_operation(redis_url: str, family: Family) -> None:
    """G-11, G-17, G-23: the server kills the store's connections while a compound write waits
    in them (held by CLIENT PAUSE WRITE): StorageUnavailable, the state is the one before or
    after the whole operation, and the same store object completes the operation afterwards."""
    import redis.asyncio as aioredis

    scenario = SCENARIOS[family]
    operation = scenario.operations[0]

    async def run() -> None:
        after = await _after(scenario, redis_url)
        admin: Any = aioredis.Redis.from_url(redis_url)
        try:
            async with _store(family, redis_url) as store:
                handles = await scenario.seed(store)
                before = await scenario.observe(store)
                await _pause_writes(admin, 10_000)
                try:
                    pending: asyncio.Task[object] = asyncio.create_task(
                        operation.run(store, handles)
                    )
                    await asyncio.sleep(0.2)  # the write is now queued behind the pause
                    assert not pending.done(), "the write was not held by CLIENT PAUSE"
                    await admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
                    await _fails_in_time(pending, 0, "the killed write")
                finally:
                    await admin.execute_command("CLIENT", "UNPAUSE")
                state = await scenario.observe(store)
                assert state in (before, after), "half applied"
                if state == before:
                    await operation.run(store, handles)
                assert await scenario.observe(store) == after
        finally:
            await admin.aclose()

    asyncio.run(run())


@requirement("G-11", "G-22", "G-23")
@pytest.mark.parametrize("family", FAMILIES, ids=str)
def test_server_busy_longer_than_socket_timeout(redis_url: str, family: Family) -> None:
    """G-11, G-22, G-23: a server that holds a write longer than ``socket_timeout``: the call
    is StorageUnavailable within the timeout, the operation is applied whole or not at all,
    and later calls on the same object get their own replies (never the late one)."""
    import redis.asyncio as aioredis

    scenario = SCENARIOS[family]
    operation = scenario.operations[0]

    async def run() -> None:
        after = await _after(scenario, redis_url)
        admin: Any = aioredis.Redis.from_url(redis_url)
        try:
            async with _store(family, redis_url) as store:
                handles = await scenario.seed(store)
                before = await scenario.observe(store)
                await _pause_writes(admin, 3_000)
                try:
                    await _fails_in_time(operation.run(store, handles), SOCKET_TIMEOUT, "a write")
                finally:
                    await admin.execute_command("CLIENT", "UNPAUSE")
                await asyncio.sleep(0.2)  # time for a late execution, if there were one
                state = await scenario.observe(store)
                assert state in (before, after), "half applied"
                assert await scenario.observe(store) == state
                if state == before:
                    await operation.run(store, handles)
                assert await scenario.observe(store) == after
        finally:
            await admin.aclose()

    asyncio.run(run())


@requirement("G-11", "G-22", "G-23")
@pytest.mark.parametrize("family", FAMILIES, ids=str)
def test_silent_network_is_storage_unavailable_within_socket_timeout(
    redis_url: str, family: Family
) -> None:
    """G-11, G-22, G-23: a network that swallows everything without closing anything (a black
    hole between store and server): each call fails within ``socket_timeout``; when the
    network is back, the same store object works and nothing was written."""
    scenario = SCENARIOS[family]
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])

    async def run() -> None:
        proxy = Proxy(port)
        await proxy.start()
        try:
            async with _store(family, proxy.url) as store:
                handles: Handles = await scenario.seed(store)
                before = await scenario.observe(store)
                proxy.black_hole = True
                await _fails_in_time(scenario.light.run(store, handles), SOCKET_TIMEOUT, "write")
                await _fails_in_time(scenario.observe(store), SOCKET_TIMEOUT, "a read")
                proxy.black_hole = False
                assert await scenario.observe(store) == before
                await scenario.light.run(store, handles)
                assert await scenario.observe(store) != before
        finally:
            await proxy.close()

    asyncio.run(run())


@requirement("G-23")
@pytest.mark.parametrize("family", FAMILIES, ids=str)
def test_connection_closed_while_idle_is_invisible(redis_url: str, family: Family) -> None:
    """G-23: connections closed while no call used them (a proxy restart, the server's idle
    timeout, CLIENT KILL) are replaced before use: the next call succeeds."""
    import redis.asyncio as aioredis

    scenario = SCENARIOS[family]
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])

    async def run() -> None:
        proxy = Proxy(port)
        await proxy.start()
        admin: Any = aioredis.Redis.from_url(proxy.url)
        try:
            async with _store(family, proxy.url) as store:
                handles = await scenario.seed(store)
                before = await scenario.observe(store)
                proxy.cut()
                await asyncio.sleep(0.05)  # let the store's sockets see the close
                assert await scenario.observe(store) == before
                await admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
                await asyncio.sleep(0.05)
                await scenario.light.run(store, handles)
                assert await scenario.observe(store) != before
        finally:
            await admin.aclose()
            await proxy.close()

    asyncio.run(run())


@requirement("G-23")
@pytest.mark.parametrize("family", FAMILIES, ids=str)
def test_connection_reset_while_idle_fails_one_call_at_most(redis_url: str, family: Family) -> None:
    """G-23: a connection reset while idle (no orderly close the client could notice) may
    fail the one call that uses it, with StorageUnavailable; the next call reconnects."""
    scenario = SCENARIOS[family]
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])

    async def run() -> None:
        proxy = Proxy(port)
        await proxy.start()
        try:
            async with _store(family, proxy.url) as store:
                await scenario.seed(store)
                before = await scenario.observe(store)
                proxy.cut(reset=True)
                await asyncio.sleep(0.05)
                with contextlib.suppress(StorageUnavailable):
                    await scenario.observe(store)  # may be the call that finds it broken
                assert await scenario.observe(store) == before
        finally:
            await proxy.close()

    asyncio.run(run())
