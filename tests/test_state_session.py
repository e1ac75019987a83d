"""The state-session suite passes on every reference backend and on the in-memory model store."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

from agentstores.conformance.backend import Backend, new_namespace
from agentstores.conformance.clock import ManualClock
from agentstores.conformance.suites.state_session import StateSessionSuite
from agentstores.reference.jsonfile._files import name_for
from agentstores.reference.jsonfile.state_session import JSONStateSessionStore
from agentstores.reference.redis import server
from agentstores.reference.redis.state_session import RedisStateSessionStore
from agentstores.reference.sqlite.state_session import SQLiteStateSessionStore
from agentstores.spec.errors import InvalidArgument

from .conftest import require_redis
from .memory_state_session import BACKEND as MEMORY_BACKEND


class TestReferencesStateSession(StateSessionSuite):
    """The JSON, SQLite and Redis references (``reference_backend`` is parametrised)."""

    @pytest.fixture
    def backend(self, reference_backend: Backend) -> Backend:
        return reference_backend


class TestMemoryStateSession(StateSessionSuite):
    """The model itself behind the store protocol: the suite agrees with its own model."""

    @pytest.fixture
    def backend(self) -> Backend:
        return MEMORY_BACKEND


# --- engine-specific checks of the references (layout, clean-up, configuration) -----------


class _Module:
    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state
        self.loaded: list[dict[str, Any]] = []

    def state_dict(self) -> dict[str, Any]:
        return self.state

    def load_state_dict(self, state_dict: dict[str, Any], /) -> None:
        self.loaded.append(state_dict)


def test_json_file_names_are_not_joined_ids(tmp_path: Path) -> None:
    """ST-11: the JSON store never names a file after its ids; everything stays inside."""

    async def scenario() -> None:
        async with JSONStateSessionStore(tmp_path / "store") as store:
            await store.save_session_state("x_s1", user_id="alice", m=_Module({"v": 1}))
            await store.save_session_state("s1", user_id="alice_x", m=_Module({"v": 2}))
            await store.save_session_state("../../up", user_id="/abs", m=_Module({"v": 3}))
            path = store.session_path("x_s1", "alice")
            assert path.parent == tmp_path / "store" / "sessions"
            assert path != store.session_path("s1", "alice_x")

    asyncio.run(scenario())
    names = {p.name for p in tmp_path.rglob("*")}
    assert not any("alice" in name or "up" in name for name in names), names
    assert {p.parent.name for p in (tmp_path / "store").rglob("*.json")} == {"sessions"}


def test_json_index_is_compacted_and_expired_files_removed(tmp_path: Path) -> None:
    """ST-8, ST-15: churn compacts a user's index; other store objects follow the rewrite;
    files of expired sessions are removed when the index is compacted."""
    clock = ManualClock()

    async def scenario() -> None:
        directory = tmp_path / "store"
        async with (
            JSONStateSessionStore(directory, clock=clock) as one,
            JSONStateSessionStore(directory, clock=clock, ttl_seconds=1) as expiring,
        ):
            await expiring.save_session_state("short-lived", user_id="u", m=_Module({}))
            for round_ in range(60):
                await one.save_session_state(
                    f"s{round_ % 5}", user_id="u", m=_Module({"r": round_})
                )
                await one.delete_session_state(f"s{(round_ + 2) % 5}", user_id="u")
            assert await expiring.list_sessions("u") == await one.list_sessions("u")
            clock.advance(1_000)
            for round_ in range(60):
                await one.save_session_state("s1", user_id="u", m=_Module({}))
                await one.delete_session_state("s1", user_id="u")
                await one.save_session_state("s0", user_id="u", m=_Module({"r": round_}))
            log = directory / "users" / name_for("u", suffix=".jsonl")
            assert len(log.read_bytes().splitlines()) < 80
            assert not expiring.session_path("short-lived", "u").exists()
            assert await expiring.list_sessions("u") == await one.list_sessions("u")
            module = _Module({})
            await expiring.load_session_state("s0", user_id="u", m=module)
            assert module.loaded == [{"r": 59}]

    asyncio.run(scenario())


def test_sqlite_purges_expired_rows(tmp_path: Path) -> None:
    """ST-15: expired sessions do not pile up: the next save deletes their rows."""
    clock = ManualClock()

    async def scenario() -> None:
        path = tmp_path / "db.sqlite3"
        async with SQLiteStateSessionStore(path, ttl_seconds=1, clock=clock) as store:
            for index in range(5):
                await store.save_session_state(f"s{index}", user_id="u", m=_Module({"i": index}))
            clock.advance(1_000)
            await store.save_session_state("fresh", user_id="u", m=_Module({}))
            table = store.database.table("state_modules")

            def count(conn: sqlite3.Connection) -> int:
                return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

            assert await store.database.read(count) == 1
            assert await store.list_sessions("u") == ["fresh"]

    asyncio.run(scenario())


@pytest.mark.parametrize("bad", [0, -5, 2.5, "10", True])
def test_bad_ttl_is_refused_by_every_constructor(tmp_path: Path, bad: Any) -> None:
    """ST-18: every reference refuses a TTL that is not a positive int."""
    with pytest.raises(InvalidArgument):
        JSONStateSessionStore(tmp_path, ttl_seconds=bad)
    with pytest.raises(InvalidArgument):
        SQLiteStateSessionStore(tmp_path / "db", ttl_seconds=bad)
    with pytest.raises(InvalidArgument):
        RedisStateSessionStore("redis://127.0.0.1:1/0", ttl_seconds=bad)


def test_redis_keys_are_injective_and_hash_tagged_per_user() -> None:
    """ST-11: agentscope's colliding pairs get distinct keys; a user's keys share one tag."""
    store = RedisStateSessionStore("redis://127.0.0.1:1/0", prefix="app:")
    first = store.state_key("c", "a:session:b")
    second = store.state_key("b:session:c", "a")
    assert first != second
    tag = first[first.index("{") : first.index("}") + 1]
    assert store.sessions_key("a:session:b").startswith("app:" + tag)
    assert store.state_key("other", "a:session:b").startswith("app:" + tag)


def test_redis_on_a_connection_pool_prunes_expired_members() -> None:
    """ST-15: a store on a caller's pool works, leaves the pool open, and a listing removes
    expired sessions from the user's sorted set."""
    require_redis()

    async def scenario(url: str) -> None:
        pool = redis.asyncio.ConnectionPool.from_url(url)
        try:
            async with RedisStateSessionStore(
                connection_pool=pool, prefix=new_namespace() + ":", ttl_seconds=1
            ) as store:
                await store.save_session_state("s", user_id="u", m=_Module({"v": 1}))
                await store.client.pexpire(store.state_key("s", "u"), 1)
                await asyncio.sleep(0.05)
                assert await store.list_sessions("u") == []
                assert await store.client.zcard(store.sessions_key("u")) == 0
            async with redis.asyncio.Redis(connection_pool=pool) as client:
                assert await client.ping()
        finally:
            await pool.aclose()

    with server.kit_lifespan():
        asyncio.run(scenario(server.current_url()))
