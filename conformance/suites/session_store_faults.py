"""Faults of the session-store family: kills mid-operation (``crash_safe``) and several
processes (``multi_process``), through :mod:`agentstores.conformance.faults`.

Sessions get their ids from the store (SS-4), which the model cannot know: the workload names
every session uniquely and refers to sessions by name; a child learns the ids of an existing
store from a listing, and snapshots key sessions by name. A kill inside a conversation
replacement, an import, a copy or a delete must leave it whole or absent (SS-7, SS-9, SS-18,
SS-19). The processes create sessions at once (every id distinct, SS-4) and add messages to one
shared session (none lost or duplicated, each process's in its order, SS-8).
"""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections.abc import Sequence
from typing import Any

from agentstores.spec.messages import Message
from agentstores.spec.session_store import SessionStore, SessionType, TokenStatsUpdate

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
from ..models.session_store import SessionStoreModel
from .session_store_support import ALL_TYPES

__all__ = ["SessionStoreFaultTests", "SessionStoreWorkload"]

#: Operations that name one existing session (by its name) as their first argument.
_ON_SESSION = (
    "add_message",
    "replace_conversation",
    "truncate_conversation",
    "update_token_stats",
    "update_extension_data",
    "delete_session",
)


class _Model:
    """The model with the names of its sessions (the workload's handles) mapped to ids."""

    def __init__(self) -> None:
        counter = itertools.count(1)
        self.store = SessionStoreModel(ManualClock(), id_source=lambda: f"model-{next(counter)}")
        self.ids: dict[str, str] = {}


def _document(rng: random.Random, name: str) -> str:
    """An export document (SS-17) of a session named ``name`` with a conversation."""
    scratch = SessionStoreModel(ManualClock())
    session = scratch.create_session("/work/imported", name, SessionType.SCHEDULED)
    scratch.replace_conversation(session.id, random_messages(rng, name, most=20))
    scratch.update_extension_data(session.id, {"todo.v0": {"items": [1, 2.0]}})
    return scratch.export_session(session.id)


class SessionStoreWorkload(Workload[SessionStore, _Model]):
    """Session-store operations for the fault checks."""

    def operations(self, rng: random.Random, count: int) -> list[Operation]:
        names: list[str] = []
        ops: list[Operation] = []
        for index in range(count):
            roll = rng.random()
            if roll < 0.15 or not names:
                names.append(f"n{index}")
                kind = rng.choice(list(SessionType))
                ops.append(("create_session", f"/work/{index}", f"n{index}", kind))
                continue
            name = rng.choice(names)
            if roll < 0.40:
                message = Message.text("user", f"op{index} " + "hello " * 30, created_at=index)
                ops.append(("add_message", name, message))
            elif roll < 0.58:
                ops.append(("replace_conversation", name, random_messages(rng, f"op{index}")))
            elif roll < 0.64:
                ops.append(("truncate_conversation", name, rng.randrange(10**12)))
            elif roll < 0.71:
                ops.append(("update_token_stats", name, TokenStatsUpdate(total_tokens=index)))
            elif roll < 0.77:
                ops.append(("update_extension_data", name, {"todo.v0": {"index": index}}))
            elif roll < 0.85:
                names.append(f"copy{index}")
                ops.append(("copy_session", name, f"copy{index}"))
            elif roll < 0.94:
                names.append(f"imp{index}")
                ops.append(("import_session", f"imp{index}", _document(rng, f"imp{index}")))
            else:
                names.remove(name)
                ops.append(("delete_session", name))
        return ops

    def new_model(self) -> _Model:
        return _Model()

    def apply_to_model(self, model: _Model, operation: Operation, now: int) -> None:
        assert isinstance(model.store.clock, ManualClock)
        model.store.clock.set(now)
        _learn(_apply(model.store, operation, model.ids), operation, model.ids)

    async def resume(self, store: SessionStore) -> Any:
        return {s.name: s.id for s in await store.list_sessions_by_types(list(ALL_TYPES))}

    async def apply_to_store(self, store: SessionStore, operation: Operation, scope: Any) -> None:
        _learn(await _apply(store, operation, scope), operation, scope)

    async def read_store(self, store: SessionStore) -> object:
        listed = await store.list_sessions_by_types(list(ALL_TYPES))
        full = {s.name: await store.get_session(s.id, True) for s in listed}
        return _by_name(full, await store.get_insights())

    def read_model(self, model: _Model) -> object:
        listed = model.store.list_sessions_by_types(list(ALL_TYPES))
        full = {s.name: model.store.get_session(s.id, True) for s in listed}
        return _by_name(full, model.store.get_insights())

    # --- several processes ---------------------------------------------------------------

    async def prepare_processes(self, store: SessionStore) -> None:
        await store.create_session("/work/shared", "shared")

    async def process(
        self, store: SessionStore, worker: int, rounds: int, clock: ManualClock
    ) -> object:
        (shared,) = [s.id for s in await store.list_sessions() if s.name == "shared"]
        created: list[str] = []
        for round_number in range(rounds):
            clock.advance(1)
            label = f"w{worker}-{round_number}"
            session = await store.create_session(f"/work/{worker}", label)
            created.append(session.id)
            await store.add_message(shared, Message.text("user", label))
        return created

    async def check_processes(
        self, store: SessionStore, results: Sequence[Any], rounds: int
    ) -> None:
        workers = len(results)
        ids = [session_id for created in results for session_id in created]
        assert len(set(ids)) == len(ids), f"SS-4, G-21: processes were given one id twice: {ids}"
        for worker, created in enumerate(results):
            for round_number, session_id in enumerate(created):
                session = await store.get_session(session_id)
                assert session.name == f"w{worker}-{round_number}", (
                    f"G-21: session {session_id} is {session.name!r}: one process's session "
                    "overwrote another's"
                )
        (shared,) = [s for s in await store.list_sessions() if s.name == "shared"]
        full = await store.get_session(shared.id, True)
        assert full.conversation is not None
        texts = [str(m.content[0]["text"]) for m in full.conversation]
        expected = [f"w{w}-{r}" for w in range(workers) for r in range(rounds)]
        assert sorted(texts) == sorted(expected), f"SS-8, G-21: messages lost or doubled: {texts}"
        for worker in range(workers):
            mine = [t for t in texts if t.startswith(f"w{worker}-")]
            assert mine == [f"w{worker}-{r}" for r in range(rounds)], (
                f"SS-8, G-21: process {worker}'s messages out of its order: {mine}"
            )
        assert full.message_count == workers * rounds
        assert (await store.get_insights()).total_sessions == 1 + workers * rounds


def _apply(target: Any, operation: Operation, ids: dict[str, str]) -> Any:
    """Call ``operation`` on a store or the model, names resolved to ids; NotFound for an
    unknown name, as the store would raise for a missing session (SS-15)."""
    kind, *args = operation
    if kind == "create_session":
        return target.create_session(*args)
    if kind == "import_session":
        return target.import_session(args[1])
    if kind == "copy_session":
        return target.copy_session(_id(ids, args[0]), args[1])
    return getattr(target, kind)(_id(ids, args[0]), *args[1:])


def _id(ids: dict[str, str], name: str) -> str:
    # A name the scope does not know was never created: pass a name no store assigns.
    return ids.get(name, f"missing {name}")


def _learn(result: Any, operation: Operation, ids: dict[str, str]) -> None:
    kind = operation[0]
    if kind in ("create_session", "copy_session", "import_session"):
        ids[result.name] = result.id
    elif kind == "delete_session":
        ids.pop(operation[1], None)


def _by_name(full: dict[str, Any], insights: Any) -> object:
    return {
        "sessions": {name: dataclasses.replace(s, id="") for name, s in full.items()},
        "insights": insights,
    }


H = Harness[SessionStore]


class SessionStoreFaultTests:
    """Kills and several processes (G-20, G-21)."""

    @needs(Capability.CRASH_SAFE)
    @requirement("G-20", "G-17", "SS-7", "SS-9", "SS-18", "SS-19")
    def test_a_killed_process_leaves_a_prefix_of_its_operations(self, harness: H) -> None:
        """G-20, G-17, SS-7, SS-9, SS-18, SS-19: a process killed at random moments of creates,
        appends, replacements, imports, copies and deletes leaves, each time, the state after
        a prefix of them that holds every acknowledged one; never half a conversation."""
        check_crash_consistency(harness, SessionStoreWorkload())

    @needs(Capability.MULTI_PROCESS)
    @requirement("G-21", "G-18", "SS-4", "SS-8", "SS-23")
    def test_processes_keep_every_rule(self, harness: H) -> None:
        """G-21, G-18, SS-4, SS-8, SS-23: processes creating sessions at once get distinct ids
        and keep their sessions; their messages to one session are all there once, each
        process's in its order."""
        check_processes(harness, SessionStoreWorkload())
