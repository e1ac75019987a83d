"""The ``engine_faults`` check: the engine fails at each call an operation makes (G-11, G-17,
G-23).

For one operation of the family's :class:`~agentstores.conformance.engine_fault_scenarios.Scenario`
and each way the backend's engine can fail (:attr:`Backend.fault_injectors
<agentstores.conformance.backend.Backend.fault_injectors>`), :func:`check_engine_faults`

1. runs the operation once on a seeded store with the switch only counting, which gives the
   state before and after it and the number of engine calls it makes;
2. for each of those calls (or, when there are more than the profile allows, for calls spread
   evenly from the first to the last), seeds a fresh store, fails that call (``persistent``:
   that one and every later one, an engine that stays gone) and requires that the operation
   raised :class:`~agentstores.spec.errors.StorageUnavailable` (not a driver's exception, G-11)
   or succeeded, that the state read back on the same store object once the engine is back is
   the state before or after the whole operation (never a mix, G-17), that the same store
   object then performs the operation (G-23), and, for a ``durable`` backend, that a store
   opened again agrees.
"""

from __future__ import annotations

import asyncio
import difflib
import itertools
import pprint
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import hypothesis

from agentstores.spec.errors import StorageUnavailable

from .backend import Capability, Family, FaultInjector, StoreContext
from .clock import DEFAULT_START_MS, ManualClock
from .engine_fault_scenarios import SCENARIOS, Handles, Operation, Scenario
from .engine_faults import FaultSwitch
from .harness import Harness

__all__ = [
    "OPERATION_DEADLINE",
    "FaultCase",
    "check_engine_faults",
    "fault_cases",
    "injection_budget",
    "injection_points",
]

#: No operation under test may take longer, fault or not: a hang is a failure, not a wait.
OPERATION_DEADLINE = 30.0
#: The operations run this long after the seed, so that their stamps differ from the seed's.
_LATER = DEFAULT_START_MS + 1000


@dataclass(frozen=True)
class FaultCase:
    """One parametrisation of the check: an operation, failing once or from then on."""

    operation: str
    persistent: bool = False

    @property
    def id(self) -> str:
        """The pytest id, e.g. ``checkpoint-once``."""
        return f"{self.operation}-{'from-then-on' if self.persistent else 'once'}"


def fault_cases(family: Family) -> list[FaultCase]:
    """Every operation of ``family``'s scenario failing at one call; the first (its main
    compound operation) also with the engine staying down from that call on (none for a
    family without a scenario)."""
    scenario = SCENARIOS.get(family)
    if scenario is None:
        return []
    cases = [FaultCase(op.name) for op in scenario.operations]
    cases.append(FaultCase(scenario.operations[0].name, persistent=True))
    return cases


def injection_budget(settings: hypothesis.settings) -> int:
    """Calls of one operation the check fails at most: 25 under ``dev``, 40 under ``ci`` (about
    as many as the busiest reference operations make), every one under ``thorough``."""
    return max(2, settings.max_examples)


def injection_points(calls: int, budget: int) -> list[int]:
    """The calls to fail: all ``calls``, or ``budget`` of them spread evenly, first and last
    included (where writes start and where they commit)."""
    if calls <= budget:
        return list(range(1, calls + 1))
    step = (calls - 1) / (budget - 1)
    return sorted({1 + round(i * step) for i in range(budget)})


@dataclass(frozen=True)
class _Expected:
    before: object
    after: object
    calls: int


def check_engine_faults(harness: Harness[Any], case: FaultCase) -> None:
    """G-11, G-17, G-23: fail the engine at each call of ``case``'s operation, in each way the
    backend's fault injection offers; see the module docstring for what must hold."""
    scenario = SCENARIOS[harness.family]
    operation = scenario.operation(case.operation)
    injectors = harness.backend.fault_injectors
    if not injectors:
        raise AssertionError(
            f"backend {harness.backend.name!r} gives no fault_injection: the engine cannot be "
            "made to fail (a backend claiming engine_faults must give one)"
        )
    for mode, injector in injectors.items():
        # Name the way the engine fails only when the backend has several.
        label = f" ({mode})" if len(injectors) > 1 else ""
        _check_mode(harness, scenario, operation, case.persistent, label, injector)


def _check_mode(
    harness: Harness[Any],
    scenario: Scenario,
    operation: Operation,
    persistent: bool,
    label: str,
    injector: FaultInjector,
) -> None:
    switch = FaultSwitch()
    with injector(harness.family, switch):
        expected = harness.run(_expected(harness, scenario, operation, switch, label))
        budget = injection_budget(harness.settings)
        for at in injection_points(expected.calls, budget):
            where = (
                f"{operation.name} with the engine failing{label} at call {at} of "
                f"{expected.calls}{' and every later one' if persistent else ''}"
            )
            harness.run(
                _attempt(harness, scenario, operation, switch, expected, at, persistent, where)
            )


@asynccontextmanager
async def _seeded(
    harness: Harness[Any], scenario: Scenario
) -> AsyncIterator[tuple[Any, Handles, StoreContext]]:
    """A store of a fresh context holding the seed, its clock moved on to :data:`_LATER`."""
    clock = ManualClock()
    context = harness.new_context(clock=clock)
    async with harness.open(context) as store:
        handles = await scenario.seed(store)
        clock.set(_LATER)
        yield store, handles, context


async def _run_operation(operation: Operation, store: Any, handles: Handles) -> None:
    async with asyncio.timeout(OPERATION_DEADLINE):
        await operation.run(store, handles)


async def _expected(
    harness: Harness[Any], scenario: Scenario, operation: Operation, switch: FaultSwitch, label: str
) -> _Expected:
    async with _seeded(harness, scenario) as (store, handles, _):
        before = await scenario.observe(store)
        switch.watch()
        try:
            await _run_operation(operation, store, handles)
        except Exception as exc:
            raise AssertionError(
                f"{operation.name} fails with the engine working: {_describe(exc)}"
            ) from exc
        finally:
            calls = switch.calls
            switch.disarm()
        after = await scenario.observe(store)
    if before == after:
        raise AssertionError(f"{operation.name} changed nothing: the scenario cannot check it")
    if calls == 0:
        raise AssertionError(
            f"the fault injection{label} of backend {harness.backend.name!r} saw no engine call "
            f"of {operation.name}: its hook does not reach the engine calls of the stores "
            "(they must call switch.hit() before each one)"
        )
    return _Expected(before, after, calls)


async def _attempt(
    harness: Harness[Any],
    scenario: Scenario,
    operation: Operation,
    switch: FaultSwitch,
    expected: _Expected,
    at: int,
    persistent: bool,
    where: str,
) -> None:
    async with _seeded(harness, scenario) as (store, handles, context):
        switch.arm(at, persistent=persistent)
        failed = False
        try:
            async with asyncio.timeout(OPERATION_DEADLINE) as deadline:
                await operation.run(store, handles)
        except StorageUnavailable:
            failed = True
        except TimeoutError as exc:
            if deadline.expired():
                raise AssertionError(
                    f"G-22: {where}: still waiting after {OPERATION_DEADLINE:.0f} s"
                ) from exc
            raise _not_storage_unavailable(where, exc) from exc
        except Exception as exc:
            raise _not_storage_unavailable(where, exc) from exc
        finally:
            switch.disarm()
        if failed and not switch.fired:
            raise AssertionError(f"G-11: {where}: StorageUnavailable, yet the engine never failed")
        # The engine is back: the same store object must work again, without reopening.
        state = await _observe_again(scenario, store, where)
        if failed and state not in (expected.before, expected.after):
            raise AssertionError(
                f"G-17: {where}: the operation failed half applied; the state differs from the "
                f"one before it:\n{_difference(state, expected.before)}"
            )
        if not failed and state != expected.after:
            raise AssertionError(
                f"G-17: {where}: the operation succeeded, but the state is not the one after "
                f"it:\n{_difference(state, expected.after)}"
            )
        if state == expected.before:
            try:
                await _run_operation(operation, store, handles)
            except Exception as exc:
                raise AssertionError(
                    f"G-23: {where}: once the engine was back, the same store failed the "
                    f"operation again: {_describe(exc)}"
                ) from exc
            state = await _observe_again(scenario, store, where)
            if state != expected.after:
                raise AssertionError(
                    f"G-23: {where}: once the engine was back, the operation on the same store "
                    f"left a wrong state:\n{_difference(state, expected.after)}"
                )
    if harness.backend.claims(Capability.DURABLE):
        await _check_reopened(harness, scenario, context, state, where)


async def _observe_again(scenario: Scenario, store: Any, where: str) -> object:
    try:
        return await scenario.observe(store)
    except Exception as exc:
        raise AssertionError(
            f"G-23: {where}: once the engine was back, the same store could not read its "
            f"data: {_describe(exc)}"
        ) from exc


async def _check_reopened(
    harness: Harness[Any], scenario: Scenario, context: StoreContext, state: object, where: str
) -> None:
    async with harness.open(context) as store:
        again = await scenario.observe(store)
    if again != state:
        raise AssertionError(
            f"G-11: {where}: a store opened again sees other data than the one that saw the "
            f"failure:\n{_difference(again, state)}"
        )


def _not_storage_unavailable(where: str, exc: BaseException) -> AssertionError:
    return AssertionError(f"G-11: {where}: raised {_describe(exc)}, not StorageUnavailable")


def _describe(exc: BaseException) -> str:
    kind = type(exc)
    return f"{kind.__module__}.{kind.__qualname__}: {exc}"


def _difference(actual: object, expected: object) -> str:
    lines = difflib.unified_diff(
        pprint.pformat(expected, width=100).splitlines(),
        pprint.pformat(actual, width=100).splitlines(),
        "expected",
        "store",
        lineterm="",
        n=2,
    )
    shown = list(itertools.islice(lines, 40))
    return "\n".join(shown) if shown else "(they print alike but differ in value types)"
