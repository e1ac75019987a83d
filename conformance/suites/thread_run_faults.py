"""Faults of the thread/run family: kills mid-operation (``crash_safe``) and several processes
(``multi_process``), through the generic checks of :mod:`agentstores.conformance.faults`.

The crash workload mixes every mutating operation, checkpoints most often (with message lists
of a few kilobytes), so that kills land inside them: a checkpoint, and the delete of a thread
with its messages and runs, may never be seen half-applied (TR-4, TR-19). The processes race to
create the same run ids (exactly one wins, TR-12), checkpoint their own thread and one shared
thread; afterwards every run is there once, each process's thread holds its last checkpoint,
and the shared thread holds one whole checkpoint (G-21).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from agentstores.spec.errors import AlreadyExists
from agentstores.spec.messages import Message
from agentstores.spec.thread_run import (
    PersistedState,
    RunQuery,
    RunRecord,
    RunStatus,
    Thread,
    ThreadMetadata,
    ThreadRunStore,
)

from ..backend import Capability
from ..clock import ManualClock
from ..faults import (
    Operation,
    Workload,
    check_crash_consistency,
    check_processes,
    random_messages,
)
from ..harness import Harness
from ..markers import needs, requirement
from ..models.thread_run import ThreadRunModel
from .thread_run_support import LIST_ALL, assert_exact, model_snapshot, store_snapshot

__all__ = ["ThreadRunFaultTests", "ThreadRunWorkload"]

#: Threads of the crash workload; ids that naive file or key names would mangle (G-2).
_THREADS = ("t0", "t/../1", "t:2", "T0")


def _run(rng: random.Random, run_id: str, thread_id: str, at: int) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        thread_id=thread_id,
        agent_id=rng.choice(("planner", "coder")),
        created_at=at,
        updated_at=at + rng.randrange(3),
        status=rng.choice(list(RunStatus)),
        steps=rng.randrange(100),
        input_tokens=rng.randrange(10**6),
        output_tokens=rng.randrange(10**6),
        state=PersistedState(rng.randrange(2**64), {"at": at, "f": 0.5, "big": 2**65}),
    )


def _metadata(rng: random.Random, index: int) -> ThreadMetadata:
    return ThreadMetadata(
        created_at=rng.choice((None, index)),
        updated_at=rng.choice((None, index + 1)),
        title=f"title {index}",
        custom={"index": index, "one": 1.0},
    )


class ThreadRunWorkload(Workload[ThreadRunStore, ThreadRunModel]):
    """Thread/run operations for the fault checks."""

    def operations(self, rng: random.Random, count: int) -> list[Operation]:
        runs: dict[str, list[str]] = {thread: [] for thread in _THREADS}
        ops: list[Operation] = []
        for index in range(count):
            thread = rng.choice(_THREADS)
            roll = rng.random()
            if roll < 0.40:
                reuse = runs[thread] and rng.random() < 0.4
                run_id = rng.choice(runs[thread]) if reuse else f"r{index}"
                if not reuse:
                    runs[thread].append(run_id)
                said = random_messages(rng, f"op{index}", most=24)
                ops.append(("checkpoint", thread, said, _run(rng, run_id, thread, index)))
            elif roll < 0.55:
                ops.append(("save_messages", thread, random_messages(rng, f"op{index}")))
            elif roll < 0.67:
                ops.append(("save_thread", Thread(thread, _metadata(rng, index))))
            elif roll < 0.77:
                runs[thread].append(f"r{index}")
                ops.append(("create_run", _run(rng, f"r{index}", thread, index)))
            elif roll < 0.87:
                ops.append(("update_thread_metadata", thread, _metadata(rng, index)))
            elif roll < 0.94:
                ops.append(("delete_messages", thread))
            else:
                runs[thread].clear()
                ops.append(("delete_thread", thread))
        return ops

    def new_model(self) -> ThreadRunModel:
        return ThreadRunModel(ManualClock())

    def apply_to_model(self, model: ThreadRunModel, operation: Operation, now: int) -> None:
        assert isinstance(model.clock, ManualClock)
        model.clock.set(now)
        getattr(model, operation[0])(*operation[1:])

    async def apply_to_store(self, store: ThreadRunStore, operation: Operation, scope: Any) -> None:
        await getattr(store, operation[0])(*operation[1:])

    async def read_store(self, store: ThreadRunStore) -> object:
        return await store_snapshot(store)

    def read_model(self, model: ThreadRunModel) -> object:
        return model_snapshot(model)

    # --- several processes ---------------------------------------------------------------

    async def process(
        self, store: ThreadRunStore, worker: int, rounds: int, clock: ManualClock
    ) -> object:
        won: list[bool] = []
        for round_number in range(rounds):
            clock.advance(1)
            try:
                await store.create_run(_race_run(worker, round_number))
                won.append(True)
            except AlreadyExists:
                won.append(False)
            own = f"own-{worker}"
            await store.checkpoint(
                own, _said(worker, round_number), _own_run(own, worker, round_number)
            )
            shared = _own_run("shared", worker, round_number)
            await store.checkpoint("shared", _said(worker, round_number), shared)
        return won

    async def check_processes(
        self, store: ThreadRunStore, results: Sequence[Any], rounds: int
    ) -> None:
        workers = len(results)
        for round_number in range(rounds):
            winners = [w for w in range(workers) if results[w][round_number]]
            assert len(winners) == 1, (
                f"TR-12, G-21: create_run of race-{round_number} succeeded in processes "
                f"{winners}; exactly one may succeed"
            )
            stored = await store.load_run(f"race-{round_number}")
            assert_exact(stored, _race_run(winners[0], round_number), "the raced run")
        for worker in range(workers):
            own = f"own-{worker}"
            assert_exact(
                await store.load_messages(own),
                _said(worker, rounds - 1),
                f"G-21: {own}'s messages (its last checkpoint, writes in order)",
            )
            for round_number in range(rounds):
                for thread in (own, "shared"):
                    run = _own_run(thread, worker, round_number)
                    assert_exact(await store.load_run(run.run_id), run, f"run {run.run_id}")
        shared = await store.load_messages("shared")
        candidates = [_said(w, r) for w in range(workers) for r in range(rounds)]
        assert shared in candidates, (
            f"TR-19, G-21: the shared thread's messages are no whole checkpoint: {shared!r}"
        )
        page = await store.list_runs(RunQuery(limit=1))
        assert page.total == rounds + 2 * workers * rounds, (
            f"G-21: {page.total} runs stored, expected {rounds + 2 * workers * rounds} "
            "(lost or duplicated runs)"
        )
        threads = sorted(await store.list_threads(0, LIST_ALL))
        assert threads == sorted(["shared", *(f"own-{w}" for w in range(workers))]), threads


def _race_run(worker: int, round_number: int) -> RunRecord:
    return RunRecord(f"race-{round_number}", "shared", f"w{worker}", round_number, round_number)


def _own_run(thread: str, worker: int, round_number: int) -> RunRecord:
    run_id = f"{thread}-{worker}-{round_number}"
    return RunRecord(run_id, thread, f"w{worker}", round_number, round_number, steps=round_number)


def _said(worker: int, round_number: int) -> list[Message]:
    return [Message.text("user", f"w{worker} r{round_number} m{n}") for n in range(3)]


H = Harness[ThreadRunStore]


class ThreadRunFaultTests:
    """Kills and several processes (G-20, G-21)."""

    @needs(Capability.CRASH_SAFE)
    @requirement("G-20", "G-17", "TR-4", "TR-19")
    def test_a_killed_process_leaves_a_prefix_of_its_operations(self, harness: H) -> None:
        """G-20, G-17, TR-4, TR-19: a process killed at random moments of random operations
        leaves, each time, the state after a prefix of them that holds every acknowledged one;
        never half a checkpoint or half a thread deletion."""
        check_crash_consistency(harness, ThreadRunWorkload())

    @needs(Capability.MULTI_PROCESS)
    @requirement("G-21", "G-18", "TR-12", "TR-19", "TR-22")
    def test_processes_keep_every_rule(self, harness: H) -> None:
        """G-21, G-18, TR-12, TR-19, TR-22: processes racing to create one run id have exactly
        one winner, and their checkpoints are all there, whole and in each process's order."""
        check_processes(harness, ThreadRunWorkload())
