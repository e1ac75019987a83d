"""Thread/run rules shared by the three reference engines (JSON file, SQLite, Redis).

The spec (``spec/thread_run.md``) states the rules; this module is the one executable copy of
them that the reference stores share, so that the engines differ only in how they store and
find records:

* validation before anything is written: :func:`check_thread`, :func:`check_metadata`,
  :func:`check_run`, :func:`check_messages`, :func:`check_query`, :func:`check_checkpoint`
  (TR-3, TR-11, TR-16, TR-17, TR-21, G-3, G-5, G-14);
* the JSON form of records (:func:`thread_to_json`, :func:`run_to_json` and their inverses),
  exact for big integers and ``-0.0`` when serialised with
  :func:`agentstores.spec.values.dump_json`;
* the orders of the listings as sort keys (TR-5, TR-14, TR-15) and paging (TR-6, TR-16);
* the checkpoint's thread upsert (TR-18) and its run transition check (TR-20, TR-21).

Every function raises only :mod:`agentstores.spec.errors` types. The API is stable: engines
import these names directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agentstores.spec.errors import Conflict, InvalidArgument
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
    JSONObject,
    check_id,
    check_json_object,
    check_json_value,
    check_limit_offset,
    check_non_negative_int,
    check_timestamp,
)

__all__ = [
    "check_checkpoint",
    "check_messages",
    "check_metadata",
    "check_query",
    "check_run",
    "check_thread",
    "check_transition",
    "checkpoint_thread_metadata",
    "effective_time",
    "latest_run_key",
    "list_runs_key",
    "list_threads_key",
    "metadata_from_json",
    "metadata_to_json",
    "page_runs",
    "page_threads",
    "run_from_json",
    "run_page",
    "run_to_json",
    "thread_from_json",
    "thread_to_json",
]


# --- validation ---------------------------------------------------------------------------


def _check_optional_text(value: object, *, what: str) -> str | None:
    """None, or a str that every engine can store (no lone surrogate)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be a str or None, not {type(value).__name__}")
    check_json_value(value, what=what)  # rejects lone surrogates
    return value


def _check_optional_time(value: object, *, what: str) -> int | None:
    return None if value is None else check_timestamp(value, what=what)


def _check_status(value: object, *, what: str) -> RunStatus:
    # A plain "running" str compares equal to RunStatus.RUNNING, but the spec's type is the
    # enum (TR-11, TR-17); accepting both would let a record change type across a round trip.
    if not isinstance(value, RunStatus):
        raise InvalidArgument(f"{what} must be a RunStatus, not {type(value).__name__}")
    return value


def check_metadata(metadata: object) -> ThreadMetadata:
    """Return ``metadata`` if it is valid thread metadata (TR-3), else raise InvalidArgument.

    Times are non-negative ints or None, ``title`` a str or None, ``custom`` a JSON object.
    """
    if not isinstance(metadata, ThreadMetadata):
        raise InvalidArgument(f"expected ThreadMetadata, not {type(metadata).__name__}")
    _check_optional_time(metadata.created_at, what="thread created_at")
    _check_optional_time(metadata.updated_at, what="thread updated_at")
    _check_optional_text(metadata.title, what="thread title")
    check_json_object(metadata.custom, what="thread custom")
    return metadata


def check_thread(thread: object) -> Thread:
    """Return ``thread`` if its id (G-1) and metadata (TR-3) are valid, else InvalidArgument."""
    if not isinstance(thread, Thread):
        raise InvalidArgument(f"expected a Thread, not {type(thread).__name__}")
    check_id(thread.id, what="thread id")
    check_metadata(thread.metadata)
    return thread


def check_run(run: object) -> RunRecord:
    """Return ``run`` if every field satisfies TR-11, else raise InvalidArgument."""
    if not isinstance(run, RunRecord):
        raise InvalidArgument(f"expected a RunRecord, not {type(run).__name__}")
    check_id(run.run_id, what="run_id")
    check_id(run.thread_id, what="thread_id")
    check_id(run.agent_id, what="agent_id")
    if run.parent_run_id is not None:
        check_id(run.parent_run_id, what="parent_run_id")
    _check_optional_text(run.termination_code, what="termination_code")
    _check_status(run.status, what="run status")
    check_timestamp(run.created_at, what="run created_at")
    check_timestamp(run.updated_at, what="run updated_at")
    check_non_negative_int(run.steps, what="steps")
    check_non_negative_int(run.input_tokens, what="input_tokens")
    check_non_negative_int(run.output_tokens, what="output_tokens")
    if run.state is not None:
        if not isinstance(run.state, PersistedState):
            raise InvalidArgument(
                f"run state must be a PersistedState or None, not {type(run.state).__name__}"
            )
        check_non_negative_int(run.state.revision, what="state revision")
        check_json_object(run.state.extensions, what="state extensions")
    return run


def check_messages(messages: object) -> tuple[Message, ...]:
    """Return the messages as a tuple if it is a sequence of valid messages (G-12 .. G-14)."""
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
        raise InvalidArgument(f"messages must be a sequence, not {type(messages).__name__}")
    return tuple(check_message(message) for message in messages)


def check_query(query: object) -> tuple[int, int]:
    """Validate a RunQuery (TR-16, TR-17) and return ``(offset, limit)``.

    ``limit`` comes back clamped into ``1 .. LIST_RUNS_MAX_LIMIT``; ``offset`` comes back as
    given, because clamping it needs the total: use ``min(offset, total)`` (or
    :func:`run_page`, which does it).
    """
    if not isinstance(query, RunQuery):
        raise InvalidArgument(f"expected a RunQuery, not {type(query).__name__}")
    limit, offset = check_limit_offset(query.limit, query.offset)
    if query.thread_id is not None:
        check_id(query.thread_id, what="query thread_id")
    if query.status is not None:
        _check_status(query.status, what="query status")
    return offset, max(1, min(limit, LIST_RUNS_MAX_LIMIT))


def check_checkpoint(
    thread_id: object, messages: object, run: object
) -> tuple[str, tuple[Message, ...], RunRecord]:
    """Validate a checkpoint's arguments before anything is read or written (TR-11, TR-21).

    ``run.thread_id`` must equal ``thread_id``, else InvalidArgument.
    """
    checked_id = check_id(thread_id, what="thread id")
    checked_messages = check_messages(messages)
    checked_run = check_run(run)
    if checked_run.thread_id != checked_id:
        raise InvalidArgument(
            f"run {checked_run.run_id!r} belongs to thread {checked_run.thread_id!r}, "
            f"not {checked_id!r}"
        )
    return checked_id, checked_messages, checked_run


# --- checkpoint semantics -------------------------------------------------------------------


def checkpoint_thread_metadata(existing: ThreadMetadata | None, now: int) -> ThreadMetadata:
    """The thread metadata a checkpoint stores (TR-18), given the stored one (None if new).

    A new thread gets ``created_at = updated_at = now`` and nothing else; an existing thread
    keeps title and custom, gets ``updated_at = now`` and ``created_at = now`` only if unset.
    """
    if existing is None:
        return ThreadMetadata(created_at=now, updated_at=now)
    created_at = existing.created_at if existing.created_at is not None else now
    return ThreadMetadata(
        created_at=created_at,
        updated_at=now,
        title=existing.title,
        custom=dict(existing.custom),
    )


def check_transition(stored: RunRecord | None, new: RunRecord) -> None:
    """Check that a checkpoint may overwrite ``stored`` with ``new`` (TR-20, TR-21).

    Raises Conflict if the stored run belongs to another thread (``expected`` = the new
    thread id, ``actual`` = the stored one), or if its status may not become the new one
    (``expected`` = the new status, ``actual`` = the stored status). No stored run: no check.
    """
    if stored is None:
        return
    if stored.thread_id != new.thread_id:
        raise Conflict(
            f"run {new.run_id!r} is stored on thread {stored.thread_id!r}",
            expected=new.thread_id,
            actual=stored.thread_id,
        )
    if not allowed_transition(stored.status, new.status):
        raise Conflict(
            f"run {new.run_id!r} may not go from {stored.status.value} to {new.status.value}",
            expected=new.status,
            actual=stored.status,
        )


# --- orders and paging ----------------------------------------------------------------------


def effective_time(metadata: ThreadMetadata) -> int:
    """The time list_threads sorts by (TR-5): updated_at, else created_at, else 0."""
    if metadata.updated_at is not None:
        return metadata.updated_at
    if metadata.created_at is not None:
        return metadata.created_at
    return 0


def list_threads_key(thread_id: str, metadata: ThreadMetadata) -> tuple[int, str]:
    """Ascending sort key of list_threads (TR-5): effective time descending, then id."""
    return (-effective_time(metadata), thread_id)


def list_runs_key(run: RunRecord) -> tuple[int, str]:
    """Ascending sort key of list_runs (TR-15): created_at, then run_id."""
    return (run.created_at, run.run_id)


def latest_run_key(run: RunRecord) -> tuple[int, int, str]:
    """The key whose maximum is latest_run's answer (TR-14): updated_at, created_at, run_id."""
    return (run.updated_at, run.created_at, run.run_id)


def page_threads(ordered_ids: Sequence[str], offset: int, limit: int) -> list[str]:
    """TR-6 paging of ids already in list_threads order; offset and limit already checked."""
    return list(ordered_ids[offset : offset + limit])


def run_page(items: Sequence[RunRecord], offset: int, total: int) -> RunPage:
    """Build the RunPage of ``items`` read at ``offset`` out of ``total`` selected (TR-16).

    ``offset`` is clamped to ``total`` here, so callers may pass the requested one.
    """
    offset = min(offset, total)
    return RunPage(items=tuple(items), total=total, has_more=offset + len(items) < total)


def page_runs(runs: Sequence[RunRecord], query: RunQuery) -> RunPage:
    """The whole of list_runs (TR-15, TR-16) over an in-memory collection of runs.

    Validates ``query``, filters, sorts and pages; for engines that cannot query natively.
    """
    offset, limit = check_query(query)
    selected = sorted(
        (
            run
            for run in runs
            if (query.thread_id is None or run.thread_id == query.thread_id)
            and (query.status is None or run.status == query.status)
        ),
        key=list_runs_key,
    )
    total = len(selected)
    start = min(offset, total)
    return run_page(selected[start : start + limit], start, total)


# --- JSON form ------------------------------------------------------------------------------
#
# The JSON objects below share nested values with the record they come from; serialise them
# (dump_json) right away rather than keeping them. The *_from_json functions build fresh
# records and re-validate them, so corrupt stored data raises InvalidArgument, never a
# TypeError.


def _object(obj: object, what: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise InvalidArgument(f"{what} must be a JSON object")
    return obj


def _get(data: dict[str, Any], key: str, default: Any = None) -> Any:
    """``data[key]`` typed as Any: the *_from_json functions re-validate every field."""
    return data.get(key, default)


def metadata_to_json(metadata: ThreadMetadata) -> JSONObject:
    """Thread metadata as a JSON object."""
    return {
        "created_at": metadata.created_at,
        "updated_at": metadata.updated_at,
        "title": metadata.title,
        "custom": dict(metadata.custom),
    }


def metadata_from_json(obj: object) -> ThreadMetadata:
    """Inverse of :func:`metadata_to_json`; InvalidArgument if malformed."""
    data = _object(obj, "thread metadata")
    return check_metadata(
        ThreadMetadata(
            created_at=_get(data, "created_at"),
            updated_at=_get(data, "updated_at"),
            title=_get(data, "title"),
            custom=_get(data, "custom", {}),
        )
    )


def thread_to_json(thread: Thread) -> JSONObject:
    """A thread as ``{"id": ..., "metadata": {...}}``."""
    return {"id": thread.id, "metadata": metadata_to_json(thread.metadata)}


def thread_from_json(obj: object) -> Thread:
    """Inverse of :func:`thread_to_json`; InvalidArgument if malformed."""
    data = _object(obj, "thread")
    return check_thread(
        Thread(id=_get(data, "id"), metadata=metadata_from_json(_get(data, "metadata")))
    )


def run_to_json(run: RunRecord) -> JSONObject:
    """A run record as a JSON object (status as its string value)."""
    state = (
        None
        if run.state is None
        else {"revision": run.state.revision, "extensions": dict(run.state.extensions)}
    )
    return {
        "run_id": run.run_id,
        "thread_id": run.thread_id,
        "agent_id": run.agent_id,
        "parent_run_id": run.parent_run_id,
        "status": run.status.value,
        "termination_code": run.termination_code,
        "created_at": run.created_at,
        "updated_at": run.updated_at,
        "steps": run.steps,
        "input_tokens": run.input_tokens,
        "output_tokens": run.output_tokens,
        "state": state,
    }


def run_from_json(obj: object) -> RunRecord:
    """Inverse of :func:`run_to_json`; InvalidArgument if malformed."""
    data = _object(obj, "run")
    try:
        status = RunStatus(_get(data, "status"))
    except ValueError:
        raise InvalidArgument(f"unknown run status {_get(data, 'status')!r}") from None
    state_data = _get(data, "state")
    state = None
    if state_data is not None:
        state_obj = _object(state_data, "run state")
        state = PersistedState(
            revision=_get(state_obj, "revision"),
            extensions=_get(state_obj, "extensions", {}),
        )
    record = RunRecord(
        run_id=_get(data, "run_id"),
        thread_id=_get(data, "thread_id"),
        agent_id=_get(data, "agent_id"),
        created_at=_get(data, "created_at"),
        updated_at=_get(data, "updated_at"),
        status=status,
        parent_run_id=_get(data, "parent_run_id"),
        termination_code=_get(data, "termination_code"),
        steps=_get(data, "steps", 0),
        input_tokens=_get(data, "input_tokens", 0),
        output_tokens=_get(data, "output_tokens", 0),
        state=state,
    )
    return check_run(record)
