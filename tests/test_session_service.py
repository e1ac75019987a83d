"""The reference backends pass the session-service suite, keep their version check across
processes, and append and read the newest events at a cost independent of the session's
length."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from agentstores.conformance.backend import Backend
from agentstores.conformance.suites.session_service import SessionServiceSuite
from agentstores.reference.jsonfile import session_service as json_service
from agentstores.reference.redis import server
from agentstores.reference.sqlite.session_service import SQLiteSessionService
from agentstores.spec.session_service import (
    CreateRequest,
    Event,
    GetRequest,
    Session,
    SessionService,
)

from .conftest import require_redis
from .session_service_worker import KEY, open_store

ROOT = Path(__file__).resolve().parent.parent


class TestReferencesSessionService(SessionServiceSuite):
    """Every session-service test against ``json``, ``sqlite`` and ``redis``."""

    @pytest.fixture
    def backend(self, reference_backend: Backend) -> Backend:
        return reference_backend


# --- across processes (SV-15, SV-28) ---------------------------------------------------------


@pytest.fixture(params=["json", "sqlite", "redis"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """An engine and where its store lives: a directory, a database file or a server URL."""
    engine: str = request.param
    if engine == "json":
        yield engine, str(tmp_path / "store")
    elif engine == "sqlite":
        yield engine, str(tmp_path / "store.sqlite3")
    else:
        require_redis()
        with server.kit_lifespan():
            yield engine, server.current_url()


def test_version_check_holds_across_processes(location: tuple[str, str]) -> None:
    """SV-15, SV-28: two processes racing appends on one session, retrying on Conflict, get
    every version acknowledged exactly once and lose no event."""
    engine, where = location
    prefix = "xproc_"
    workers, count = 2, 12

    async def create() -> None:
        async with open_store(engine, where, prefix) as store:
            await store.create(CreateRequest(KEY[0], KEY[1], session_id=KEY[2]))

    asyncio.run(create())
    command = [sys.executable, "-m", "tests.session_service_worker", engine, where, prefix]
    processes = [
        subprocess.Popen([*command, str(w), str(count)], cwd=ROOT, stdout=subprocess.PIPE)
        for w in range(workers)
    ]
    versions: list[int] = []
    for process in processes:
        out, _ = process.communicate(timeout=120)
        assert process.returncode == 0
        versions += json.loads(out)
    total = workers * count
    assert sorted(versions) == list(range(1, total + 1)), "a version was acknowledged twice"

    async def final() -> Session | None:
        async with open_store(engine, where, prefix) as store:
            session: Session | None = await store.get(GetRequest(*KEY))
            return session

    session = asyncio.run(final())
    assert session is not None and session.version == total
    assert session.state == {"count": total}
    expected = {f"w{w}-{i}" for w in range(workers) for i in range(count)}
    assert sorted(str(e.id) for e in session.events) == sorted(expected)


# --- cost independent of length ------------------------------------------------------------------


async def _grow(store: SessionService, events: int) -> Session:
    session = await store.create(CreateRequest("app", "user", session_id="long"))
    for i in range(events):
        session = await store.append_event(replace(session, events=()), Event("user", id=str(i)))
    return session


def test_json_append_and_tail_do_not_read_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JSON: appending never reads the events log, and the newest 20 of 300 in-order events
    are found in 21 lines read backwards."""
    lines_read = 0
    backwards = json_service._lines_backwards

    def counting(file: Any) -> Iterator[bytes]:
        nonlocal lines_read
        for line in backwards(file):
            lines_read += 1
            yield line

    def whole_log(*args: object) -> None:
        raise AssertionError("the whole events log was read")

    async def scenario() -> None:
        async with json_service.JSONSessionService(tmp_path, fsync=False) as store:
            session = await _grow(store, 300)
            monkeypatch.setattr(store, "_all_entries", whole_log)
            monkeypatch.setattr(json_service, "_lines_backwards", counting)
            await store.append_event(replace(session, events=()), Event("user", id="last"))
            recent = await store.get(GetRequest("app", "user", "long", num_recent_events=20))
            assert recent is not None
            assert [e.id for e in recent.events] == [*map(str, range(281, 300)), "last"]

    asyncio.run(scenario())
    assert lines_read <= 21


def test_sqlite_append_and_tail_cost_does_not_grow(tmp_path: Path) -> None:
    """SQLite: the virtual-machine steps of an append and of reading the newest 20 events are
    about the same with 50 and with 2000 events in the session."""

    async def steps(events: int) -> tuple[int, int]:
        async with SQLiteSessionService(
            tmp_path / f"{events}.sqlite3", synchronous="NORMAL"
        ) as store:
            session = await _grow(store, events)
            counter = [0]

            def count() -> int:
                counter[0] += 1
                return 0

            def install(conn: sqlite3.Connection) -> None:
                conn.set_progress_handler(count, 1)

            await store.database.read(install)
            counter[0] = 0
            await store.append_event(replace(session, events=()), Event("user", id="last"))
            append = counter[0]
            counter[0] = 0
            await store.get(GetRequest("app", "user", "long", num_recent_events=20))
            return append, counter[0]

    small = asyncio.run(steps(50))
    large = asyncio.run(steps(2000))
    for what, few, many in zip(("append", "newest 20"), small, large, strict=True):
        assert many < few * 1.5 + 200, f"{what}: {few} steps at 50 events, {many} at 2000"
