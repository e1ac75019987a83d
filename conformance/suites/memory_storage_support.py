"""What the memory-storage suite modules share: exact comparison, error kinds, record
builders, whole-store snapshots, and a synchronous way to keep a store open across steps.

Nothing here is a test.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeAlias

from agentstores.spec.errors import (
    AlreadyExists,
    Conflict,
    InvalidArgument,
    NotFound,
    NotSupported,
    StorageUnavailable,
    StoreError,
)
from agentstores.spec.memory_storage import ConversationMessage, MemoryStorage, UserMemory

from ..backend import StoreContext
from ..compare import same_value
from ..harness import Harness
from ..models.memory_storage import MemoryStorageModel

__all__ = [
    "ERROR_KINDS",
    "H",
    "Snapshot",
    "Store",
    "assert_same",
    "error_kind",
    "model_snapshot",
    "new_memory",
    "opened",
    "stamped",
    "store_snapshot",
    "texts_of",
]

#: The store type the suite's tests drive, and their harness type.
Store: TypeAlias = MemoryStorage
H: TypeAlias = Harness[Any]

#: The error classes of G-10, most specific first.
ERROR_KINDS: tuple[type[StoreError], ...] = (
    NotFound,
    AlreadyExists,
    Conflict,
    InvalidArgument,
    NotSupported,
    StorageUnavailable,
)


def error_kind(error: BaseException) -> type[BaseException]:
    """The G-10 class ``error`` belongs to, or its own type if it is none of them."""
    for kind in ERROR_KINDS:
        if isinstance(error, kind):
            return kind
    return type(error)


def assert_same(actual: object, expected: object, what: str) -> None:
    """Fail unless ``actual`` is exactly ``expected`` (types, ``-0.0``, tuples; G-4, G-14)."""
    if not same_value(actual, expected):
        raise AssertionError(f"{what}:\n  got      {actual!r}\n  expected {expected!r}")


@contextmanager
def opened(harness: Harness[Any], context: StoreContext | None = None) -> Iterator[MemoryStorage]:
    """Keep a store open across several ``harness.run`` calls; it is closed on exit."""
    manager = harness.open(context)
    store: MemoryStorage = harness.run(manager.__aenter__())
    try:
        yield store
    finally:
        harness.run(manager.__aexit__(None, None, None))


# --- whole-store snapshots -----------------------------------------------------------------

#: Everything a store holds for some users and sessions, read through the public operations:
#: ``("memories", user)`` -> last_n list, ``("summary", session, user)`` -> summary or None,
#: ``("messages", session, user)`` -> the whole conversation.
Snapshot = dict[tuple[str, ...], Any]


async def store_snapshot(
    store: MemoryStorage, users: Sequence[str], sessions: Sequence[str]
) -> Snapshot:
    """Read every memory of ``users`` and every summary and conversation of their pairs."""
    snapshot: Snapshot = {}
    for user in users:
        snapshot[("memories", user)] = await store.get_user_memories(user)
        for session in sessions:
            snapshot[("summary", session, user)] = await store.get_session_summary(session, user)
            snapshot[("messages", session, user)] = await store.get_messages(session, user)
    return snapshot


def model_snapshot(
    model: MemoryStorageModel, users: Sequence[str], sessions: Sequence[str]
) -> Snapshot:
    """What :func:`store_snapshot` must read from a store in the model's state."""
    snapshot: Snapshot = {}
    for user in users:
        snapshot[("memories", user)] = model.get_user_memories(user)
        for session in sessions:
            snapshot[("summary", session, user)] = model.get_session_summary(session, user)
            snapshot[("messages", session, user)] = model.get_messages(session, user)
    return snapshot


# --- record builders ---------------------------------------------------------------------


def new_memory(memory_id: str, user: str, text: str, given_input: str = "") -> UserMemory:
    """A memory to save (the store stamps its times)."""
    return UserMemory(memory_id, user, text, given_input)


def stamped(saved: UserMemory, created: int, updated: int) -> UserMemory:
    """``saved`` with the times a store must have stamped (MS-2)."""
    return UserMemory(saved.id, saved.user_id, saved.memory, saved.input, created, updated)


def texts_of(records: Sequence[ConversationMessage]) -> list[str]:
    """The text of the first part of each stored message."""
    return [str(r.message.content[0]["text"]) for r in records]
