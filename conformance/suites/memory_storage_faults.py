"""Faults of the memory-storage family: kills mid-operation (``crash_safe``) and several
processes (``multi_process``), through :mod:`agentstores.conformance.faults`.

The crash workload covers memories (with the atomic delete of several ids, MS-11), summaries,
messages and both retention clean-ups; a kill may never leave half of a multi-record change.
The processes append to one conversation, race to save the same memory ids (exactly one wins,
MS-3) and save memories of their own: nothing is lost or duplicated and each process's messages
keep its order (MS-18).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from typing import Any

from agentstores.spec.errors import AlreadyExists
from agentstores.spec.memory_storage import (
    ConversationMessage,
    MemoryStorage,
    SessionSummary,
    UserMemory,
)
from agentstores.spec.messages import Message

from ..backend import Capability
from ..clock import DEFAULT_START_MS, ManualClock
from ..faults import (
    Operation,
    Workload,
    check_crash_consistency,
    check_processes,
    random_messages,
)
from ..harness import Harness
from ..markers import needs, requirement
from ..models.memory_storage import MemoryStorageModel
from .memory_storage_support import model_snapshot, store_snapshot

__all__ = ["MemoryStorageFaultTests", "MemoryStorageWorkload"]

_USERS = ("u1", "u/2")
_SESSIONS = ("s1", "s:2")
#: Operations that take the time as their last argument in the model (MS-2).
_STAMPED = ("save_user_memory", "update_user_memory", "save_session_summary")


def _text(rng: random.Random, label: str) -> str:
    return f"{label} " + " ".join(rng.choice(("likes tea", "ünïcode", "y" * 50)) for _ in range(20))


def _without_message_ids(snapshot: dict[tuple[str, ...], Any]) -> dict[tuple[str, ...], Any]:
    # The store assigns message ids (MS-17) that the model cannot know; all else must match.
    return {
        key: [dataclasses.replace(m, id="") for m in value] if key[0] == "messages" else value
        for key, value in snapshot.items()
    }


class MemoryStorageWorkload(Workload[MemoryStorage, MemoryStorageModel]):
    """Memory-storage operations for the fault checks."""

    def operations(self, rng: random.Random, count: int) -> list[Operation]:
        memories: dict[str, list[str]] = {user: [] for user in _USERS}
        ops: list[Operation] = []
        for index in range(count):
            user, session = rng.choice(_USERS), rng.choice(_SESSIONS)
            mine = memories[user]
            roll = rng.random()
            if roll < 0.35:
                for message in random_messages(rng, f"op{index}", most=3) or [
                    Message.text("user", f"op{index}")
                ]:
                    ops.append(("save_message", session, user, message))
            elif roll < 0.55:
                mine.append(f"m{index}")
                memory = UserMemory(f"m{index}", user, _text(rng, f"op{index}"), f"in{index}")
                ops.append(("save_user_memory", memory))
            elif roll < 0.62 and mine:
                memory = UserMemory(rng.choice(mine), user, _text(rng, f"op{index}"))
                ops.append(("update_user_memory", memory))
            elif roll < 0.70 and mine:
                chosen = rng.sample(mine, rng.randint(1, len(mine)))
                ops.append(("delete_user_memories_by_ids", user, [*chosen, "unknown"]))
                mine[:] = [m for m in mine if m not in chosen]
            elif roll < 0.73:
                mine.clear()
                ops.append(("clear_user_memories", user))
            elif roll < 0.83:
                summary = SessionSummary(session, user, _text(rng, f"op{index}"))
                ops.append(("save_session_summary", summary))
            elif roll < 0.86:
                ops.append(("delete_session_summary", session, user))
            elif roll < 0.92:
                ops.append(("cleanup_messages_by_limit", user, session, rng.randint(1, 6)))
            elif roll < 0.96:
                before = DEFAULT_START_MS + max(0, index - rng.randrange(1, 30))
                ops.append(("cleanup_old_messages", user, before))
            else:
                ops.append(("delete_messages", session, user))
        return ops[:count]

    def new_model(self) -> MemoryStorageModel:
        return MemoryStorageModel()

    def apply_to_model(self, model: MemoryStorageModel, operation: Operation, now: int) -> None:
        kind, *args = operation
        if kind == "save_message":
            session, user, message = args
            model.save_message(session, user, message, now, f"model-{now}")
        elif kind in _STAMPED:
            getattr(model, kind)(*args, now)
        else:
            getattr(model, kind)(*args)

    async def apply_to_store(self, store: MemoryStorage, operation: Operation, scope: Any) -> None:
        await getattr(store, operation[0])(*operation[1:])

    async def read_store(self, store: MemoryStorage) -> object:
        return _without_message_ids(await store_snapshot(store, _USERS, _SESSIONS))

    def read_model(self, model: MemoryStorageModel) -> object:
        return _without_message_ids(model_snapshot(model, _USERS, _SESSIONS))

    # --- several processes ---------------------------------------------------------------

    async def process(
        self, store: MemoryStorage, worker: int, rounds: int, clock: ManualClock
    ) -> object:
        won: list[bool] = []
        for round_number in range(rounds):
            clock.advance(1)
            label = f"w{worker}-{round_number}"
            await store.save_message("shared", "u", Message.text("user", label))
            await store.save_user_memory(UserMemory(f"own-{label}", "u", label))
            try:
                await store.save_user_memory(UserMemory(f"race-{round_number}", "u", label))
                won.append(True)
            except AlreadyExists:
                won.append(False)
        return won

    async def check_processes(
        self, store: MemoryStorage, results: Sequence[Any], rounds: int
    ) -> None:
        workers = len(results)
        memories = {m.id: m for m in await store.get_user_memories("u")}
        for round_number in range(rounds):
            winners = [w for w in range(workers) if results[w][round_number]]
            assert len(winners) == 1, (
                f"MS-3, G-21: memory race-{round_number} was saved by processes {winners}; "
                "exactly one may succeed"
            )
            race = memories.get(f"race-{round_number}")
            assert race is not None and race.memory == f"w{winners[0]}-{round_number}", race
        labels = [f"w{w}-{r}" for w in range(workers) for r in range(rounds)]
        own = sorted(key for key in memories if key.startswith("own-"))
        assert own == sorted(f"own-{label}" for label in labels), f"G-21: memories {own}"
        records = await store.get_messages("shared", "u")
        texts = [_first_text(record) for record in records]
        assert sorted(texts) == sorted(labels), f"G-21: messages lost or duplicated: {texts}"
        assert len({record.id for record in records}) == len(records), "MS-17: reused ids"
        for worker in range(workers):
            mine = [text for text in texts if text.startswith(f"w{worker}-")]
            assert mine == [f"w{worker}-{r}" for r in range(rounds)], (
                f"MS-18, G-21: process {worker}'s messages out of its order: {mine}"
            )
        assert await store.get_message_count("u", "shared") == workers * rounds


def _first_text(record: ConversationMessage) -> str:
    return str(record.message.content[0]["text"])


H = Harness[MemoryStorage]


class MemoryStorageFaultTests:
    """Kills and several processes (G-20, G-21)."""

    @needs(Capability.CRASH_SAFE)
    @requirement("G-20", "G-17", "MS-11", "MS-23")
    def test_a_killed_process_leaves_a_prefix_of_its_operations(self, harness: H) -> None:
        """G-20, G-17, MS-11, MS-23: a process killed at random moments of memory, summary,
        message and retention operations leaves, each time, the state after a prefix of them
        that holds every acknowledged one; never half of a multi-record delete."""
        check_crash_consistency(harness, MemoryStorageWorkload())

    @needs(Capability.MULTI_PROCESS)
    @requirement("G-21", "G-18", "MS-3", "MS-17", "MS-18", "MS-25")
    def test_processes_keep_every_rule(self, harness: H) -> None:
        """G-21, G-18, MS-3, MS-17, MS-18, MS-25: processes racing to save one memory id have
        exactly one winner; their messages to one conversation are all there once, with
        distinct ids, each process's in its order."""
        check_processes(harness, MemoryStorageWorkload())
