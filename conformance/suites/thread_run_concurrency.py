"""Durability and concurrency (TR-19, TR-22, TR-23, G-16 .. G-18).

Concurrent tests start many tasks on one event loop with ``asyncio.gather``; a backend that
does its I/O off the loop (threads, sockets) really overlaps them. Each test checks an outcome
that only holds if nothing was lost, duplicated or seen half-written.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis.stateful import rule, run_state_machine_as_test

from agentstores.spec.errors import AlreadyExists, Conflict
from agentstores.spec.messages import Message
from agentstores.spec.thread_run import (
    PersistedState,
    RunQuery,
    RunStatus,
    Thread,
    ThreadMetadata,
    ThreadRunStore,
)

from ..backend import Capability
from ..harness import Harness
from ..markers import needs, requirement
from ..models.thread_run import ThreadRunModel
from ..strategies import ADVERSARIAL_IDS
from .thread_run_machine import ThreadRunMachine
from .thread_run_support import (
    LIST_ALL,
    assert_exact,
    make_run,
    model_snapshot,
    rich_json_object,
    store_snapshot,
)

__all__ = ["ConcurrencyTests", "DurabilityTests", "ReopeningMachine"]

Store = ThreadRunStore
H = Harness[ThreadRunStore]

#: How many tasks the concurrency tests start at once.
TASKS = 50


class ReopeningMachine(ThreadRunMachine):
    """The state machine with one more rule: close the store and open it again (TR-23)."""

    @rule()
    def reopen(self) -> None:
        """Close the store and open a new one on the same context; the model stays as is."""
        self.harness.run(self._manager.__aexit__(None, None, None))
        self._manager = self.harness.open(self.context)
        self.store = self.harness.run(self._manager.__aenter__())


async def _both(model: ThreadRunModel, store: Store, method: str, *args: Any) -> None:
    """Apply one operation to the model and the store (the scripted scenarios never fail)."""
    getattr(model, method)(*args)
    await getattr(store, method)(*args)


class DurabilityTests:
    """What a durable store keeps across close and reopen."""

    @needs(Capability.DURABLE)
    @requirement("TR-23", "G-16")
    def test_everything_is_there_after_reopening(self, harness: H) -> None:
        """TR-23, G-16: threads, metadata, messages and runs written through every operation
        are all there, exact, after close and reopen; stored runs still block their id and
        still obey status transitions."""
        model = ThreadRunModel(harness.clock)
        rich = ThreadMetadata(created_at=1, updated_at=2, title="rich", custom=rich_json_object())
        state = PersistedState(revision=2**64 - 1, extensions=rich_json_object())
        ids = list(ADVERSARIAL_IDS[:12])

        async def write(store: Store) -> None:
            await _both(model, store, "save_thread", Thread("rich", rich))
            await _both(model, store, "save_messages", "rich", [Message.text("user", "é")])
            for n, thread_id in enumerate(ids):
                run = make_run(f"run-{thread_id}", thread_id, created_at=n, state=state)
                said = [Message.text("user", thread_id), Message("assistant", metadata={"n": n})]
                await _both(model, store, "checkpoint", thread_id, said, run)
                harness.clock.advance(1)
            await _both(model, store, "create_run", make_run("orphan", "no-thread"))
            done = make_run("finished", "rich", status=RunStatus.DONE, termination_code="ok")
            await _both(model, store, "create_run", done)
            await _both(model, store, "update_thread_metadata", ids[0], ThreadMetadata(title="x"))
            await _both(model, store, "delete_messages", ids[1])
            await _both(model, store, "delete_thread", ids[2])

        async def read(store: Store) -> None:
            assert_exact(await store_snapshot(store), model_snapshot(model), "after reopening")
            with pytest.raises(AlreadyExists):
                await store.create_run(make_run("orphan", "elsewhere"))
            with pytest.raises(Conflict):
                await store.checkpoint("rich", [], make_run("finished", "rich"))

        harness.with_store(write)
        harness.with_store(read)

    @needs(Capability.DURABLE)
    @requirement("TR-23", "G-16")
    def test_random_histories_survive_reopening(self, harness: H) -> None:
        """TR-23, G-16: the state machine, with closing and reopening the store as one more
        random step, still agrees with the model at every step."""

        def machine() -> ReopeningMachine:
            return ReopeningMachine(harness)

        # hypothesis documents factories here, though its annotation asks for a class
        run_state_machine_as_test(machine, settings=harness.settings)  # type: ignore[arg-type]


class ConcurrencyTests:
    """Many tasks, and two store objects, on one storage at once."""

    @requirement("TR-22", "G-18")
    def test_concurrent_writes_lose_nothing(self, harness: H) -> None:
        """TR-22, G-18: many tasks creating runs, saving threads and checkpointing distinct
        threads at once: every acknowledged write is there, once."""
        runs = [make_run(f"run-{n}", f"t{n % 5}", created_at=n) for n in range(TASKS)]

        async def scenario(store: Store) -> None:
            await asyncio.gather(*(store.create_run(run) for run in runs))
            await asyncio.gather(*(store.save_thread(Thread(f"saved-{n}")) for n in range(TASKS)))
            await asyncio.gather(
                *(
                    store.checkpoint(
                        f"cp-{n}",
                        [Message.text("user", str(n))],
                        make_run(f"cp-{n}", f"cp-{n}", created_at=TASKS + n),
                    )
                    for n in range(TASKS)
                )
            )
            listed = (await store.list_runs(RunQuery(limit=200))).items
            assert_exact(listed[:TASKS], tuple(runs), "runs created concurrently")
            assert len(listed) == 2 * TASKS
            threads = await store.list_threads(0, LIST_ALL)
            assert len(threads) == len(set(threads)) == 2 * TASKS
            for n in range(TASKS):
                said = await store.load_messages(f"cp-{n}")
                assert_exact(said, [Message.text("user", str(n))], f"messages of cp-{n}")

        harness.with_store(scenario)

    @requirement("TR-22", "G-18")
    def test_racing_create_run_has_exactly_one_winner(self, harness: H) -> None:
        """TR-22, G-18: of many concurrent create_run calls with one run id, exactly one
        succeeds, the others raise AlreadyExists, and the stored run is the winner's."""

        async def scenario(store: Store) -> None:
            for race in range(5):
                run_id = f"contested-{race}"
                contenders = [
                    make_run(run_id, f"t{n}", agent_id=f"agent-{n}") for n in range(TASKS // 5)
                ]
                outcomes = await asyncio.gather(
                    *(store.create_run(run) for run in contenders), return_exceptions=True
                )
                winners = [
                    run
                    for run, outcome in zip(contenders, outcomes, strict=True)
                    if outcome is None
                ]
                losers = [outcome for outcome in outcomes if outcome is not None]
                assert len(winners) == 1, f"{len(winners)} create_run calls of {run_id!r} succeeded"
                assert all(isinstance(error, AlreadyExists) for error in losers), losers
                assert_exact(await store.load_run(run_id), winners[0], f"the winner of {run_id!r}")

        harness.with_store(scenario)

    @requirement("TR-22", "TR-19")
    def test_concurrent_saves_of_one_thread_leave_one_whole_list(self, harness: H) -> None:
        """TR-22, TR-19: after concurrent save_messages (and checkpoints) of one thread, the
        stored list is one of those written, whole; every checkpointed run is there."""
        lists = [[Message.text("user", f"{n}:{i}") for i in range(n % 7 + 1)] for n in range(TASKS)]

        async def scenario(store: Store) -> None:
            await store.save_thread(Thread("t"))
            await asyncio.gather(*(store.save_messages("t", said) for said in lists))
            assert (await store.load_messages("t")) in lists
            await asyncio.gather(
                *(
                    store.checkpoint("t", said, make_run(f"r{n}", "t"))
                    for n, said in enumerate(lists)
                )
            )
            final = await store.load_messages("t")
            assert final in lists, final
            assert_exact(final, lists[lists.index(final)], "the surviving list")
            assert (await store.list_runs(RunQuery(thread_id="t"))).total == TASKS

        harness.with_store(scenario)

    @requirement("TR-19", "G-17")
    def test_readers_never_see_half_a_checkpoint(self, harness: H) -> None:
        """TR-19, G-17: while checkpoint k = 1, 2, ... writes k into the run (steps) and into
        the messages, readers on the same and on a second store do latest_run, load_messages,
        latest_run: the messages' k is never outside what the two run reads bracket, and the
        message list is never torn."""
        checkpoints = 40

        def said(k: int) -> list[Message]:
            return [Message.text("user", f"{k}:{i}") for i in range(k % 4 + 1)]

        def k_of(messages: list[Message] | None) -> int:
            if not messages:
                return 0
            k = int(str(messages[0].content[0]["text"]).split(":")[0])
            assert_exact(messages, said(k), "messages read during checkpoints")
            return k

        async def scenario(store: Store) -> None:
            async with harness.open() as second:
                done = asyncio.Event()
                reads = [0, 0]

                async def writer() -> None:
                    for k in range(1, checkpoints + 1):
                        await store.checkpoint(
                            "t", said(k), make_run("r", "t", steps=k, updated_at=k)
                        )
                    done.set()

                async def reader(which: int, reading: Store) -> None:
                    while not done.is_set() or reads[which] == 0:
                        before = await reading.latest_run("t")
                        k = k_of(await reading.load_messages("t"))
                        after = await reading.latest_run("t")
                        low = before.steps if before else 0
                        high = after.steps if after else 0
                        assert low <= k <= high, f"run said {low} then {high}, messages said {k}"
                        reads[which] += 1

                async with asyncio.TaskGroup() as tasks:  # a failing reader cancels the rest
                    tasks.create_task(writer())
                    tasks.create_task(reader(0, store))
                    tasks.create_task(reader(1, second))

        harness.with_store(scenario)

    @requirement("G-18", "TR-22")
    def test_two_store_objects_on_one_storage(self, harness: H) -> None:
        """G-18, TR-22: two stores opened on the same context, used at once, lose nothing and
        let exactly one of them create a contested run id; both then see the same runs."""
        runs = [make_run(f"run-{n}", "t", created_at=n) for n in range(TASKS)]

        async def scenario(first: Store) -> None:
            async with harness.open() as second:
                stores = (first, second)
                await asyncio.gather(*(stores[n % 2].create_run(run) for n, run in enumerate(runs)))
                contested = [
                    make_run("contested", "t", agent_id=f"agent-{n}", created_at=TASKS)
                    for n in range(10)
                ]
                outcomes = await asyncio.gather(
                    *(stores[n % 2].create_run(run) for n, run in enumerate(contested)),
                    return_exceptions=True,
                )
                assert sum(outcome is None for outcome in outcomes) == 1, outcomes
                assert all(o is None or isinstance(o, AlreadyExists) for o in outcomes), outcomes
                one = await first.list_runs(RunQuery(limit=200))
                other = await second.list_runs(RunQuery(limit=200))
                assert_exact(one, other, "the runs each store sees")
                assert_exact(one.items[:TASKS], tuple(runs), "runs written through two stores")

        harness.with_store(scenario)
