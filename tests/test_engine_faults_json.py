"""The JSON directory becomes unusable or stays locked, for every family.

(Write failures part-way, at every file-system call, are the kit's ``engine_faults`` suite.)
We run as root in CI, where a read-only directory does not stop writes, so an unusable
directory is simulated by a file where the directory should be.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from agentstores.conformance.backend import Family, StoreContext, new_namespace
from agentstores.conformance.clock import ManualClock
from agentstores.conformance.engine_fault_scenarios import SCENARIOS
from agentstores.conformance.markers import requirement
from agentstores.spec.errors import StorageUnavailable

from .engine_fault_stores import open_json

FAMILIES = list(SCENARIOS)
#: The lock timeout the stores under test get, in seconds.
LOCK_TIMEOUT = 0.3
#: What a loaded test machine may add to a documented wait.
SLACK = 2.5

#: Holds the lock of a store directory until told (a line on stdin) to let go.
_LOCKER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.readline()
os.close(fd)
"""


@contextmanager
def locked_by_another_process(directory: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holds the lock of the store directory while the block runs."""
    locker = subprocess.Popen(
        [sys.executable, "-c", _LOCKER, str(directory / ".lock")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        yield locker
    finally:
        if locker.stdin is not None:
            locker.stdin.close()
        locker.wait(timeout=10)


def _context(tmp_path: Path) -> StoreContext:
    return StoreContext(tmp_path, new_namespace(), ManualClock())


@requirement("G-11")
@pytest.mark.parametrize("family", FAMILIES, ids=str)
def test_directory_that_is_a_file(tmp_path: Path, family: Family) -> None:
    """G-11: a store whose directory cannot be used (a file is in its place) raises
    StorageUnavailable when opened and on every call, never a bare OSError."""
    scenario = SCENARIOS[family]
    context = _context(tmp_path)
    (context.root / context.namespace).write_text("not a directory")

    async def run() -> None:
        with pytest.raises(StorageUnavailable):
            async with open_json(family, context):
                pass
        store: Any = open_json(family, context)
        try:
            with pytest.raises(StorageUnavailable):
                await scenario.light.run(store, {})
            with pytest.raises(StorageUnavailable):
                await scenario.observe(store)
        finally:
            await store.close()

    asyncio.run(run())


@requirement("G-11", "G-22", "G-24")
@pytest.mark.parametrize("family", FAMILIES, ids=str)
def test_locked_longer_than_lock_timeout(tmp_path: Path, family: Family) -> None:
    """G-11, G-22, G-24: another process holds the directory's lock past ``lock_timeout``:
    each call fails with StorageUnavailable after about that long and does nothing; once the
    lock is gone the same store object works."""
    scenario = SCENARIOS[family]
    operation = scenario.operations[0]
    context = _context(tmp_path)

    async def run() -> None:
        async with open_json(family, context, lock_timeout=LOCK_TIMEOUT) as store:
            handles = await scenario.seed(store)
            before = await scenario.observe(store)
            with locked_by_another_process(store.directory):
                for call in (operation.run(store, handles), scenario.observe(store)):
                    started = time.monotonic()
                    with pytest.raises(StorageUnavailable):
                        await call
                    elapsed = time.monotonic() - started
                    assert LOCK_TIMEOUT * 0.8 <= elapsed < LOCK_TIMEOUT + SLACK, f"{elapsed:.2f}"
            # The abandoned calls must not run once the lock is free.
            await asyncio.sleep(0.1)
            assert await scenario.observe(store) == before
            await operation.run(store, handles)
            after = await scenario.observe(store)
            assert after != before
        async with open_json(family, context) as store:
            assert await scenario.observe(store) == after

    asyncio.run(run())


@requirement("G-24")
@pytest.mark.parametrize("family", FAMILIES, ids=str)
def test_lock_released_within_lock_timeout_is_waited_for(tmp_path: Path, family: Family) -> None:
    """G-24: a call that meets another process's lock on the directory waits for it and then
    succeeds."""
    scenario = SCENARIOS[family]
    operation = scenario.operations[0]
    context = _context(tmp_path)

    async def run() -> None:
        async with open_json(family, context, lock_timeout=10.0) as store:
            handles = await scenario.seed(store)
            before = await scenario.observe(store)
            with locked_by_another_process(store.directory) as locker:
                pending: asyncio.Task[object] = asyncio.create_task(operation.run(store, handles))
                await asyncio.sleep(0.3)
                assert not pending.done(), "the call did not wait for the lock"
                assert locker.stdin is not None
                locker.stdin.write("go\n")
                locker.stdin.flush()
                await asyncio.wait_for(pending, 10)
            assert await scenario.observe(store) != before

    asyncio.run(run())
