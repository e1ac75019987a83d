"""The executable model of the thread/run family: ``spec/thread_run.md`` as plain Python.

:class:`ThreadRunModel` is synchronous and keeps everything in dicts. It is written to be read
next to the spec: each method says which requirement it implements, validates every argument
before it changes anything (so a bad argument raises ``InvalidArgument`` with nothing written),
and copies records on the way in and out (G-7). The conformance suite runs random operation
sequences against it and a backend and requires both to agree, result for result and error
for error.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import replace
from typing import TypeVar

from agentstores.spec.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from agentstores.spec.messages import Message, check_message
from agentstores.spec.thread_run import (
    LIST_RUNS_MAX_LIMIT,
    PersistedState,
    RunPage,
    RunQuery,
    RunRecord,
    RunStatus,
    Thread,
    ThreadMetadata,
    allowed_transition,
)
from agentstores.spec.values import (
    MAX_U64,
    Clock,
    check_id,
    check_json_object,
    check_json_value,
    check_limit_offset,
    check_non_negative_int,
    check_timestamp,
)

__all__ = [
    "ThreadRunModel",
    "check_messages",
    "check_run_query",
    "check_run_record",
    "check_thread",
    "check_thread_metadata",
    "effective_time",
]

T = TypeVar("T")


def _copy(value: T) -> T:
    # Records are frozen dataclasses, but the dicts inside them are not (G-7).
    return copy.deepcopy(value)


def _check_optional_str(value: object, *, what: str) -> None:
    if value is not None and not isinstance(value, str):
        raise InvalidArgument(f"{what} must be a str or None, not {type(value).__name__}")
    check_json_value(value, what=what)  # a lone surrogate is no storable text (G-5)


def _check_status(value: object, *, what: str = "status") -> RunStatus:
    if not isinstance(value, RunStatus):
        raise InvalidArgument(f"{what} must be a RunStatus, not {value!r}")
    return value


def check_thread_metadata(metadata: object) -> ThreadMetadata:
    """TR-3: times are non-negative ints or None, the title a str or None, custom JSON."""
    if not isinstance(metadata, ThreadMetadata):
        raise InvalidArgument(f"expected ThreadMetadata, not {type(metadata).__name__}")
    for name in ("created_at", "updated_at"):
        value = getattr(metadata, name)
        if value is not None:
            check_timestamp(value, what=name)
    _check_optional_str(metadata.title, what="title")
    check_json_object(metadata.custom, what="custom")
    return metadata


def check_thread(thread: object) -> Thread:
    """A thread's id is an id (G-1) and its metadata valid (TR-3)."""
    if not isinstance(thread, Thread):
        raise InvalidArgument(f"expected a Thread, not {type(thread).__name__}")
    check_id(thread.id, what="thread id")
    check_thread_metadata(thread.metadata)
    return thread


def check_messages(messages: object) -> list[Message]:
    """A sequence (not a str) of valid messages (G-14)."""
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
        raise InvalidArgument(f"messages must be a sequence, not {type(messages).__name__}")
    return [check_message(message) for message in messages]


def check_run_record(run: object) -> RunRecord:
    """TR-11: every field of a run record in its domain."""
    if not isinstance(run, RunRecord):
        raise InvalidArgument(f"expected a RunRecord, not {type(run).__name__}")
    check_id(run.run_id, what="run_id")
    check_id(run.thread_id, what="thread_id")
    check_id(run.agent_id, what="agent_id")
    if run.parent_run_id is not None:
        check_id(run.parent_run_id, what="parent_run_id")
    _check_status(run.status)
    _check_optional_str(run.termination_code, what="termination_code")
    check_timestamp(run.created_at, what="created_at")
    check_timestamp(run.updated_at, what="updated_at")
    for name in ("steps", "input_tokens", "output_tokens"):
        check_non_negative_int(getattr(run, name), what=name, maximum=MAX_U64)
    if run.state is not None:
        if not isinstance(run.state, PersistedState):
            raise InvalidArgument(f"state must be a PersistedState, not {run.state!r}")
        check_non_negative_int(run.state.revision, what="state.revision", maximum=MAX_U64)
        check_json_object(run.state.extensions, what="state.extensions")
    return run


def check_run_query(query: object) -> RunQuery:
    """TR-16, TR-17: non-negative paging, an id or None, a status or None."""
    if not isinstance(query, RunQuery):
        raise InvalidArgument(f"expected a RunQuery, not {type(query).__name__}")
    check_limit_offset(query.limit, query.offset)
    if query.thread_id is not None:
        check_id(query.thread_id, what="thread_id")
    if query.status is not None:
        _check_status(query.status)
    return query


def effective_time(metadata: ThreadMetadata) -> int:
    """TR-5: ``updated_at``, or else ``created_at``, or else 0."""
    if metadata.updated_at is not None:
        return metadata.updated_at
    if metadata.created_at is not None:
        return metadata.created_at
    return 0


class ThreadRunModel:
    """An in-memory thread/run store that follows ``spec/thread_run.md`` to the letter.

    Args:
        clock: the clock that stamps checkpoints (TR-18, G-6).
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._threads: dict[str, ThreadMetadata] = {}
        self._messages: dict[str, list[Message]] = {}
        self._runs: dict[str, RunRecord] = {}

    def _existing(self, thread_id: object) -> str:
        thread_id = check_id(thread_id, what="thread_id")
        if thread_id not in self._threads:
            raise NotFound(f"no thread {thread_id!r}")
        return thread_id

    # --- threads (TR-1 .. TR-6) ----------------------------------------------------------

    def load_thread(self, thread_id: str) -> Thread | None:
        """TR-1."""
        check_id(thread_id, what="thread_id")
        metadata = self._threads.get(thread_id)
        return None if metadata is None else Thread(thread_id, _copy(metadata))

    def save_thread(self, thread: Thread) -> None:
        """TR-2, TR-3: store the metadata as given; messages and runs stay."""
        check_thread(thread)
        self._threads[thread.id] = _copy(thread.metadata)
        self._messages.setdefault(thread.id, [])

    def delete_thread(self, thread_id: str) -> None:
        """TR-4: the thread, its messages and every run whose ``thread_id`` it is."""
        check_id(thread_id, what="thread_id")
        self._threads.pop(thread_id, None)
        self._messages.pop(thread_id, None)
        self._runs = {k: r for k, r in self._runs.items() if r.thread_id != thread_id}

    def list_threads(self, offset: int = 0, limit: int = 50) -> list[str]:
        """TR-5, TR-6: effective time descending, then id ascending; no upper clamp."""
        limit, offset = check_limit_offset(limit, offset)
        ordered = sorted(self._threads, key=lambda t: (-effective_time(self._threads[t]), t))
        return ordered[offset : offset + limit]

    # --- messages (TR-7 .. TR-10) --------------------------------------------------------

    def load_messages(self, thread_id: str) -> list[Message] | None:
        """TR-7."""
        check_id(thread_id, what="thread_id")
        if thread_id not in self._threads:
            return None
        return _copy(self._messages[thread_id])

    def save_messages(self, thread_id: str, messages: Sequence[Message]) -> None:
        """TR-8: replace the list; NotFound (nothing created) for a missing thread."""
        check_id(thread_id, what="thread_id")
        checked = check_messages(messages)
        self._messages[self._existing(thread_id)] = _copy(checked)

    def delete_messages(self, thread_id: str) -> None:
        """TR-9."""
        self._messages[self._existing(thread_id)] = []

    def update_thread_metadata(self, thread_id: str, metadata: ThreadMetadata) -> None:
        """TR-10: replace the metadata; NotFound (nothing created) for a missing thread."""
        check_id(thread_id, what="thread_id")
        check_thread_metadata(metadata)
        self._threads[self._existing(thread_id)] = _copy(metadata)

    # --- runs (TR-11 .. TR-17) -----------------------------------------------------------

    def create_run(self, record: RunRecord) -> None:
        """TR-11, TR-12: any status, any thread (even a missing one), a new run_id."""
        check_run_record(record)
        if record.run_id in self._runs:
            raise AlreadyExists(f"run {record.run_id!r} exists")
        self._runs[record.run_id] = _copy(record)

    def load_run(self, run_id: str) -> RunRecord | None:
        """TR-13."""
        check_id(run_id, what="run_id")
        return _copy(self._runs.get(run_id))

    def latest_run(self, thread_id: str) -> RunRecord | None:
        """TR-14: highest updated_at, then highest created_at, then highest run_id."""
        check_id(thread_id, what="thread_id")
        runs = [r for r in self._runs.values() if r.thread_id == thread_id]
        if not runs:
            return None
        return _copy(max(runs, key=lambda r: (r.updated_at, r.created_at, r.run_id)))

    def list_runs(self, query: RunQuery) -> RunPage:
        """TR-15, TR-16: filter, order by (created_at, run_id), clamp, page."""
        check_run_query(query)
        selected = sorted(
            (
                r
                for r in self._runs.values()
                if (query.thread_id is None or r.thread_id == query.thread_id)
                and (query.status is None or r.status == query.status)
            ),
            key=lambda r: (r.created_at, r.run_id),
        )
        total = len(selected)
        limit = min(max(query.limit, 1), LIST_RUNS_MAX_LIMIT)
        offset = min(query.offset, total)
        items = tuple(_copy(selected[offset : offset + limit]))
        return RunPage(items=items, total=total, has_more=offset + len(items) < total)

    # --- checkpoints (TR-18 .. TR-21) ----------------------------------------------------

    def checkpoint(self, thread_id: str, messages: Sequence[Message], run: RunRecord) -> None:
        """TR-18 .. TR-21: every check first, then all three writes (atomic by construction)."""
        check_id(thread_id, what="thread_id")
        checked = check_messages(messages)
        check_run_record(run)
        if run.thread_id != thread_id:
            raise InvalidArgument(f"run.thread_id {run.thread_id!r} is not {thread_id!r}")
        stored = self._runs.get(run.run_id)
        if stored is not None and stored.thread_id != thread_id:
            raise Conflict(
                f"run {run.run_id!r} belongs to thread {stored.thread_id!r}",
                expected=thread_id,
                actual=stored.thread_id,
            )
        if stored is not None and not allowed_transition(stored.status, run.status):
            raise Conflict(
                f"run {run.run_id!r} cannot go from {stored.status} to {run.status}",
                expected=run.status,
                actual=stored.status,
            )
        now = self.clock()
        old = self._threads.get(thread_id)
        if old is None:
            metadata = ThreadMetadata(created_at=now, updated_at=now)
        else:
            created = old.created_at if old.created_at is not None else now
            metadata = replace(old, created_at=created, updated_at=now)
        self._threads[thread_id] = metadata
        self._messages[thread_id] = _copy(checked)
        self._runs[run.run_id] = _copy(run)
