"""What the thread/run suite modules share: record builders, strategies, exact comparison,
snapshots of a whole store, and a synchronous way to keep a store open across steps.

Nothing here is a test. The strategies follow the kit's conventions (functions, keyword-only
bounds, a docstring naming the rule they exercise); the comparison is stricter than ``==``,
because ``==`` cannot see the difference between ``1``, ``1.0`` and ``True`` or between
``0.0`` and ``-0.0`` (G-4).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from typing import Any

from hypothesis import strategies as st

from agentstores.spec.errors import (
    AlreadyExists,
    Conflict,
    InvalidArgument,
    NotFound,
    NotSupported,
    StorageUnavailable,
)
from agentstores.spec.messages import Message
from agentstores.spec.thread_run import (
    LIST_RUNS_MAX_LIMIT,
    PersistedState,
    RunQuery,
    RunRecord,
    RunStatus,
    Thread,
    ThreadMetadata,
    ThreadRunStore,
)
from agentstores.spec.values import MAX_INT_BITS, MAX_JSON_DEPTH, MAX_U64

from ..backend import StoreContext
from ..harness import Harness
from ..models.thread_run import ThreadRunModel
from ..strategies import json_objects, plain_ids, timestamps

__all__ = [
    "ERROR_KINDS",
    "LIST_ALL",
    "Snapshot",
    "assert_exact",
    "canonical",
    "counters",
    "error_kind",
    "make_run",
    "model_snapshot",
    "nested_lists",
    "opened",
    "persisted_states",
    "rich_json_object",
    "run_queries",
    "run_records",
    "run_statuses",
    "run_times",
    "scribble",
    "store_snapshot",
    "thread_metadatas",
    "thread_times",
    "titles",
]

#: A limit large enough for every listing a suite test makes (list_threads has no clamp, TR-6).
LIST_ALL = 1_000_000

# --- exact comparison (G-4, G-14, TR-11) -------------------------------------------------


def canonical(value: object) -> object:
    """A form of ``value`` in which equal means exactly equal.

    Unlike ``==``, it tells ``True`` from ``1`` from ``1.0``, ``-0.0`` from ``0.0``, a list
    from a tuple, and an enum member from its plain value; dict key order does not count.
    """
    if value is None:
        return None
    if isinstance(value, Enum):
        return (type(value).__name__, value.value)
    if isinstance(value, bool | int | str):
        return (type(value).__name__, value)
    if isinstance(value, float):
        return ("float", value.hex() if math.isfinite(value) else repr(value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = dataclasses.fields(value)
        return (
            type(value).__name__,
            tuple((f.name, canonical(getattr(value, f.name))) for f in fields),
        )
    if isinstance(value, Mapping):
        items = [(canonical(k), canonical(v)) for k, v in value.items()]
        return ("dict", tuple(sorted(items, key=repr)))
    if isinstance(value, list | tuple):
        return (type(value).__name__, tuple(canonical(item) for item in value))
    return ("object", type(value).__name__, repr(value))


def _difference(actual: object, expected: object, path: str) -> str:
    both_records = (
        dataclasses.is_dataclass(actual)
        and type(actual) is type(expected)
        and not isinstance(actual, type)
    )
    if both_records:
        for f in dataclasses.fields(actual):  # type: ignore[arg-type]
            a, e = getattr(actual, f.name), getattr(expected, f.name)
            if canonical(a) != canonical(e):
                return _difference(a, e, f"{path}.{f.name}")
    if isinstance(actual, Mapping) and isinstance(expected, Mapping):
        for key in sorted(set(actual) | set(expected), key=repr):
            if key not in actual:
                return f"{path}[{key!r}] is missing; expected {expected[key]!r}"
            if key not in expected:
                return f"{path}[{key!r}] = {actual[key]!r} should not be there"
            if canonical(actual[key]) != canonical(expected[key]):
                return _difference(actual[key], expected[key], f"{path}[{key!r}]")
    same_sequence = isinstance(actual, list | tuple) and type(actual) is type(expected)
    if same_sequence and len(actual) == len(expected):  # type: ignore[arg-type]
        for index, (a, e) in enumerate(zip(actual, expected, strict=True)):  # type: ignore[call-overload]
            if canonical(a) != canonical(e):
                return _difference(a, e, f"{path}[{index}]")
    return f"{path}: got {actual!r}, expected {expected!r}"


def assert_exact(actual: object, expected: object, what: str = "result") -> None:
    """Fail unless ``actual`` is exactly ``expected`` (see :func:`canonical`); name the spot."""
    if canonical(actual) != canonical(expected):
        raise AssertionError(f"{what} differs from the spec: {_difference(actual, expected, what)}")


#: The error classes of G-10, most specific first.
ERROR_KINDS: tuple[type[Exception], ...] = (
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


def scribble(value: object) -> None:
    """Mutate every dict and list reachable from ``value``.

    The suite scribbles over records a store returned and over arguments it was given, after
    the call: a store that shares them with its storage (G-7) then shows the scribbles later.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            scribble(getattr(value, f.name))
    elif isinstance(value, dict):
        for item in value.values():
            scribble(item)
        value.clear()
        value["scribbled"] = True
    elif isinstance(value, list):
        for item in value:
            scribble(item)
        value.append("scribbled")
    elif isinstance(value, tuple):
        for item in value:
            scribble(item)


# --- records and strategies --------------------------------------------------------------


def make_run(run_id: str, thread_id: str = "t", **fields: Any) -> RunRecord:
    """A run record with readable defaults: agent ``agent``, created and updated at 1."""
    values: dict[str, Any] = {"agent_id": "agent", "created_at": 1, "updated_at": 1}
    values.update(fields)
    return RunRecord(run_id=run_id, thread_id=thread_id, **values)


def thread_times() -> st.SearchStrategy[int]:
    """Thread times from a tiny range, so that equal effective times and the id tie-break
    happen (TR-5), now and then a time from anywhere in the domain (G-6)."""
    return st.one_of(st.integers(min_value=0, max_value=4), timestamps())


def run_times() -> st.SearchStrategy[int]:
    """Run times from a range so small that runs of one thread tie on both created_at and
    updated_at, and the run_id tie-breaks decide (TR-14, TR-15)."""
    return st.one_of(st.integers(min_value=0, max_value=2), timestamps())


def titles() -> st.SearchStrategy[str]:
    """Titles and other free strings: any valid Unicode text (TR-3)."""
    return st.text(alphabet=st.characters(codec="utf-8"), max_size=12)


def thread_metadatas() -> st.SearchStrategy[ThreadMetadata]:
    """Valid thread metadata (TR-3): optional times, optional title, JSON custom fields (G-4)."""
    return st.builds(
        ThreadMetadata,
        created_at=st.none() | thread_times(),
        updated_at=st.none() | thread_times(),
        title=st.none() | titles(),
        custom=json_objects(max_size=2),
    )


def run_statuses() -> st.SearchStrategy[RunStatus]:
    """Every run status (TR-20)."""
    return st.sampled_from(list(RunStatus))


def counters() -> st.SearchStrategy[int]:
    """Unsigned 64-bit counters (TR-11): small ones and the extremes."""
    return st.one_of(
        st.integers(min_value=0, max_value=100),
        st.sampled_from([0, 2**63 - 1, 2**63, MAX_U64]),
        st.integers(min_value=0, max_value=MAX_U64),
    )


def persisted_states() -> st.SearchStrategy[PersistedState]:
    """Run states (TR-11): a u64 revision and JSON extensions with big ints, -0.0... (G-4)."""
    return st.builds(PersistedState, revision=counters(), extensions=json_objects(max_size=2))


def run_records(
    *,
    run_ids: st.SearchStrategy[str] | None = None,
    thread_ids: st.SearchStrategy[str] | None = None,
) -> st.SearchStrategy[RunRecord]:
    """Valid run records (TR-11) with every optional field exercised and times that tie."""
    return st.builds(
        RunRecord,
        run_id=run_ids if run_ids is not None else plain_ids(max_size=2),
        thread_id=thread_ids if thread_ids is not None else plain_ids(max_size=2),
        agent_id=plain_ids(max_size=3),
        created_at=run_times(),
        updated_at=run_times(),
        status=run_statuses(),
        parent_run_id=st.none() | plain_ids(max_size=2),
        termination_code=st.none() | titles(),
        steps=counters(),
        input_tokens=counters(),
        output_tokens=counters(),
        state=st.none() | persisted_states(),
    )


def run_queries(*, thread_ids: st.SearchStrategy[str]) -> st.SearchStrategy[RunQuery]:
    """Run queries (TR-15, TR-16) around the paging edges: limit 0, small, the clamp at 200,
    offsets past the end, with and without filters."""
    limits = st.one_of(
        st.integers(min_value=0, max_value=4),
        st.sampled_from([LIST_RUNS_MAX_LIMIT - 1, LIST_RUNS_MAX_LIMIT, LIST_RUNS_MAX_LIMIT + 1]),
    )
    return st.builds(
        RunQuery,
        offset=st.integers(min_value=0, max_value=6),
        limit=limits,
        thread_id=st.none() | thread_ids,
        status=st.none() | run_statuses(),
    )


# --- whole-store snapshots ---------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """Everything a thread/run store holds, as read through its public operations.

    Attributes:
        thread_ids: ``list_threads`` of everything, in its order (TR-5).
        threads: each listed thread as ``load_thread`` returns it.
        messages: each listed thread's ``load_messages``.
        runs: every run, in ``list_runs`` order (TR-15).
        latest: ``latest_run`` of every thread id that has a thread or a run.
    """

    thread_ids: list[str]
    threads: dict[str, Thread | None]
    messages: dict[str, list[Message] | None]
    runs: tuple[RunRecord, ...]
    latest: dict[str, RunRecord | None]


async def store_snapshot(store: ThreadRunStore) -> Snapshot:
    """Read everything ``store`` holds (paging through ``list_runs``)."""
    thread_ids = await store.list_threads(0, LIST_ALL)
    threads = {t: await store.load_thread(t) for t in thread_ids}
    messages = {t: await store.load_messages(t) for t in thread_ids}
    runs: list[RunRecord] = []
    while True:
        page = await store.list_runs(RunQuery(offset=len(runs), limit=LIST_RUNS_MAX_LIMIT))
        runs.extend(page.items)
        if not page.has_more or not page.items:
            break
    owners = sorted(set(thread_ids) | {r.thread_id for r in runs})
    latest = {t: await store.latest_run(t) for t in owners}
    return Snapshot(thread_ids, threads, messages, tuple(runs), latest)


def model_snapshot(model: ThreadRunModel) -> Snapshot:
    """What :func:`store_snapshot` must read from a store in the model's state."""
    thread_ids = model.list_threads(0, LIST_ALL)
    runs: list[RunRecord] = []
    while True:
        page = model.list_runs(RunQuery(offset=len(runs), limit=LIST_RUNS_MAX_LIMIT))
        runs.extend(page.items)
        if not page.has_more:
            break
    owners = sorted(set(thread_ids) | {r.thread_id for r in runs})
    return Snapshot(
        thread_ids,
        {t: model.load_thread(t) for t in thread_ids},
        {t: model.load_messages(t) for t in thread_ids},
        tuple(runs),
        {t: model.latest_run(t) for t in owners},
    )


@contextmanager
def opened(harness: Harness[Any], context: StoreContext | None = None) -> Iterator[ThreadRunStore]:
    """Keep a store open across several ``harness.run`` calls (hypothesis properties and state
    machines are synchronous); the store is closed on exit."""
    manager = harness.open(context)
    store: ThreadRunStore = harness.run(manager.__aenter__())
    try:
        yield store
    finally:
        harness.run(manager.__aexit__(None, None, None))


def nested_lists(depth: int) -> list[Any]:
    """``depth`` lists nested in one another: ``[[...[]...]]``."""
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


def rich_json_object() -> dict[str, Any]:
    """A fresh JSON object that only an exact store round-trips (G-4): ints next to equal
    floats and bools, ``-0.0``, the widest allowed integers, extreme floats, awkward keys and
    strings, and nesting to the allowed depth when used as a top-level field."""
    widest = 2**MAX_INT_BITS - 1
    return {
        "int": 1,
        "float": 1.0,
        "bool": True,
        "zero": 0,
        "negative_zero": -0.0,
        "u64_plus_one": 2**64,
        "widest": widest,
        "widest_negative": -widest,
        "inexact": 0.1 + 0.2,
        "tiny": 5e-324,
        "huge_float": 1.7976931348623157e308,
        "none": None,
        "unicode": "日本語 é e\u0301 👩‍💻 \u202e",
        "escapes": '"\\\n\t\x00</script>',
        "empty_object": {},
        "empty_list": [],
        "mixed": [1, "1", 1.0, True, None, [], {}],
        "keys": {"": 1, "a.b": 2, "$x": 3, "0": 4, "[0]": 5, "é": 6},
        # The object is depth 0, so this innermost list sits at the deepest level allowed.
        "deep": nested_lists(MAX_JSON_DEPTH - 1),
    }
