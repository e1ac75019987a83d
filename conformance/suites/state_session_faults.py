"""Faults of the state-session family: kills mid-save (``crash_safe``) and several processes
(``multi_process``), through :mod:`agentstores.conformance.faults`.

A save writes several modules' states, tens of kilobytes in all, as one whole (ST-3, ST-7): a
kill inside it must leave the old state or the new one, never a mix or a torn document. The
processes save to one shared session (sets of modules that differ from save to save) and to
their own, and load the shared one while the others save: every load sees one whole save, the
shared session ends as one whole save, and each process's session holds its last save.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from agentstores.spec.state_session import StateSessionStore

from ..backend import Capability
from ..clock import ManualClock
from ..faults import Operation, Workload, check_crash_consistency, check_processes
from ..harness import Harness
from ..markers import needs, requirement
from ..models.state_session import StateSessionModel
from .state_session_support import load_states, modules_for, save_states

__all__ = ["StateSessionFaultTests", "StateSessionWorkload"]

_USERS = ("u1", "u/2")
_SESSIONS = ("s1", "s:2", "s_3")
_MODULES = ("agent", "memory", "toolkit", "plan")


def _state(rng: random.Random, label: str) -> dict[str, Any]:
    notes = [f"{label} {n} " + "ünïcode " * rng.randint(0, 12) for n in range(rng.randint(0, 150))]
    return {"label": label, "notes": notes, "one": 1.0, "big": 2**70, "nested": {"n": [None]}}


class StateSessionWorkload(Workload[StateSessionStore, StateSessionModel]):
    """State-session operations for the fault checks."""

    def operations(self, rng: random.Random, count: int) -> list[Operation]:
        ops: list[Operation] = []
        for index in range(count):
            session, user = rng.choice(_SESSIONS), rng.choice(_USERS)
            if rng.random() < 0.85:
                names = rng.sample(_MODULES, rng.randint(1, len(_MODULES)))
                states = {name: _state(rng, f"op{index}.{name}") for name in names}
                ops.append(("save", session, user, states))
            else:
                ops.append(("delete", session, user))
        return ops

    def new_model(self) -> StateSessionModel:
        return StateSessionModel()

    def apply_to_model(self, model: StateSessionModel, operation: Operation, now: int) -> None:
        if operation[0] == "save":
            _, session, user, states = operation
            model.save(session, user, states, now=now)
        else:
            model.delete(operation[1], operation[2], now=now)

    async def apply_to_store(
        self, store: StateSessionStore, operation: Operation, scope: Any
    ) -> None:
        if operation[0] == "save":
            _, session, user, states = operation
            await save_states(store, session, user, states)
        else:
            await store.delete_session_state(operation[1], operation[2])

    async def read_store(self, store: StateSessionStore) -> object:
        seen: dict[tuple[str, str], object] = {}
        for user in _USERS:
            for session in await store.list_sessions(user):
                seen[(user, session)] = await load_states(store, session, user, _MODULES)
        return seen

    def read_model(self, model: StateSessionModel) -> object:
        return {
            (user, session): model.load(session, user, _MODULES)
            for user in _USERS
            for session in model.list_sessions(user)
        }

    # --- several processes ---------------------------------------------------------------

    async def process(
        self, store: StateSessionStore, worker: int, rounds: int, clock: ManualClock
    ) -> object:
        torn: list[str] = []
        for round_number in range(rounds):
            clock.advance(1)
            states = _round_states(worker, round_number)
            await store.save_session_state("shared", "u", **modules_for(states))
            await store.save_session_state(f"own-{worker}", "u", **modules_for(states))
            loaded = await _load_all(store, "shared")
            if loaded is None or _whole_save(loaded) is None:
                torn.append(repr(loaded)[:300])
        return torn

    async def check_processes(
        self, store: StateSessionStore, results: Sequence[Any], rounds: int
    ) -> None:
        torn = [entry for seen in results for entry in seen]
        assert not torn, f"ST-7, G-21: loads saw a mix of two saves (or nothing): {torn[:3]}"
        workers = len(results)
        sessions = await store.list_sessions("u")
        expected = sorted(["shared", *(f"own-{w}" for w in range(workers))])
        assert sessions == expected, f"G-21: sessions {sessions}, expected {expected}"
        for worker in range(workers):
            loaded = await _load_all(store, f"own-{worker}")
            assert loaded == _round_states(worker, rounds - 1), (
                f"ST-3, G-21: own-{worker} holds {loaded!r}, not its last save"
            )
        shared = await _load_all(store, "shared")
        assert shared is not None and _whole_save(shared) is not None, (
            f"ST-3, ST-7, G-21: the shared session holds no whole save: {shared!r}"
        )


def _round_states(worker: int, round_number: int) -> dict[str, Any]:
    """What ``worker`` saves in ``round_number``: one to four modules, each naming the save."""
    names = _MODULES[: 1 + (worker + round_number) % len(_MODULES)]
    return {name: {"worker": worker, "round": round_number, "pad": "x" * 2000} for name in names}


def _whole_save(loaded: Mapping[str, Any]) -> tuple[int, int] | None:
    """The (worker, round) whose save ``loaded`` is exactly, or None if it is a mix."""
    first = next(iter(loaded.values()), None)
    if not isinstance(first, dict):
        return None
    worker, round_number = first.get("worker"), first.get("round")
    if not isinstance(worker, int) or not isinstance(round_number, int):
        return None
    return (worker, round_number) if loaded == _round_states(worker, round_number) else None


async def _load_all(store: StateSessionStore, session: str) -> dict[str, Any] | None:
    found = modules_for({name: {} for name in _MODULES})
    await store.load_session_state(session, "u", True, **found)
    if not any(module.loads for module in found.values()):
        return None
    return {name: module.loads[-1] for name, module in found.items() if module.loads}


H = Harness[StateSessionStore]


class StateSessionFaultTests:
    """Kills and several processes (G-20, G-21)."""

    @needs(Capability.CRASH_SAFE)
    @requirement("G-20", "G-17", "ST-3", "ST-7")
    def test_a_killed_process_leaves_a_prefix_of_its_operations(self, harness: H) -> None:
        """G-20, G-17, ST-3, ST-7: a process killed at random moments of multi-module saves and
        deletes leaves, each time, the state after a prefix of them that holds every
        acknowledged one; never a torn document or a mix of two saves."""
        check_crash_consistency(harness, StateSessionWorkload())

    @needs(Capability.MULTI_PROCESS)
    @requirement("G-21", "G-18", "ST-3", "ST-7", "ST-13")
    def test_processes_keep_every_rule(self, harness: H) -> None:
        """G-21, G-18, ST-3, ST-7, ST-13: processes saving one session and their own, and
        loading while others save, only ever see whole saves; each process's last save is
        there, and nothing else."""
        check_processes(harness, StateSessionWorkload())
