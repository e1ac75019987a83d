"""The Redis references on a real Redis Cluster (issue 9).

* Every family's suite runs on the ``redis-cluster`` backend (a local cluster of three
  primaries, started once by the backend's lifespan).
* The plumbing: stores take a ``RedisCluster`` client or a node's URL, and the keys of one
  entity share a slot.
* Broken stores whose keys of one session or thread spread over several slots fail the cluster
  run (and pass on one server: only a cluster catches them).
* G-25 under fire: a workload of compound operations runs while a planned failover, a crashed
  primary or a slot migration happens; failures are StorageUnavailable, nothing is ever seen
  half-applied, and acknowledged writes are lost only where G-25 allows (a crash).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pytest
from redis.asyncio.cluster import ClusterNode as ClientNode
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from agentstores.conformance.backend import Backend
from agentstores.conformance.markers import requirement
from agentstores.conformance.runner import run_suites
from agentstores.conformance.suites.memory_storage import MemoryStorageSuite
from agentstores.conformance.suites.session_service import SessionServiceSuite
from agentstores.conformance.suites.session_store import SessionStoreSuite
from agentstores.conformance.suites.state_session import StateSessionSuite
from agentstores.conformance.suites.thread_run import ThreadRunSuite
from agentstores.reference.redis import CLUSTER_BACKEND, cluster
from agentstores.reference.redis._client import KeySpace
from agentstores.reference.redis.cluster import LocalCluster, local_cluster
from agentstores.reference.redis.memory_storage import RedisMemoryStorage
from agentstores.reference.redis.session_service import RedisSessionService
from agentstores.reference.redis.session_store import RedisSessionStore
from agentstores.reference.redis.state_session import RedisStateSessionStore
from agentstores.reference.redis.thread_run import RedisThreadRunStore
from agentstores.spec.errors import Conflict, InvalidArgument, StorageUnavailable
from agentstores.spec.memory_storage import UserMemory
from agentstores.spec.messages import Message, text_of
from agentstores.spec.session_service import (
    CreateRequest,
    Event,
    EventActions,
    GetRequest,
    Session,
)
from agentstores.spec.thread_run import RunRecord

from .broken.cluster import BROKEN, on_one_server
from .conftest import in_ci


def require_cluster() -> None:
    """Skip (locally) or fail (under CI) when no Redis Cluster can be had."""
    if os.environ.get(cluster.CLUSTER_URL_VARIABLE):
        return
    if shutil.which("redis-server") and shutil.which("redis-cli"):
        return
    message = (
        "no Redis Cluster: install redis-server (scripts/install-redis; it brings redis-cli) "
        f"or set {cluster.CLUSTER_URL_VARIABLE} to a node of a cluster"
    )
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def require_local_cluster() -> None:
    """The failover tests kill and move nodes: they need a cluster of their own."""
    if not (shutil.which("redis-server") and shutil.which("redis-cli")):
        if in_ci():
            pytest.fail("the cluster failover tests need redis-server and redis-cli")
        pytest.skip("the cluster failover tests need redis-server and redis-cli")


# --- the whole kit on the cluster backend ----------------------------------------------------


class _OnCluster:
    @pytest.fixture
    def backend(self) -> Backend:
        require_cluster()
        return CLUSTER_BACKEND


class TestClusterThreadRun(_OnCluster, ThreadRunSuite):
    """The thread/run suite on the ``redis-cluster`` backend."""


class TestClusterSessionStore(_OnCluster, SessionStoreSuite):
    """The session-store suite on the ``redis-cluster`` backend."""


class TestClusterSessionService(_OnCluster, SessionServiceSuite):
    """The session-service suite on the ``redis-cluster`` backend."""


class TestClusterMemoryStorage(_OnCluster, MemoryStorageSuite):
    """The memory-storage suite on the ``redis-cluster`` backend."""


class TestClusterStateSession(_OnCluster, StateSessionSuite):
    """The state-session suite on the ``redis-cluster`` backend."""


# --- plumbing ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster_url() -> Iterator[str]:
    """A node of the kit's cluster (the same one the suites above use)."""
    require_cluster()
    with cluster.kit_lifespan():
        yield cluster.current_url()


def _client_for(url: str) -> RedisCluster:
    host, port = url.removeprefix("redis://").split("/")[0].rsplit(":", 1)
    return RedisCluster(startup_nodes=[ClientNode(host, int(port))])


def test_stores_take_a_cluster_client_and_leave_it_open(cluster_url: str) -> None:
    """Each family's store runs a compound operation on a caller's ``RedisCluster``, and
    closing the store leaves the caller's client usable."""

    async def scenario() -> None:
        client = _client_for(cluster_url)
        try:
            prefix = "plumbing:"
            async with RedisThreadRunStore(client=client, prefix=prefix) as threads:
                run = RunRecord(run_id="r", thread_id="t", agent_id="a", created_at=1, updated_at=1)
                await threads.checkpoint("t", [Message.text("user", "hi")], run)
                assert await threads.load_run("r") == run
            async with RedisSessionStore(client=client, prefix=prefix) as sessions:
                made = await sessions.create_session("/w", "n")
                await sessions.add_message(made.id, Message.text("user", "hi"))
                copied = await sessions.copy_session(made.id, "copy")
                assert copied.message_count == 1
                assert {s.id for s in await sessions.list_sessions()} == {made.id, copied.id}
            async with RedisSessionService(client=client, prefix=prefix) as service:
                session = await service.create(CreateRequest("app", "u", state={"app:x": 1}))
                await service.append_event(session, Event(author="user"))
            async with RedisMemoryStorage(client=client, prefix=prefix) as memories:
                await memories.save_user_memory(UserMemory("m1", "u", "likes tea"))
                await memories.delete_user_memory("m1")
                await memories.save_message("s", "u", Message.text("user", "hi"))
            async with RedisStateSessionStore(client=client, prefix=prefix) as states:
                await states.save_session_state("s", "u")
                assert await states.list_sessions("u") == ["s"]
            assert await client.ping()
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_a_cluster_url_needs_the_cluster_flag_the_other_way_round() -> None:
    """``cluster=True`` goes with a URL; a client or pool says what it is itself."""
    with pytest.raises(InvalidArgument):
        RedisThreadRunStore(client=_client_for("redis://127.0.0.1:1"), cluster=True)


def test_keys_of_one_entity_share_a_slot_and_entities_spread() -> None:
    """The hash tags that keep each compound operation in one slot (module docstrings)."""

    def slot(key: str) -> int:
        return int(key_slot(key.encode()))

    # The stores connect on their first call: these make no call, and are closed below.
    store = RedisSessionStore("redis://127.0.0.1:1", cluster=True, prefix="p:")
    hash_key, registry, messages, times = store.session_keys("20250101_1")
    assert slot(hash_key) == slot(messages) == slot(times)
    assert slot(registry) == slot(KeySpace("p:").key("ss.ids"))
    spread = {slot(store.session_keys(f"20250101_{n}")[0]) for n in range(1, 50)}
    assert len(spread) > 30, "sessions should spread over the slots"
    states = RedisStateSessionStore("redis://127.0.0.1:1", cluster=True, prefix="p:")
    assert slot(states.state_key("s1", "u")) == slot(states.sessions_key("u"))
    assert slot(states.state_key("s1", "u")) != slot(states.state_key("s1", "v"))
    asyncio.run(store.close())
    asyncio.run(states.close())


# --- broken stores -------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_shrinking")
@pytest.mark.parametrize("name", sorted(BROKEN))
def test_keys_spread_over_slots_fail_the_cluster_run(name: str) -> None:
    """A store whose keys of one session or thread live in several slots fails on a cluster
    (the multi-slot scripts are refused and surface as StorageUnavailable), with the expected
    requirement among the failed ones; on one server the same store passes that requirement."""
    require_cluster()
    backend, family, requirement_id = BROKEN[name]
    report = run_suites(
        backend, families=[family], requirements=[requirement_id], pytest_args=["-x"]
    )
    assert not report.passed, f"the cluster run passed the broken backend {name!r}"
    failed = report.failed_requirements()
    assert requirement_id in failed, f"{name}: expected {requirement_id} to fail, got {failed}"
    alone = run_suites(
        on_one_server(name), families=[family], requirements=[requirement_id], pytest_args=[]
    )
    assert alone.passed, f"{name} should pass on one server: the cluster must be what fails it"


# --- G-25: slot moves and failovers under a workload ------------------------------------------

APPS = ("a0", "a1", "a2")
USER = "u"
SESSION = "s"
THREAD = "t"
PREFIX = "chaos:"
#: How long a writer may wait for the cluster to serve it again, in seconds.
RECOVERY = 30.0


def _index(nonce: str) -> int:
    return int(nonce.split(".", 1)[0])


@dataclass
class Writer:
    """What one writer did: the writes it had acknowledged (nonce, when) and its failures."""

    name: str
    acked: list[tuple[str, float]] = field(default_factory=list)
    unavailable: int = 0
    conflicts: int = 0
    read_backs: int = 0


def check_session(session: Session) -> None:
    """G-17 on a session read in one call: each event and its state delta are there together
    (the three scopes of the delta, and the events 1..n in order)."""
    n = len(session.events)
    counts = [session.state.get(key, 0) for key in ("count", "user:count", "app:count")]
    assert counts == [n, n, n], f"half an append is visible: {counts} for {n} events"
    indexes = [_index(event.id or "") for event in session.events]
    assert indexes == list(range(1, n + 1)), f"events out of order or missing: {indexes}"


async def _until_served(call: Callable[[], Any], deadline: float) -> Any:
    """Await ``call()`` again until it succeeds (StorageUnavailable while the cluster heals)."""
    while True:
        try:
            return await call()
        except StorageUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def event_writer(service: RedisSessionService, app: str, stop: asyncio.Event) -> Writer:
    """Appends events whose delta counts them, in each of three scopes; after a failure it
    reads the session back (G-22: the outcome is unknown) and goes on from what is stored."""
    log = Writer(app)
    request = GetRequest(app, USER, SESSION)
    current = await service.get(request)
    assert current is not None
    i, attempt = len(current.events) + 1, 0
    while not stop.is_set():
        attempt += 1
        nonce = f"{i}.{attempt}"
        delta = {"count": i, "user:count": i, "app:count": i}
        event = Event(
            author="user",
            id=nonce,
            content=Message.text("user", nonce),
            actions=EventActions(state_delta=delta),
        )
        try:
            current = await service.append_event(current, event)
            log.acked.append((nonce, time.monotonic()))
            i += 1
            continue
        except StorageUnavailable:
            log.unavailable += 1
        except Conflict:  # the stored session went back: a crashed primary's lost writes
            log.conflicts += 1
        log.read_backs += 1
        read = await _until_served(lambda: service.get(request), time.monotonic() + RECOVERY)
        assert read is not None
        check_session(read)
        current = read
        i = len(read.events) + 1
        await asyncio.sleep(0.01)
    return log


async def thread_writer(store: RedisThreadRunStore, stop: asyncio.Event) -> Writer:
    """Checkpoints a one-message conversation and a run whose steps name the same write; after
    a failure it reads both back (nothing else writes the thread, so the two reads see one
    state) and checks that they belong together (TR-19)."""
    log = Writer("thread")
    i, attempt = 1, 0
    while not stop.is_set():
        attempt += 1
        nonce = f"{i}.{attempt}"
        run = RunRecord(
            run_id="run", thread_id=THREAD, agent_id="a", created_at=0, updated_at=i, steps=i
        )
        try:
            await store.checkpoint(THREAD, [Message.text("user", nonce)], run)
            log.acked.append((nonce, time.monotonic()))
            i += 1
            continue
        except StorageUnavailable:
            log.unavailable += 1
        log.read_backs += 1
        deadline = time.monotonic() + RECOVERY
        stored_run = await _until_served(lambda: store.load_run("run"), deadline)
        messages = await _until_served(lambda: store.load_messages(THREAD), deadline)
        check_thread(messages, stored_run)
        i = (stored_run.steps if stored_run is not None else 0) + 1
        await asyncio.sleep(0.01)
    return log


def check_thread(messages: list[Message] | None, run: RunRecord | None) -> None:
    """The conversation and the run are of one checkpoint (or both absent)."""
    if run is None:
        assert messages is None, "messages of a checkpoint without its run"
        return
    assert messages is not None and len(messages) == 1
    assert _index(text_of(messages[0])) == run.steps, "messages and run of two checkpoints"


async def reader(service: RedisSessionService, stop: asyncio.Event) -> int:
    """Reads every session over and over while the cluster changes; each read is whole."""
    reads = 0
    while not stop.is_set():
        for app in APPS:
            try:
                session = await service.get(GetRequest(app, USER, SESSION))
            except StorageUnavailable:
                continue
            assert session is not None
            check_session(session)
            reads += 1
        await asyncio.sleep(0.005)
    return reads


@dataclass
class Outcome:
    """A workload's logs, the final state, and when the cluster was whole again."""

    writers: list[Writer]
    sessions: dict[str, Session]
    final_thread: tuple[list[Message] | None, RunRecord | None]
    recovered_at: float
    reads: int


def run_workload(local: LocalCluster, change: Callable[[], None]) -> Outcome:
    """Write for a while, run ``change`` (in a thread: it blocks until the cluster is healthy
    again), write a while longer on the same store objects, then read the final state."""

    async def scenario() -> Outcome:
        async with (
            RedisSessionService(local.url, cluster=True, prefix=PREFIX) as service,
            RedisThreadRunStore(local.url, cluster=True, prefix=PREFIX) as threads,
        ):
            for app in APPS:
                await service.create(CreateRequest(app, USER, session_id=SESSION))
            stop = asyncio.Event()
            tasks = [asyncio.create_task(event_writer(service, app, stop)) for app in APPS]
            tasks.append(asyncio.create_task(thread_writer(threads, stop)))
            reading = asyncio.create_task(reader(service, stop))
            try:
                await asyncio.sleep(0.5)
                await asyncio.to_thread(change)
                recovered_at = time.monotonic()
                await asyncio.sleep(0.7)
            finally:
                stop.set()
            writers = list(await asyncio.gather(*tasks))
            reads = await reading
            deadline = time.monotonic() + RECOVERY
            sessions = {}
            for app in APPS:
                request = GetRequest(app, USER, SESSION)
                found = await _until_served(partial(service.get, request), deadline)
                assert found is not None
                check_session(found)
                sessions[app] = found
            final_run = await _until_served(lambda: threads.load_run("run"), deadline)
            final_messages = await _until_served(lambda: threads.load_messages(THREAD), deadline)
            check_thread(final_messages, final_run)
            return Outcome(writers, sessions, (final_messages, final_run), recovered_at, reads)

    return asyncio.run(scenario())


def lost_writes(outcome: Outcome) -> list[tuple[str, str, float]]:
    """Acknowledged appends that are not in the final state: (writer, nonce, acked at)."""
    lost = []
    for log in outcome.writers:
        if log.name not in outcome.sessions:
            continue
        stored = [event.id for event in outcome.sessions[log.name].events]
        for nonce, at in log.acked:
            position = _index(nonce) - 1
            if position >= len(stored) or stored[position] != nonce:
                lost.append((log.name, nonce, at))
    return lost


def check_progress(outcome: Outcome) -> None:
    """Every writer got writes acknowledged after the change, on the same store objects."""
    for log in outcome.writers:
        after = [nonce for nonce, at in log.acked if at > outcome.recovered_at]
        assert after, f"{log.name}: no write succeeded after the cluster healed"
    assert outcome.reads > 0
    # The thread's last acknowledged checkpoint (all of them come after the change) is stored.
    thread_log = next(log for log in outcome.writers if log.name == "thread")
    messages, run = outcome.final_thread
    assert run is not None and messages is not None
    assert run.steps >= _index(thread_log.acked[-1][0])


def _slot_of_app(app: str) -> int:
    return key_slot(KeySpace(PREFIX).key("sv.astate", tag=(app,)).encode())


def _slot_of_threads() -> int:
    return key_slot(KeySpace(PREFIX).key("tr.threads").encode())


@pytest.fixture
def replicated() -> Iterator[LocalCluster]:
    """A cluster of its own (three primaries, one replica each, a short node timeout)."""
    require_local_cluster()
    with local_cluster(replicas=1, node_timeout_ms=1000) as local:
        yield local


@requirement("G-25", "G-17", "G-11")
def test_planned_failover_loses_no_acknowledged_write(replicated: LocalCluster) -> None:
    """G-25, G-17, G-11: ``CLUSTER FAILOVER`` on the replica of the primary that serves an app
    and the thread store while they are written: failures are StorageUnavailable, no append or
    checkpoint is seen half-applied, and every acknowledged write is kept."""
    masters = {replicated.master_of_slot(_slot_of_app("a0")).port}
    masters.add(replicated.master_of_slot(_slot_of_threads()).port)

    def change() -> None:
        for port in masters:
            master = next(node for node in replicated.topology() if node.port == port)
            (replica,) = replicated.replicas_of(master)
            replicated.failover(replica.port)
        replicated.wait_until_healthy(expect_replicas=1)

    outcome = run_workload(replicated, change)
    assert replicated.master_of_slot(_slot_of_app("a0")).port not in masters
    assert lost_writes(outcome) == []
    assert all(log.conflicts == 0 for log in outcome.writers)
    check_progress(outcome)


@requirement("G-25", "G-17", "G-11")
def test_crashed_primary_loses_at_most_its_last_acknowledged_writes(
    replicated: LocalCluster,
) -> None:
    """G-25, G-17, G-11: the primary of an app and of the thread store is killed mid-workload.
    Calls fail with StorageUnavailable until its replica takes over; what survives is a prefix
    of each session's appends (no gap, nothing half-applied); an acknowledged write may be lost
    only if it was acknowledged before the replica took over; the same store objects then work
    again."""
    master = replicated.master_of_slot(_slot_of_app("a0"))

    def change() -> None:
        replicated.kill(master.port)
        replicated.wait_until_healthy(expect_replicas=0)

    outcome = run_workload(replicated, change)
    assert replicated.master_of_slot(_slot_of_app("a0")).port != master.port
    for writer, nonce, at in lost_writes(outcome):
        assert at < outcome.recovered_at, f"{writer}: {nonce} was lost after the takeover"
    assert sum(log.unavailable for log in outcome.writers) > 0, "the crash went unnoticed"
    check_progress(outcome)


@requirement("G-25", "G-17")
def test_slot_migration_loses_nothing(replicated: LocalCluster) -> None:
    """G-25, G-17: the slots of an app and of the thread store move to another primary one key
    at a time while they are written (clients meet ASK and TRYAGAIN): failures, if any, are
    StorageUnavailable, nothing is seen half-applied, and every acknowledged write is kept."""
    slots = [_slot_of_app("a0"), _slot_of_threads()]

    def change() -> None:
        for slot in slots:
            source = replicated.master_of_slot(slot)
            target = next(
                node
                for node in replicated.topology()
                if node.is_master and node.slots and node.port != source.port
            )
            replicated.migrate_slot(slot, target.port, keys_per_step=1, pause=0.02)
        replicated.wait_until_healthy(expect_replicas=1)

    before = {slot: replicated.master_of_slot(slot).port for slot in slots}
    outcome = run_workload(replicated, change)
    for slot in slots:
        assert replicated.master_of_slot(slot).port != before[slot], "the slot did not move"
    assert lost_writes(outcome) == []
    assert all(log.conflicts == 0 for log in outcome.writers)
    check_progress(outcome)
