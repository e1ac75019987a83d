"""G-11 on real engines: an engine that goes away or fails part-way is StorageUnavailable,
never a raw driver exception, and the data stored before stays intact (thread/run examples).

The engine failing at each call of each operation of every family is the kit's
``engine_faults`` suite (:mod:`agentstores.conformance.suites.engine_faults`), which the
references claim and run in ``test_<family>.py``; ``test_broken_engine_faults.py`` shows it
failing broken stores. The engine-specific situations (a Redis server stopped or silent, a
locked SQLite file or JSON directory, a full disk) are in ``test_engine_faults_redis.py``,
``_sqlite.py`` and ``_json.py``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from agentstores.conformance.backend import (
    Backend,
    BackendLoadError,
    Capability,
    Family,
    StoreContext,
)
from agentstores.conformance.clock import ManualClock
from agentstores.conformance.engine_fault_check import injection_points
from agentstores.conformance.engine_faults import FaultSwitch
from agentstores.conformance.markers import requirement
from agentstores.reference.jsonfile._faults import inject_engine_faults
from agentstores.reference.jsonfile.thread_run import JSONThreadRunStore
from agentstores.reference.sqlite.thread_run import SQLiteThreadRunStore
from agentstores.spec.errors import StorageUnavailable
from agentstores.spec.messages import Message
from agentstores.spec.thread_run import RunRecord, Thread

from .conftest import require_redis

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


# --- the engine_faults plumbing: the hook a backend must give, and the points the suite fails -


def _no_store(context: StoreContext) -> Any:
    raise AssertionError("never opened")


def test_claiming_engine_faults_needs_a_fault_injection() -> None:
    """A backend claiming engine_faults without a hook is rejected with how to give one."""
    with pytest.raises(BackendLoadError, match=r"claims engine_faults but gives no fault_inj"):
        Backend("x", {Family.THREAD_RUN: _no_store}, frozenset({Capability.ENGINE_FAULTS}))
    with pytest.raises(BackendLoadError, match="must be a callable"):
        Backend("x", {Family.THREAD_RUN: _no_store}, fault_injection=cast(Any, "hook"))
    with pytest.raises(BackendLoadError, match="maps a name"):
        Backend("x", {Family.THREAD_RUN: _no_store}, fault_injection={"": inject_engine_faults})


def test_fault_injection_is_optional_and_named() -> None:
    """Without the claim the hook may be left out; a single hook is the way named "engine"."""
    plain = Backend("x", {Family.THREAD_RUN: _no_store})
    assert plain.fault_injectors == {}
    hooked = Backend(
        "x",
        {Family.THREAD_RUN: _no_store},
        frozenset({Capability.ENGINE_FAULTS}),
        fault_injection=inject_engine_faults,
    )
    assert hooked.fault_injectors == {"engine": inject_engine_faults}
    assert hooked.with_capabilities(set()).fault_injection is inject_engine_faults


def test_fault_switch_counts_and_fails_the_chosen_calls() -> None:
    switch = FaultSwitch()
    assert not switch.hit() and switch.calls == 0  # disarmed: not even counted
    switch.arm(2)
    assert [switch.hit() for _ in range(4)] == [False, True, False, False]
    switch.arm(2, persistent=True)
    assert [switch.hit() for _ in range(4)] == [False, True, True, True]
    switch.watch()
    assert not any(switch.hit() for _ in range(5)) and switch.calls == 5 and not switch.fired


def test_injection_points_cover_every_call_or_spread_from_first_to_last() -> None:
    assert injection_points(5, 40) == [1, 2, 3, 4, 5]
    spread = injection_points(100, 10)
    assert len(spread) == 10 and spread[0] == 1 and spread[-1] == 100
    assert spread == sorted(set(spread))
