"""The thread/run family (seed 001, awaken's ``ThreadStore``/``RunStore``/``ThreadRunStore``).

Requirement IDs ``TR-n`` refer to ``thread_run.md`` beside this module, which is the contract;
this module is its typed form. A thread holds metadata; its messages and its runs are kept
beside it. ``checkpoint`` writes a thread's messages and one run atomically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from .messages import Message

__all__ = [
    "LIST_RUNS_DEFAULT_LIMIT",
    "LIST_RUNS_MAX_LIMIT",
    "PersistedState",
    "RunPage",
    "RunQuery",
    "RunRecord",
    "RunStatus",
    "RunStore",
    "Thread",
    "ThreadMetadata",
    "ThreadRunStore",
    "ThreadStore",
    "allowed_transition",
]

#: TR-16: the page size of a RunQuery that names none.
LIST_RUNS_DEFAULT_LIMIT = 50
#: TR-16: limits are clamped into 1 .. LIST_RUNS_MAX_LIMIT.
LIST_RUNS_MAX_LIMIT = 200


class RunStatus(StrEnum):
    """Where a run is in its life (TR-20)."""

    RUNNING = "running"
    WAITING = "waiting"
    DONE = "done"


_TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.RUNNING: frozenset({RunStatus.RUNNING, RunStatus.WAITING, RunStatus.DONE}),
    RunStatus.WAITING: frozenset({RunStatus.WAITING, RunStatus.RUNNING, RunStatus.DONE}),
    RunStatus.DONE: frozenset({RunStatus.DONE}),
}


def allowed_transition(old: RunStatus, new: RunStatus) -> bool:
    """Whether a stored run in status ``old`` may be overwritten with status ``new`` (TR-20)."""
    return new in _TRANSITIONS[old]


@dataclass(frozen=True)
class ThreadMetadata:
    """A thread's metadata, stored exactly as given (TR-2).

    Times are ms since the epoch (G-6); ``custom`` is a JSON object (G-4).
    """

    created_at: int | None = None
    updated_at: int | None = None
    title: str | None = None
    custom: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Thread:
    """A persistent conversation: an id in the id domain (G-1) and its metadata."""

    id: str
    metadata: ThreadMetadata = field(default_factory=ThreadMetadata)


@dataclass(frozen=True)
class PersistedState:
    """A run's saved agent state: a revision (u64) and JSON extensions (TR-11)."""

    revision: int = 0
    extensions: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunRecord:
    """One run of an agent on a thread (TR-11). Times are ms since the epoch."""

    run_id: str
    thread_id: str
    agent_id: str
    created_at: int
    updated_at: int
    status: RunStatus = RunStatus.RUNNING
    parent_run_id: str | None = None
    termination_code: str | None = None
    steps: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    state: PersistedState | None = None


@dataclass(frozen=True)
class RunQuery:
    """A page request over runs (TR-15, TR-16)."""

    offset: int = 0
    limit: int = LIST_RUNS_DEFAULT_LIMIT
    thread_id: str | None = None
    status: RunStatus | None = None


@dataclass(frozen=True)
class RunPage:
    """One page of runs: ``items``, the ``total`` matching the filters, and ``has_more``."""

    items: tuple[RunRecord, ...]
    total: int
    has_more: bool


@runtime_checkable
class ThreadStore(Protocol):
    """Threads with metadata and whole message lists (TR-1 .. TR-10)."""

    async def load_thread(self, thread_id: str) -> Thread | None:
        """The thread, or None if there is none (TR-1)."""
        ...

    async def save_thread(self, thread: Thread) -> None:
        """Create or replace the thread's metadata exactly as given (TR-2); messages stay."""
        ...

    async def delete_thread(self, thread_id: str) -> None:
        """Delete the thread, its messages and its runs; a missing thread is a no-op (TR-4)."""
        ...

    async def list_threads(self, offset: int = 0, limit: int = 50) -> list[str]:
        """Thread ids, most recently updated first, ties by id (TR-5, TR-6)."""
        ...

    async def load_messages(self, thread_id: str) -> list[Message] | None:
        """The thread's messages in saved order; None if the thread does not exist (TR-7)."""
        ...

    async def save_messages(self, thread_id: str, messages: Sequence[Message]) -> None:
        """Replace the thread's messages (TR-8). Raises NotFound for a missing thread."""
        ...

    async def delete_messages(self, thread_id: str) -> None:
        """Empty the thread's message list (TR-9). Raises NotFound for a missing thread."""
        ...

    async def update_thread_metadata(self, thread_id: str, metadata: ThreadMetadata) -> None:
        """Replace a thread's metadata (TR-10). Raises NotFound for a missing thread."""
        ...


@runtime_checkable
class RunStore(Protocol):
    """Run records with paging and filters (TR-11 .. TR-18)."""

    async def create_run(self, record: RunRecord) -> None:
        """Store a new run (TR-12). Raises AlreadyExists if the run id is taken."""
        ...

    async def load_run(self, run_id: str) -> RunRecord | None:
        """The run, or None (TR-13)."""
        ...

    async def latest_run(self, thread_id: str) -> RunRecord | None:
        """The thread's run with the highest ``updated_at`` (ties: TR-14), or None."""
        ...

    async def list_runs(self, query: RunQuery) -> RunPage:
        """Runs matching the filters, oldest created first, paged and clamped (TR-15, TR-16)."""
        ...


@runtime_checkable
class ThreadRunStore(ThreadStore, RunStore, Protocol):
    """Threads and runs in one store, with an atomic checkpoint (TR-19 .. TR-21)."""

    async def checkpoint(self, thread_id: str, messages: Sequence[Message], run: RunRecord) -> None:
        """Upsert the thread, replace its messages and upsert the run, all or nothing (TR-19)."""
        ...

    async def close(self) -> None:
        """Release the store's resources; idempotent (G-16)."""
        ...
