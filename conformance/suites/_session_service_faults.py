"""Faults of the session-service family: kills mid-operation (``crash_safe``) and several
processes (``multi_process``), through :mod:`agentstores.conformance.faults`.

The crash workload appends events whose state deltas touch every scope, so a kill inside an
append must leave the event and its delta both or neither (SV-14). The processes append to one
session from freshly read versions, retrying on ``Conflict``: the storage must let exactly one
append per version through (SV-15), so the acknowledged versions are exactly 1 .. N, no event
is lost or duplicated, and each process's events keep its order (SV-16).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from agentstores.spec.errors import AlreadyExists, Conflict, NotFound
from agentstores.spec.messages import Message
from agentstores.spec.session_service import (
    CreateRequest,
    Event,
    EventActions,
    GetRequest,
    ListRequest,
    Session,
    SessionService,
    UpdateRequest,
)

from ..backend import Capability
from ..clock import ManualClock
from ..faults import Operation, Workload, check_crash_consistency, check_processes
from ..harness import Harness
from ..markers import needs, requirement
from ..models.session_service import SessionServiceModel

__all__ = ["SessionServiceFaultTests", "SessionServiceWorkload"]

#: (app, user) pairs of the crash workload: two users of one app share its ``app:`` state.
_PAIRS = (("app", "u/1"), ("app", "u:2"), ("other", "u/1"))
_SESSIONS = ("s0", "s1", "s/2")
_KEYS = ("k", "session:n", "app:shared", "user:pref", "temp:scratch")


def _delta(rng: random.Random, index: int) -> dict[str, Any]:
    keys = rng.sample(_KEYS, rng.randint(1, len(_KEYS)))
    return {key: rng.choice((index, float(index), f"v{index}", [index], None)) for key in keys}


def _event(rng: random.Random, index: int) -> Event:
    words = " ".join(rng.choice(("plan", "tool", "ünï", "x" * 30)) for _ in range(40))
    return Event(
        author=rng.choice(("user", "agent")),
        id=f"e{index}",
        timestamp=rng.choice((None, None, index)),
        branch=rng.choice((None, "a.b")),
        content=Message.text(rng.choice(("user", "assistant")), f"op{index} {words}"),
        actions=EventActions(state_delta=_delta(rng, index), custom_actions={"i": index}),
        metadata={"index": index},
    )


class SessionServiceWorkload(Workload[SessionService, SessionServiceModel]):
    """Session-service operations for the fault checks."""

    def operations(self, rng: random.Random, count: int) -> list[Operation]:
        ops: list[Operation] = []
        for index in range(count):
            app, user = rng.choice(_PAIRS)
            session = rng.choice(_SESSIONS)
            roll = rng.random()
            if roll < 0.20:
                request = CreateRequest(
                    app, user, metadata={"i": index}, state=_delta(rng, index), session_id=session
                )
                ops.append(("create", request))
            elif roll < 0.70:
                ops.append(("append", app, user, session, _event(rng, index)))
            elif roll < 0.82:
                ops.append(("update_state", app, user, session, _delta(rng, index)))
            elif roll < 0.92:
                ops.append(("update", UpdateRequest(app, user, session, {"i": index})))
            else:
                ops.append(("delete", app, user, session))
        return ops

    def new_model(self) -> SessionServiceModel:
        return SessionServiceModel()

    def apply_to_model(self, model: SessionServiceModel, operation: Operation, now: int) -> None:
        kind = operation[0]
        if kind == "create":
            request: CreateRequest = operation[1]
            assert request.session_id is not None
            model.create(request, now=now, session_id=request.session_id)
        elif kind in ("append", "update_state"):
            _, app, user, session_id, payload = operation
            session = model.get(GetRequest(app, user, session_id))
            if session is None:
                raise NotFound(f"no session {session_id!r}")
            if kind == "append":
                model.append_event(session, payload, now=now, event_id=payload.id)
            else:
                model.update_state(session, payload, now=now)
        elif kind == "update":
            model.update(operation[1], now=now)
        else:
            model.delete(*operation[1:])

    async def apply_to_store(self, store: SessionService, operation: Operation, scope: Any) -> None:
        kind = operation[0]
        if kind == "create":
            await store.create(operation[1])
        elif kind in ("append", "update_state"):
            _, app, user, session_id, payload = operation
            session = await store.get(GetRequest(app, user, session_id))
            if session is None:
                raise NotFound(f"no session {session_id!r}")
            if kind == "append":
                await store.append_event(session, payload)
            else:
                await store.update_state(session, payload)
        elif kind == "update":
            await store.update(operation[1])
        else:
            await store.delete(*operation[1:])

    async def read_store(self, store: SessionService) -> object:
        seen: list[Session | None] = []
        for app, user in _PAIRS:
            for listed in await store.list(ListRequest(app, user)):
                seen.append(await store.get(GetRequest(app, user, listed.id)))
        return seen

    def read_model(self, model: SessionServiceModel) -> object:
        return [
            model.get(GetRequest(app, user, listed.id))
            for app, user in _PAIRS
            for listed in model.list(ListRequest(app, user))
        ]

    # --- several processes ---------------------------------------------------------------

    async def process(
        self, store: SessionService, worker: int, rounds: int, clock: ManualClock
    ) -> object:
        try:
            await store.create(CreateRequest("app", "u", session_id="shared"))
            created = True
        except AlreadyExists:
            created = False
        versions: list[int] = []
        for round_number in range(rounds):
            clock.advance(1)
            while True:
                seen = await store.get(GetRequest("app", "u", "shared", num_recent_events=0))
                assert seen is not None, "the shared session vanished"
                delta = {"count": seen.version + 1, f"user:w{worker}": round_number}
                event = Event(
                    author=f"w{worker}",
                    id=f"w{worker}-{round_number}",
                    actions=EventActions(state_delta=delta),
                )
                try:
                    done = await store.append_event(seen, event)
                except Conflict:
                    continue  # another process appended since our read: read again
                versions.append(done.version)
                break
        return (created, versions)

    async def check_processes(
        self, store: SessionService, results: Sequence[Any], rounds: int
    ) -> None:
        workers = len(results)
        creators = [w for w in range(workers) if results[w][0]]
        assert len(creators) == 1, f"SV-2, G-21: processes {creators} all created one session"
        total = workers * rounds
        versions = sorted(v for _, seen in results for v in seen)
        assert versions == list(range(1, total + 1)), (
            f"SV-15, G-21: acknowledged versions {versions} are not 1 .. {total}: appends "
            "from one version succeeded in two processes"
        )
        session = await store.get(GetRequest("app", "u", "shared"))
        assert session is not None
        ids = [event.id for event in session.events]
        assert sorted(map(str, ids)) == sorted(
            f"w{w}-{r}" for w in range(workers) for r in range(rounds)
        ), f"G-21: events lost or duplicated: {ids}"
        for worker in range(workers):
            own = [i for i in ids if str(i).startswith(f"w{worker}-")]
            assert own == [f"w{worker}-{r}" for r in range(rounds)], (
                f"SV-16, G-21: process {worker}'s events out of its order: {own}"
            )
            assert session.state.get(f"user:w{worker}") == rounds - 1, session.state
        assert session.version == total, f"SV-13: version {session.version}, expected {total}"
        assert session.state.get("count") == total, (
            f"SV-14, G-21: count {session.state.get('count')}, expected {total} (a lost delta)"
        )


H = Harness[SessionService]


class SessionServiceFaultTests:
    """Kills and several processes (G-20, G-21)."""

    @needs(Capability.CRASH_SAFE)
    @requirement("G-20", "G-17", "SV-14")
    def test_a_killed_process_leaves_a_prefix_of_its_operations(self, harness: H) -> None:
        """G-20, G-17, SV-14: a process killed at random moments of random creates, appends,
        state updates and deletes leaves, each time, the state after a prefix of them that
        holds every acknowledged one; never an event without its state delta."""
        check_crash_consistency(harness, SessionServiceWorkload())

    @needs(Capability.MULTI_PROCESS)
    @requirement("G-21", "G-18", "SV-2", "SV-15", "SV-16", "SV-28")
    def test_processes_keep_every_rule(self, harness: H) -> None:
        """G-21, G-18, SV-2, SV-15, SV-16, SV-28: processes appending to one session from the
        versions they read get exactly one success per version; every event is there once,
        each process's in its order, with every state delta applied."""
        check_processes(harness, SessionServiceWorkload())
