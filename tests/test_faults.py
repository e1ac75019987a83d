"""The fault-check machinery itself (``agentstores.conformance.faults``): how backends reach
child processes, how children report, what the checks make of a failing child, and how the
profiles scale them. The checks on the references run in each family's suite."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from agentstores.conformance.backend import Backend, Capability, Family, StoreContext
from agentstores.conformance.clock import ManualClock
from agentstores.conformance.faults import (
    Job,
    Operation,
    Workload,
    check_crash_consistency,
    check_processes,
    kill_count,
    outcome_of,
    process_rounds,
)
from agentstores.conformance.faults_pool import Zygote
from agentstores.conformance.harness import Harness
from agentstores.conformance.profiles import Profile, profile_settings
from agentstores.reference.jsonfile import BACKEND as JSON
from agentstores.reference.jsonfile.state_session import JSONStateSessionStore
from agentstores.spec.errors import Conflict, InvalidArgument, NotFound


def test_outcomes_name_the_error_kind() -> None:
    assert outcome_of(None) == "ok"
    assert outcome_of(NotFound("x")) == "NotFound"
    assert outcome_of(Conflict("x", expected=1, actual=2)) == "Conflict"
    assert outcome_of(InvalidArgument("x")) == "InvalidArgument"
    assert outcome_of(RuntimeError("x")) == "RuntimeError"


def test_profiles_scale_the_checks() -> None:
    dev, ci, thorough = (profile_settings(p) for p in (Profile.DEV, Profile.CI, Profile.THOROUGH))
    assert 6 <= kill_count(dev) <= kill_count(ci) < kill_count(thorough)
    assert 12 <= process_rounds(dev) <= process_rounds(ci) < process_rounds(thorough)


# --- a tiny workload on the JSON state-session store -------------------------------------


class CountingWorkload(Workload[JSONStateSessionStore, dict[str, int]]):
    """Saves ``{"n": i}`` as the state of session ``s`` for operation ``i``."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at = fail_at

    def operations(self, rng: random.Random, count: int) -> list[Operation]:
        return [("save", index) for index in range(count)]

    def new_model(self) -> dict[str, int]:
        return {}

    def apply_to_model(self, model: dict[str, int], operation: Operation, now: int) -> None:
        model["n"] = operation[1]

    async def apply_to_store(
        self, store: JSONStateSessionStore, operation: Operation, scope: Any
    ) -> None:
        if operation[1] == self.fail_at:
            raise RuntimeError(f"the workload broke at {self.fail_at}")
        await store.save_session_state("s", agent=_Module({"n": operation[1]}))

    async def read_store(self, store: JSONStateSessionStore) -> object:
        module = _Module({})
        await store.load_session_state("s", agent=module)
        return dict(module.state)

    def read_model(self, model: dict[str, int]) -> object:
        return dict(model)

    async def process(
        self, store: JSONStateSessionStore, worker: int, rounds: int, clock: ManualClock
    ) -> object:
        for round_number in range(rounds):
            await store.save_session_state(f"w{worker}", agent=_Module({"n": round_number}))
        return worker

    async def check_processes(
        self, store: JSONStateSessionStore, results: Sequence[Any], rounds: int
    ) -> None:
        assert list(results) == list(range(len(results)))
        assert await store.list_sessions() == [f"w{w}" for w in range(len(results))]


class _Module:
    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state

    def state_dict(self) -> dict[str, Any]:
        return self.state

    def load_state_dict(self, state_dict: dict[str, Any], /) -> None:
        self.state = state_dict


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness[Any]]:
    counter = iter(range(1000))

    def make_dir() -> Path:
        path = tmp_path / f"sandbox{next(counter)}"
        path.mkdir()
        return path

    settings = profile_settings(Profile.DEV)
    with Harness[Any](JSON, Family.STATE_SESSION, make_dir=make_dir, settings=settings) as h:
        yield h


def test_a_crash_check_passes_a_crash_safe_store(harness: Harness[Any]) -> None:
    check_crash_consistency(harness, CountingWorkload(), kills=4)


def test_a_process_check_passes_a_multi_process_store(harness: Harness[Any]) -> None:
    check_processes(harness, CountingWorkload(), workers=2, rounds=3)


def test_a_failing_child_fails_the_check_with_its_error(harness: Harness[Any]) -> None:
    with pytest.raises(AssertionError, match="the workload broke at 0"):
        check_crash_consistency(harness, CountingWorkload(fail_at=0), kills=2)
    with pytest.raises(AssertionError, match="RuntimeError"):
        check_processes(harness, _FailingProcesses(), workers=2, rounds=2)


class _FailingProcesses(CountingWorkload):
    async def process(
        self, store: JSONStateSessionStore, worker: int, rounds: int, clock: ManualClock
    ) -> object:
        raise RuntimeError("a process failed")


class LosingWorkload(CountingWorkload):
    """Reads back nothing: as if every acknowledged save had been lost."""

    async def read_store(self, store: JSONStateSessionStore) -> object:
        return {}


def test_a_lost_acknowledged_operation_fails_the_crash_check(harness: Harness[Any]) -> None:
    with pytest.raises(AssertionError, match="G-20: after the kill the store holds no prefix"):
        check_crash_consistency(harness, LosingWorkload(), kills=3)


class DiffersFromTheModel(CountingWorkload):
    """A model that refuses every save the store accepts."""

    def apply_to_model(self, model: dict[str, int], operation: Operation, now: int) -> None:
        raise NotFound("the model says so")


def test_an_outcome_that_differs_from_the_model_fails_the_crash_check(
    harness: Harness[Any],
) -> None:
    with pytest.raises(AssertionError, match="gave ok, the model says NotFound"):
        check_crash_consistency(harness, DiffersFromTheModel(), kills=2)


def test_a_workload_that_cannot_reach_a_child_fails_with_the_fix(harness: Harness[Any]) -> None:
    class Local(CountingWorkload):
        pass

    with pytest.raises(AssertionError, match="module-level class"):
        check_crash_consistency(harness, Local(), kills=1)


# --- reaching the children -----------------------------------------------------------------


@asynccontextmanager
async def _local_opener(ctx: StoreContext) -> Any:
    yield None


LOCAL = Backend("local", {Family.STATE_SESSION: lambda ctx: _local_opener(ctx)})


def test_an_unpicklable_backend_is_named_by_its_module_attribute(tmp_path: Path) -> None:
    """A backend with a lambda opener still reaches a child if a module holds it."""
    from agentstores.conformance import faults

    assert faults._portable(LOCAL) == f"{__name__}:LOCAL"
    job = Job(f"{__name__}:LOCAL", Family.STATE_SESSION, tmp_path, "n", {}, 0, CountingWorkload())
    assert job.load_backend() is LOCAL


def test_an_unreachable_backend_fails_with_the_fix(harness: Harness[Any]) -> None:
    local = Backend(
        "nowhere",
        {Family.STATE_SESSION: lambda ctx: _local_opener(ctx)},
        frozenset({Capability.CRASH_SAFE}),
    )
    harness.backend = local
    with pytest.raises(AssertionError, match="openers and lifespan at module level"):
        check_crash_consistency(harness, CountingWorkload(), kills=1)


def test_the_zygote_reports_kills_and_exits(tmp_path: Path) -> None:
    """A child killed mid-run is reported with exit -9 and what it started and acknowledged."""
    job = Job(
        backend="json",
        family=Family.STATE_SESSION,
        root=tmp_path,
        namespace="n",
        options={},
        base_time=0,
        workload=CountingWorkload(),
        operations=tuple(("save", i) for i in range(10_000)),
    )
    with Zygote(job, tmp_path / "zygote") as zygote:
        child = zygote.fork(("crash", 0))
        zygote.wait(lambda: 3 in child.acked, timeout=60, what="three acknowledgements")
        zygote.kill(child)
        zygote.wait(lambda: child.exited, timeout=60, what="the exit")
        assert child.status == -9
        assert child.ready_at is not None
        assert all(index in child.started for index in child.acked)
        assert max(child.started) - max(child.acked) <= 1
        assert all(outcome == "ok" for outcome, _ in child.acked.values())
        finished = zygote.fork(("crash", 9_998))
        zygote.wait(lambda: finished.exited, timeout=60, what="a short run to end")
        assert finished.status == 0 and finished.done and sorted(finished.acked) == [9_998, 9_999]
