"""G-11 on real engines: an engine that goes away or fails part-way is StorageUnavailable,
never a raw driver exception, and the data stored before stays intact.

The first tests are thread/run examples. ``test_engine_failing_at_every_call_of_an_operation``
covers every family on every reference engine: each operation of
``tests/engine_fault_scenarios.py`` runs once per engine call it makes, with that call failing
(``tests/engine_fault_injectors.py``), and must leave the state before or after the whole
operation (G-17) in a store object that still works. The engine-specific situations (a Redis
server stopped or silent, a locked SQLite file or JSON directory, a full disk) are in
``test_engine_faults_redis.py``, ``_sqlite.py`` and ``_json.py``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agentstores.conformance.backend import Family, StoreContext, new_namespace
from agentstores.conformance.clock import DEFAULT_START_MS, ManualClock
from agentstores.conformance.markers import requirement
from agentstores.reference.jsonfile.thread_run import JSONThreadRunStore
from agentstores.reference.sqlite.thread_run import SQLiteThreadRunStore
from agentstores.spec.errors import StorageUnavailable
from agentstores.spec.messages import Message
from agentstores.spec.thread_run import RunRecord, Thread

from .conftest import require_redis
from .engine_fault_injectors import (
    FaultSwitch,
    json_faults,
    open_json,
    open_redis,
    open_sqlite,
    redis_faults,
    sqlite_faults,
)
from .engine_fault_scenarios import SCENARIOS, Handles, Operation, Scenario, operations

RUN = RunRecord(run_id="r1", thread_id="t1", agent_id="a", created_at=1, updated_at=1)
HELLO = [Message.text("user", "hello")]


@requirement("G-11")
def test_sqlite_locked_longer_than_busy_timeout_is_storage_unavailable(tmp_path: Path) -> None:
    """G-11: another connection holding the write lock past the busy timeout."""
    path = tmp_path / "db.sqlite3"

    async def scenario() -> None:
        async with SQLiteThreadRunStore(path, busy_timeout=0.2, clock=ManualClock()) as store:
            await store.checkpoint("t1", HELLO, RUN)
            blocker = sqlite3.connect(path, isolation_level=None)
            try:
                blocker.execute("BEGIN EXCLUSIVE")
                started = time.monotonic()
                with pytest.raises(StorageUnavailable):
                    await store.save_messages("t1", [])
                assert time.monotonic() - started < 5, "the busy timeout was not honoured"
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()
            assert await store.load_messages("t1") == HELLO
            await store.save_messages("t1", [])  # and it works again once the lock is gone
            assert await store.load_messages("t1") == []
        check = sqlite3.connect(path)
        try:
            assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        finally:
            check.close()

    asyncio.run(scenario())


@requirement("G-11")
def test_json_failing_fsync_is_storage_unavailable_and_keeps_old_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """G-11: a write that fails part-way (fsync raises) leaves the previous data readable."""

    async def scenario() -> None:
        async with JSONThreadRunStore(tmp_path / "store", clock=ManualClock()) as store:
            await store.checkpoint("t1", HELLO, RUN)

            def failing_fsync(fd: int) -> None:
                raise OSError(5, "Input/output error")

            monkeypatch.setattr(os, "fsync", failing_fsync)
            with pytest.raises(StorageUnavailable):
                await store.save_messages("t1", [Message.text("user", "lost")])
            monkeypatch.undo()
        async with JSONThreadRunStore(tmp_path / "store", clock=ManualClock()) as store:
            assert await store.load_messages("t1") == HELLO
            assert await store.load_run("r1") == RUN

    asyncio.run(scenario())


@requirement("G-11")
def test_json_directory_that_is_a_file_is_storage_unavailable(tmp_path: Path) -> None:
    """G-11: an unusable directory is StorageUnavailable, not a bare OSError."""
    target = tmp_path / "not-a-directory"
    target.write_text("x")

    async def scenario() -> None:
        store = JSONThreadRunStore(target, clock=ManualClock())
        try:
            with pytest.raises(StorageUnavailable):
                await store.save_thread(Thread("t1"))
        finally:
            await store.close()

    asyncio.run(scenario())


class RestartableRedis:
    """A private redis-server on a fixed loopback port that a test can stop and start again."""

    def __init__(self) -> None:
        from agentstores.reference.redis import server

        self._server = server
        self._directory = tempfile.mkdtemp(prefix="agentstores-fault-")
        self._binary = shutil.which("redis-server") or "redis-server"
        self.port = server._free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self._process = self._server._start(self._binary, self.port, self._directory)
        assert self._process is not None, "redis-server did not start"

    def stop(self) -> None:
        if self._process is not None:
            self._server._stop(self._process)
            self._process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._directory, ignore_errors=True)


@pytest.fixture
def restartable_redis() -> Iterator[RestartableRedis]:
    require_redis()
    if not shutil.which("redis-server"):
        pytest.skip("needs the redis-server binary to stop and start a server")
    server = RestartableRedis()
    try:
        yield server
    finally:
        server.close()


@requirement("G-11")
def test_redis_stopped_and_restarted(restartable_redis: RestartableRedis) -> None:
    """G-11: a stopped server is StorageUnavailable within the timeout; the same store object
    works again once the server is back, without being reopened."""
    from agentstores.reference.redis.thread_run import RedisThreadRunStore

    async def scenario() -> None:
        async with RedisThreadRunStore(
            restartable_redis.url, prefix="fault:", clock=ManualClock(), socket_timeout=2.0
        ) as store:
            await store.checkpoint("t1", HELLO, RUN)
            restartable_redis.stop()
            started = time.monotonic()
            with pytest.raises(StorageUnavailable):
                await store.load_messages("t1")
            with pytest.raises(StorageUnavailable):
                await store.checkpoint("t1", [], RUN)
            assert time.monotonic() - started < 15, "a dead server must not hang callers"
            restartable_redis.start()  # a fresh, empty server (no persistence)
            await store.checkpoint("t1", HELLO, RUN)
            assert await store.load_messages("t1") == HELLO

    asyncio.run(scenario())


# --- every failure point of every family's operations, on each engine -------------------------

#: How the engine fails: the JSON stores' file-system calls, the SQLite stores' statements,
#: or a Redis request or reply lost with its connection (tests/engine_fault_injectors.py).
FAULT_KINDS = ("json", "sqlite", "redis-request", "redis-reply")
#: An operation failing at more engine calls than this would be a runaway loop.
MAX_POINTS = 300
#: No operation under test may take longer, fault or not (a hang is a failure, not a wait).
OPERATION_DEADLINE = 30.0
#: The operations run this long after the seed (so that their stamps differ from the seed's).
LATER = DEFAULT_START_MS + 1000


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A private disposable redis-server for this module's tests."""
    require_redis()
    from agentstores.reference.redis import server

    with server.disposable_server() as url:
        yield url


@dataclass(frozen=True)
class Seeded:
    """A scenario's seeded storage (a directory or database file; Redis: none) and handles."""

    root: Path
    namespace: str
    handles: Handles


@dataclass
class Rig:
    """One engine with a fault switch installed: opens stores of any family on it.

    The seed is written once per test; each attempt starts from a copy of it (JSON: the
    directory, SQLite: the database file), or, on Redis, which has no files to copy, from a
    fresh seed under a new prefix.
    """

    kind: str
    root: Path
    switch: FaultSwitch
    redis_url: str = ""
    attempts: int = 0

    def _new_root(self) -> Path:
        self.attempts += 1
        return self.root / f"attempt-{self.attempts}"

    def open(self, family: Family, context: StoreContext) -> AbstractAsyncContextManager[Any]:
        if self.kind == "json":
            return open_json(family, context)
        if self.kind == "sqlite":
            return open_sqlite(family, context)
        return open_redis(family, context, self.redis_url, socket_timeout=5.0)

    async def seed(self, scenario: Scenario) -> Seeded:
        root = self._new_root()
        root.mkdir()
        context = StoreContext(root, new_namespace(), ManualClock())
        async with self.open(scenario.family, context) as store:
            handles = await scenario.seed(store)
        return Seeded(root, context.namespace, handles)

    async def fresh(self, scenario: Scenario, seeded: Seeded) -> tuple[StoreContext, Handles]:
        """A context holding the seed (a copy of ``seeded``), its clock at :data:`LATER`."""
        if self.kind in ("json", "sqlite"):
            root = self._new_root()
            shutil.copytree(seeded.root, root)
            return StoreContext(root, seeded.namespace, ManualClock(LATER)), seeded.handles
        again = await self.seed(scenario)
        return StoreContext(again.root, again.namespace, ManualClock(LATER)), again.handles


@pytest.fixture
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    kind: str = request.param
    switch = FaultSwitch()
    if kind == "json":
        installed: AbstractContextManager[None] = json_faults(switch)
        url = ""
    elif kind == "sqlite":
        installed = sqlite_faults(switch)
        url = ""
    else:
        url = request.getfixturevalue("redis_url")
        installed = redis_faults(switch, "request" if kind == "redis-request" else "reply")
    with installed:
        yield Rig(kind, tmp_path, switch, url)


@dataclass(frozen=True)
class Expected:
    before: object
    after: object


async def _expected(rig: Rig, scenario: Scenario, operation: Operation, seeded: Seeded) -> Expected:
    context, handles = await rig.fresh(scenario, seeded)
    async with rig.open(scenario.family, context) as store:
        before = await scenario.observe(store)
        await operation.run(store, handles)
        after = await scenario.observe(store)
    assert before != after, f"{operation.name} changes nothing: a useless fault scenario"
    return Expected(before, after)


async def _attempt(
    rig: Rig,
    scenario: Scenario,
    operation: Operation,
    seeded: Seeded,
    expected: Expected,
    at: int,
    *,
    persistent: bool,
) -> bool:
    """Run ``operation`` with the engine failing at call ``at``; check G-11 and G-17.

    Returns whether the fault fired (False: the operation makes fewer engine calls).
    """
    where = f"{operation.name}, engine failing at call {at}{' and after' if persistent else ''}"
    context, handles = await rig.fresh(scenario, seeded)
    async with rig.open(scenario.family, context) as store:
        rig.switch.arm(at, persistent=persistent)
        try:
            await asyncio.wait_for(operation.run(store, handles), OPERATION_DEADLINE)
            failed = False
        except StorageUnavailable:
            failed = True
        finally:
            rig.switch.disarm()
        fired = rig.switch.fired
        assert fired or not failed, f"{where}: failed though the engine did not"
        # The engine is back: the same store object must work again, without reopening.
        state = await scenario.observe(store)
        if failed:
            assert state in (expected.before, expected.after), f"{where}: half applied"
        else:
            assert state == expected.after, f"{where}: succeeded, but the state is wrong"
        if state == expected.before:
            await operation.run(store, handles)
            state = await scenario.observe(store)
            assert state == expected.after, f"{where}: the retry on the same store went wrong"
    async with rig.open(scenario.family, context) as store:
        assert await scenario.observe(store) == state, f"{where}: reopening changed the state"
    return fired


def _fault_cases() -> list[tuple[Family, str, bool]]:
    """Every operation with one failing call; the main compound operation of each family
    also with the engine staying down from that call on (a disk or server that is gone)."""
    cases = [(family, name, False) for family, name in operations()]
    cases += [(family, s.operations[0].name, True) for family, s in SCENARIOS.items()]
    return cases


@requirement("G-11", "G-17")
@pytest.mark.parametrize(
    ("family", "operation", "persistent"),
    _fault_cases(),
    ids=lambda v: ("from-then-on" if v else "once") if isinstance(v, bool) else str(v),
)
@pytest.mark.parametrize("rig", FAULT_KINDS, indirect=True)
def test_engine_failing_at_every_call_of_an_operation(
    rig: Rig, family: Family, operation: str, persistent: bool
) -> None:
    """G-11, G-17: for each engine call the operation makes, fail that call (``once``) or that
    and every later one (``from-then-on``): the caller gets StorageUnavailable (or success, if
    the store could do without the call), the state is the one before or after the whole
    operation, the same store object works again, and a reopened store agrees."""
    scenario = SCENARIOS[family]
    chosen = next(op for op in scenario.operations if op.name == operation)

    async def scenario_run() -> int:
        seeded = await rig.seed(scenario)
        expected = await _expected(rig, scenario, chosen, seeded)
        for at in range(1, MAX_POINTS + 1):
            fired = await _attempt(
                rig, scenario, chosen, seeded, expected, at, persistent=persistent
            )
            if not fired:
                return at - 1
        raise AssertionError(f"{operation} still makes engine calls after {MAX_POINTS}")

    points = asyncio.run(scenario_run())
    assert points >= 1, "the operation made no engine call: the fault was never injected"


class _SplitCheckpoint:
    """A deliberately broken thread/run store: its checkpoint writes the messages first and
    then checkpoints, two transactions where there must be one (violates G-17)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def checkpoint(self, thread_id: str, messages: Any, run: Any) -> None:
        if await self._inner.load_thread(thread_id) is not None:
            await self._inner.save_messages(thread_id, messages)
        await self._inner.checkpoint(thread_id, messages, run)


class _BrokenRig(Rig):
    @asynccontextmanager
    async def _broken(self, family: Family, context: StoreContext) -> AsyncIterator[Any]:
        async with super().open(family, context) as store:
            yield _SplitCheckpoint(store)

    def open(self, family: Family, context: StoreContext) -> AbstractAsyncContextManager[Any]:
        return self._broken(family, context)


@requirement("G-17")
def test_the_fault_driver_catches_a_checkpoint_split_in_two(tmp_path: Path) -> None:
    """G-17: the every-call fault test fails a store whose checkpoint is two transactions
    (the kit's own check that the test above can fail)."""
    switch = FaultSwitch()
    rig = _BrokenRig("sqlite", tmp_path, switch)
    scenario = SCENARIOS[Family.THREAD_RUN]
    checkpoint = scenario.operations[0]

    async def scenario_run() -> None:
        seeded = await rig.seed(scenario)
        expected = await _expected(rig, scenario, checkpoint, seeded)
        for at in range(1, MAX_POINTS + 1):
            if not await _attempt(
                rig, scenario, checkpoint, seeded, expected, at, persistent=False
            ):
                return

    with sqlite_faults(switch), pytest.raises(AssertionError, match="half applied"):
        asyncio.run(scenario_run())
