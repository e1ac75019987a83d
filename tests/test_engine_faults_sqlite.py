"""The SQLite database is locked by another process, or the disk fills up, for every family.

Checks G-11 with the waits of G-24: a write waits up to ``busy_timeout`` for another
process's lock and then fails with StorageUnavailable; reads go on meanwhile (WAL); the file
is never corrupted (``PRAGMA integrity_check``); and the same store object works again.
"""

from __future__ import annotations

import asyncio
import sqlite3
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
from agentstores.reference.sqlite._db import context_location
from agentstores.spec.errors import StorageUnavailable

from .engine_fault_stores import open_sqlite

FAMILIES = list(SCENARIOS)
#: The busy timeout the stores under test get, in seconds.
BUSY_TIMEOUT = 0.3
#: What a loaded test machine may add to a documented wait.
SLACK = 2.5

#: Holds the write lock of a database file until told (a line on stdin) to let go.
_LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
conn.close()
"""


@contextmanager
def locked_by_another_process(path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holds the write lock of ``path`` while the block runs."""
    locker = subprocess.Popen(
        [sys.executable, "-c", _LOCKER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        yield locker
    finally:
        if locker.stdin is not None:
            locker.stdin.close()  # EOF: the locker rolls back and exits
        locker.wait(timeout=10)


def _context(tmp_path: Path) -> StoreContext:
    return StoreContext(tmp_path, new_namespace(), ManualClock())


def _assert_intact(path: Path) -> None:
    check = sqlite3.connect(path)
    try:
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        check.close()


@requirement("G-11", "G-22", "G-24")
@pytest.mark.parametrize("family", FAMILIES, ids=str)
def test_locked_longer_than_busy_timeout(tmp_path: Path, family: Family) -> None:
    """G-11, G-22, G-24: another process holds the write lock past ``busy_timeout``: a write fails
    with StorageUnavailable after about that long, reads still work, and once the lock is
    gone the same store object writes again; the file stays intact."""
    scenario = SCENARIOS[family]
    operation = scenario.operations[0]
    context = _context(tmp_path)
    path, _ = context_location(context)

    async def run() -> None:
        async with open_sqlite(family, context, busy_timeout=BUSY_TIMEOUT) as store:
            handles = await scenario.seed(store)
            before = await scenario.observe(store)
            with locked_by_another_process(path):
                started = time.monotonic()
                with pytest.raises(StorageUnavailable):
                    await operation.run(store, handles)
                elapsed = time.monotonic() - started
                assert BUSY_TIMEOUT * 0.8 <= elapsed < BUSY_TIMEOUT + SLACK, f"{elapsed:.2f} s"
                assert await scenario.observe(store) == before, "reads must go on (WAL)"
            await operation.run(store, handles)
            assert await scenario.observe(store) != before
        _assert_intact(path)

    asyncio.run(run())


@requirement("G-24")
@pytest.mark.parametrize("family", FAMILIES, ids=str)
def test_lock_released_within_busy_timeout_is_waited_for(tmp_path: Path, family: Family) -> None:
    """G-24: a write that meets another process's lock waits for it (up to ``busy_timeout``)
    and then succeeds: the caller sees a slower call, not an error."""
    scenario = SCENARIOS[family]
    operation = scenario.operations[0]
    context = _context(tmp_path)
    path, _ = context_location(context)

    async def run() -> None:
        async with open_sqlite(family, context, busy_timeout=10.0) as store:
            handles = await scenario.seed(store)
            before = await scenario.observe(store)
            with locked_by_another_process(path) as locker:
                pending: asyncio.Task[object] = asyncio.create_task(operation.run(store, handles))
                await asyncio.sleep(0.3)
                assert not pending.done(), "the write did not wait for the lock"
                assert locker.stdin is not None
                locker.stdin.write("go\n")
                locker.stdin.flush()
                await asyncio.wait_for(pending, 10)
            assert await scenario.observe(store) != before
        _assert_intact(path)

    asyncio.run(run())


@requirement("G-11", "G-24")
@pytest.mark.parametrize("family", FAMILIES, ids=str)
def test_store_first_used_while_locked(tmp_path: Path, family: Family) -> None:
    """G-11, G-24: a store whose first use (connecting, creating its tables) meets another
    process's lock fails that call with StorageUnavailable and connects on a later call."""
    scenario = SCENARIOS[family]
    context = _context(tmp_path)
    path, _ = context_location(context)
    sqlite3.connect(path).close()  # the file exists; its tables do not yet

    async def run() -> None:
        store: Any = open_sqlite(family, context, busy_timeout=BUSY_TIMEOUT)
        try:
            with locked_by_another_process(path), pytest.raises(StorageUnavailable):
                await scenario.light.run(store, {})
            await scenario.light.run(store, {})
            assert await scenario.observe(store)
        finally:
            await store.close()
        _assert_intact(path)

    asyncio.run(run())


@requirement("G-11", "G-17")
@pytest.mark.parametrize("family", FAMILIES, ids=str)
def test_disk_full(tmp_path: Path, family: Family) -> None:
    """G-11, G-17: the database cannot grow (SQLite's own ``SQLITE_FULL``, from a page limit set
    on the store's connection): a large write fails with StorageUnavailable and leaves nothing
    of itself; once there is room the same store object makes it."""
    scenario = SCENARIOS[family]
    context = _context(tmp_path)
    path, _ = context_location(context)

    def limit_to_current_size(conn: sqlite3.Connection) -> None:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")

    def lift_limit(conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA max_page_count = 1073741823")

    async def run() -> None:
        async with open_sqlite(family, context) as store:
            handles = await scenario.seed(store)
            before = await scenario.observe(store)
            # A back door: the reference stores keep their engine in ``_db``.
            await store._db.read(limit_to_current_size)
            with pytest.raises(StorageUnavailable):
                await scenario.bulky.run(store, handles)
            assert await scenario.observe(store) == before
            await store._db.read(lift_limit)
            await scenario.bulky.run(store, handles)
            assert await scenario.observe(store) != before
        _assert_intact(path)

    asyncio.run(run())
