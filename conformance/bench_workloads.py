"""The standard workloads of ``agentstores bench``, per family, through the public protocols.

Every workload runs on a store of its own (a fresh context), builds its data untimed, then
times one kind of operation:

* ``append``: one message or event appended to a conversation whose history holds ``size``
  items (10, 1,000 and 10,000 at full scale). At 10 the appends go to ``samples`` different
  conversations of 10 items each; at each larger size to one conversation of that size, which
  grows by ``samples`` during the timed window (2% at 10,000). The sizes are timed in turn,
  one append of each per round, so that they share the machine's state. Families:
  ``session_store.add_message``, ``session_service.append_event``,
  ``memory_storage.save_message``. Thread/run has no append (``checkpoint`` writes the whole
  list by design) and gets ``checkpoint`` of a 1,000-message thread instead.
* ``newest_20``: the newest 20 items of a history of ``size`` (``session_service.get`` with
  ``num_recent_events=20``, ``memory_storage.get_messages(limit=20)``).
* ``list_page``: listing 10,000 sessions (threads) page by page, 100 per page; each page call
  is one sample (``thread_run.list_threads``, ``session_service.list``,
  ``state_session.list_sessions``). The listing must return every item exactly once.
* ``search``: ``session_store.search_chat_history`` over 100,000 messages in sessions of 1,000,
  where one message in 100 contains the query.
* ``save_state`` / ``load_state``: a 1 MB state dict (``state_session``).

:class:`History` is the small interface the append and read workloads drive; the side-by-side
comparison in ``benchmarks/`` implements it for third-party stores, so both are measured by
the same code.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, TypeVar

from agentstores.spec.memory_storage import MemoryStorage
from agentstores.spec.messages import Message
from agentstores.spec.session_service import (
    CreateRequest,
    Event,
    GetRequest,
    ListRequest,
    Session,
    SessionService,
)
from agentstores.spec.session_store import SessionStore
from agentstores.spec.state_session import StateSessionStore
from agentstores.spec.thread_run import RunRecord, Thread, ThreadMetadata, ThreadRunStore
from agentstores.spec.values import system_clock

from .backend import Family
from .bench_stats import Call, Channel, Recorder

__all__ = [
    "BASELINE_FAMILY",
    "NEWEST",
    "PAGE_SIZE",
    "QUERY",
    "WORKLOADS",
    "BenchError",
    "BenchRun",
    "History",
    "HistoryChannels",
    "RawAppend",
    "Sizes",
    "Workload",
    "bench_message",
    "bench_text",
    "history_channels",
    "history_workloads",
]

H = TypeVar("H")

#: How many items the ``newest`` read asks for.
NEWEST = 20
#: Page size of the ``list_page`` workloads.
PAGE_SIZE = 100
#: The word the ``search`` workload looks for; one message in :data:`_NEEDLE_EVERY` has it.
QUERY = "needle"
_NEEDLE_EVERY = 100
#: Extra operations per workload run under tracemalloc (see :mod:`.bench_stats`).
TRACED = 2

_FILLER = (
    "the agent looked at the repository, ran the tests, read the failing trace and proposed "
    "a small patch to the parser"
)


class BenchError(Exception):
    """The backend did something a workload cannot measure (e.g. a listing lost items)."""


def bench_text(position: int) -> str:
    """The text of message ``position`` (about 150 characters; every 100th has the query)."""
    word = QUERY if position % _NEEDLE_EVERY == _NEEDLE_EVERY - 1 else f"w{position % 997}"
    return f"message {position} {word}: {_FILLER}"


def bench_message(position: int) -> Message:
    """Message ``position`` of a benchmark conversation: user and assistant in turn."""
    role = "user" if position % 2 == 0 else "assistant"
    return Message.text(role, bench_text(position), created_at=system_clock())


def _scaled(value: int, scale: float, minimum: int) -> int:
    return max(minimum, round(value * scale))


@dataclass(frozen=True)
class Sizes:
    """The sizes of one run (see the module docstring for what each one sizes).

    ``samples`` operations are timed per point (``slow_samples`` for search, checkpoint and
    state workloads, whose operations are long).
    """

    append: tuple[int, ...] = (10, 1_000, 10_000)
    read: tuple[int, ...] = (10_000,)
    sessions: int = 10_000
    search_messages: int = 100_000
    checkpoint_messages: int = 1_000
    state_bytes: int = 1_000_000
    samples: int = 200
    slow_samples: int = 20

    @classmethod
    def scaled(cls, scale: float = 1.0, *, samples: int = 200, bars: bool = False) -> Sizes:
        """The standard sizes times ``scale``; with ``bars``, reads at 100 and 100,000 too.

        The small end (append at 10, newest 20 of 100) does not scale: it is the reference
        point the large sizes are compared with.
        """
        if not 0 < scale <= 1:
            raise ValueError("scale must be in (0, 1]")
        if samples < 1:
            raise ValueError("samples must be at least 1")
        reads = {_scaled(10_000, scale, NEWEST)}
        if bars:
            reads |= {100, _scaled(100_000, scale, 100)}
        return cls(
            append=tuple(sorted({10, _scaled(1_000, scale, 10), _scaled(10_000, scale, 10)})),
            read=tuple(sorted(reads)),
            sessions=_scaled(10_000, scale, PAGE_SIZE),
            search_messages=_scaled(100_000, scale, 1_000),
            checkpoint_messages=_scaled(1_000, scale, 10),
            state_bytes=_scaled(1_000_000, scale, 10_000),
            samples=samples,
            slow_samples=max(3, samples // 10),
        )


#: The ``family`` of the raw engine results (``--baselines``).
BASELINE_FAMILY = "baseline"


@dataclass(frozen=True)
class RawAppend:
    """A raw engine append (see :mod:`.bench_baselines`) and how to label it."""

    call: Call
    method: str


@dataclass(frozen=True)
class BenchRun:
    """What a workload gets besides its store: where to record, the sizes, a baseline."""

    recorder: Recorder
    sizes: Sizes
    baseline: RawAppend | None = None


# --- the history workloads (append, newest) ---------------------------------------------------


class History(Protocol[H]):
    """A store of conversations, as the append and read workloads drive it.

    ``H`` is whatever identifies one conversation (an id, a session object...). Adapters of
    third-party stores implement this too (see ``benchmarks/``).
    """

    #: The method an append calls, for reports (e.g. ``add_message``).
    method: str
    #: Whether :meth:`newest` is available.
    reads_newest: bool

    async def start(self, index: int) -> H:
        """A new, empty conversation (``index`` counts the conversations of the run)."""
        ...

    async def append(self, handle: H, position: int) -> None:
        """Append message ``position`` (:func:`bench_message`) and persist it."""
        ...

    async def fill(self, handle: H, start: int, stop: int) -> None:
        """Append messages ``start .. stop - 1`` (untimed; may use a bulk operation)."""
        ...

    async def newest(self, handle: H, count: int) -> int:
        """Read the newest ``count`` items; return how many were read."""
        ...


async def _started(history: History[H], index: int, size: int) -> H:
    handle = await history.start(index)
    await history.fill(handle, 0, size)
    return handle


def _appends(history: History[H], handle: H, positions: range) -> list[Call]:
    return [partial(history.append, handle, position) for position in positions]


@dataclass(frozen=True)
class HistoryChannels:
    """The timed series of one history store, built and ready: appends first, then reads."""

    appends: list[Channel]
    reads: list[Channel]


async def history_channels(
    history: History[H], run: BenchRun, *, family: str, label: str | None = None
) -> HistoryChannels:
    """Build the conversations of every size and return the series to time on them.

    Each size has conversations of its own: ``samples`` conversations of the smallest size
    (one append each), one conversation per larger size. The reads reuse a conversation that
    will hold about their size once the appends ran (so time the appends first), or get one
    of their own. With ``run.baseline``, the raw engine append is one more append series.
    ``label`` replaces ``family`` in the results (the side-by-side comparison names
    third-party stores this way).
    """
    sizes, label = run.sizes, label or family
    samples = sizes.samples
    smallest, *larger = sizes.append
    count = 0
    small = []
    for _ in range(samples + TRACED):
        small.append(await _started(history, count, smallest))
        count += 1
    appends = [
        Channel(
            label,
            "append",
            smallest,
            [partial(history.append, handle, smallest) for handle in small[:samples]],
            [partial(history.append, handle, smallest) for handle in small[samples:]],
            history.method,
        )
    ]
    longs: list[tuple[H, int]] = []  # a conversation per larger size, and its final length
    for size in larger:
        handle = await _started(history, count, size)
        count += 1
        appends.append(
            Channel(
                label,
                "append",
                size,
                _appends(history, handle, range(size, size + samples)),
                _appends(history, handle, range(size + samples, size + samples + TRACED)),
                history.method,
            )
        )
        longs.append((handle, size + samples + TRACED))
    if run.baseline is not None:
        raw = run.baseline.call
        appends.append(
            Channel(
                BASELINE_FAMILY,
                "raw_append",
                0,
                [raw] * samples,
                [raw] * TRACED,
                run.baseline.method,
            )
        )
    reads = []
    for size in sizes.read if history.reads_newest else ():
        near = [handle for handle, length in longs if size <= length <= size * 1.1]
        if near:
            conversation = near[0]
        else:
            conversation = await _started(history, count, size)
            count += 1
        read = partial(history.newest, conversation, NEWEST)
        reads.append(Channel(label, "newest_20", size, [read] * samples, [read] * TRACED))
    return HistoryChannels(appends, reads)


async def history_workloads(
    history: History[H], run: BenchRun, *, family: str, label: str | None = None
) -> None:
    """Time appends at each of ``run.sizes.append`` and newest reads at each of ``.read``.

    The series are built by :func:`history_channels`, then the appends of all sizes (and the
    raw engine append, if any) are timed in turn, one of each per round, and likewise the
    reads (see :meth:`Recorder.measure_together`).
    """
    channels = await history_channels(history, run, family=family, label=label)
    await run.recorder.measure_together(channels.appends)
    if channels.reads:
        await run.recorder.measure_together(channels.reads)


class SessionStoreHistory:
    """``session_store``: conversations are sessions; appends are ``add_message``."""

    method = "add_message"
    reads_newest = False

    def __init__(self, store: SessionStore) -> None:
        self.store = store

    async def start(self, index: int) -> str:
        return (await self.store.create_session("/bench", f"bench {index}")).id

    async def append(self, handle: str, position: int) -> None:
        await self.store.add_message(handle, bench_message(position))

    async def fill(self, handle: str, start: int, stop: int) -> None:
        # The messages are a function of their position, so the whole list can be rebuilt and
        # written in one replace_conversation, far faster than `stop` appends.
        if stop > start:
            await self.store.replace_conversation(handle, [bench_message(p) for p in range(stop)])

    async def newest(self, handle: str, count: int) -> int:
        raise NotImplementedError("the session store has no read of the newest messages")


@dataclass
class _LiveSession:
    session: Session


class SessionServiceHistory:
    """``session_service``: appends are ``append_event``; newest is ``get`` of 20 events.

    The session passed to ``append_event`` carries no events (as one read with
    ``num_recent_events=0`` would), so the caller's copy does not grow with the history.
    """

    method = "append_event"
    reads_newest = True
    app = "bench"
    user = "bench-user"

    def __init__(self, store: SessionService) -> None:
        self.store = store

    async def start(self, index: int) -> _LiveSession:
        session = await self.store.create(CreateRequest(self.app, self.user, agent_id="agent"))
        return _LiveSession(session)

    async def append(self, handle: _LiveSession, position: int) -> None:
        message = bench_message(position)
        after = await self.store.append_event(
            handle.session, Event(author=message.role, content=message)
        )
        handle.session = dataclasses.replace(after, events=())

    async def fill(self, handle: _LiveSession, start: int, stop: int) -> None:
        for position in range(start, stop):
            await self.append(handle, position)

    async def newest(self, handle: _LiveSession, count: int) -> int:
        request = GetRequest(self.app, self.user, handle.session.id, num_recent_events=count)
        session = await self.store.get(request)
        return 0 if session is None else len(session.events)


class MemoryStorageHistory:
    """``memory_storage``: appends are ``save_message``; newest is ``get_messages(limit)``."""

    method = "save_message"
    reads_newest = True
    user = "bench-user"

    def __init__(self, store: MemoryStorage) -> None:
        self.store = store

    async def start(self, index: int) -> str:
        return f"session-{index}"

    async def append(self, handle: str, position: int) -> None:
        await self.store.save_message(handle, self.user, bench_message(position))

    async def fill(self, handle: str, start: int, stop: int) -> None:
        for position in range(start, stop):
            await self.append(handle, position)

    async def newest(self, handle: str, count: int) -> int:
        return len(await self.store.get_messages(handle, self.user, count))


# --- the other workloads ----------------------------------------------------------------------


async def _pages(
    recorder: Recorder,
    family: str,
    total: int,
    page: Callable[[Any], Awaitable[tuple[int, Any]]],
    *,
    method: str,
) -> None:
    """Time page calls from the first cursor (None) until an empty or short page."""
    state: dict[str, Any] = {"cursor": None, "seen": 0, "done": False}

    async def one_page() -> None:
        got, state["cursor"] = await page(state["cursor"])
        state["seen"] += got
        state["done"] = got < PAGE_SIZE

    def calls() -> Iterator[Call]:
        while not state["done"]:
            yield one_page

    await recorder.measure(family, "list_page", total, calls(), method=method)
    if state["seen"] != total:
        raise BenchError(f"{family}: listing page by page gave {state['seen']} of {total} items")


async def _thread_run_list(store: ThreadRunStore, run: BenchRun) -> None:
    recorder, sizes = run.recorder, run.sizes
    now = system_clock()
    for index in range(sizes.sessions):
        metadata = ThreadMetadata(created_at=now, updated_at=now + index)
        await store.save_thread(Thread(f"thread-{index:06d}", metadata))

    async def page(offset: int | None) -> tuple[int, int]:
        start = offset or 0
        return len(await store.list_threads(start, PAGE_SIZE)), start + PAGE_SIZE

    await _pages(recorder, Family.THREAD_RUN, sizes.sessions, page, method="list_threads")


async def _thread_run_checkpoint(store: ThreadRunStore, run: BenchRun) -> None:
    recorder, sizes = run.recorder, run.sizes
    messages = [bench_message(p) for p in range(sizes.checkpoint_messages)]
    now = system_clock()
    record = RunRecord("bench-run", "bench-thread", "agent", created_at=now, updated_at=now)

    def calls(first: int, count: int) -> list[Call]:
        return [
            partial(
                store.checkpoint,
                "bench-thread",
                messages,
                dataclasses.replace(record, steps=step, updated_at=now + step),
            )
            for step in range(first, first + count)
        ]

    await recorder.measure(
        Family.THREAD_RUN,
        "checkpoint",
        sizes.checkpoint_messages,
        calls(0, sizes.slow_samples),
        traced=calls(sizes.slow_samples, 1),
        method="checkpoint",
    )


async def _session_store_appends(store: SessionStore, run: BenchRun) -> None:
    await history_workloads(SessionStoreHistory(store), run, family=Family.SESSION_STORE)


async def _session_store_search(store: SessionStore, run: BenchRun) -> None:
    recorder, sizes = run.recorder, run.sizes
    per_session = min(1_000, sizes.search_messages)
    for index in range(math.ceil(sizes.search_messages / per_session)):
        first = index * per_session
        last = min(first + per_session, sizes.search_messages)
        session = await store.create_session("/bench", f"search {index}")
        await store.replace_conversation(session.id, [bench_message(p) for p in range(first, last)])
    search = partial(store.search_chat_history, QUERY, 10)
    await recorder.measure(
        Family.SESSION_STORE,
        "search",
        sizes.search_messages,
        [search] * sizes.slow_samples,
        traced=[search],
        method="search_chat_history",
    )


async def _session_service_appends(store: SessionService, run: BenchRun) -> None:
    await history_workloads(SessionServiceHistory(store), run, family=Family.SESSION_SERVICE)


async def _session_service_list(store: SessionService, run: BenchRun) -> None:
    recorder, sizes = run.recorder, run.sizes
    app, user = "bench", "lister"
    for _ in range(sizes.sessions):
        await store.create(CreateRequest(app, user))

    async def page(offset: int | None) -> tuple[int, int]:
        start = offset or 0
        found = await store.list(ListRequest(app, user, limit=PAGE_SIZE, offset=start))
        return len(found), start + PAGE_SIZE

    await _pages(recorder, Family.SESSION_SERVICE, sizes.sessions, page, method="list")


async def _memory_storage_appends(store: MemoryStorage, run: BenchRun) -> None:
    await history_workloads(MemoryStorageHistory(store), run, family=Family.MEMORY_STORAGE)


class _Blob:
    """A state module holding a given state dict (what an agent's memory module would be)."""

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        self.state: dict[str, Any] = state or {}

    def state_dict(self) -> dict[str, Any]:
        return self.state

    def load_state_dict(self, state_dict: dict[str, Any], /) -> None:
        self.state = state_dict


def state_of(size: int) -> dict[str, Any]:
    """A state dict of about ``size`` bytes as JSON: a memory module's list of messages."""
    messages = []
    total = 0
    position = 0
    while total < size:
        text = bench_text(position) * 7
        messages.append({"role": "user", "content": text, "index": position})
        total += len(text) + 48
        position += 1
    return {"memory": {"messages": messages}}


async def _state_session_state(store: StateSessionStore, run: BenchRun) -> None:
    recorder, sizes = run.recorder, run.sizes
    module = _Blob(state_of(sizes.state_bytes))
    save = partial(store.save_session_state, "bench-session", "bench-user", memory=module)
    await recorder.measure(
        Family.STATE_SESSION,
        "save_state",
        sizes.state_bytes,
        [save] * sizes.slow_samples,
        traced=[save],
        method="save_session_state",
    )
    load = partial(store.load_session_state, "bench-session", "bench-user", memory=_Blob())
    await recorder.measure(
        Family.STATE_SESSION,
        "load_state",
        sizes.state_bytes,
        [load] * sizes.slow_samples,
        traced=[load],
        method="load_session_state",
    )


async def _state_session_list(store: StateSessionStore, run: BenchRun) -> None:
    recorder, sizes = run.recorder, run.sizes
    user = "lister"
    small = _Blob({"step": 1})
    for index in range(sizes.sessions):
        await store.save_session_state(f"session-{index:06d}", user, memory=small)

    async def page(after: str | None) -> tuple[int, str | None]:
        found = await store.list_sessions(user, after=after, limit=PAGE_SIZE)
        return len(found), (found[-1] if found else after)

    await _pages(recorder, Family.STATE_SESSION, sizes.sessions, page, method="list_sessions")


@dataclass(frozen=True)
class Workload:
    """One workload: a name and the coroutine that builds and times it on a fresh store."""

    name: str
    run: Callable[[Any, BenchRun], Awaitable[None]]


#: The workloads of each family, in the order they run.
WORKLOADS: dict[Family, tuple[Workload, ...]] = {
    Family.THREAD_RUN: (
        Workload("checkpoint", _thread_run_checkpoint),
        Workload("list_page", _thread_run_list),
    ),
    Family.SESSION_STORE: (
        Workload("append", _session_store_appends),
        Workload("search", _session_store_search),
    ),
    Family.SESSION_SERVICE: (
        Workload("append", _session_service_appends),
        Workload("list_page", _session_service_list),
    ),
    Family.MEMORY_STORAGE: (Workload("append", _memory_storage_appends),),
    Family.STATE_SESSION: (
        Workload("state", _state_session_state),
        Workload("list_page", _state_session_list),
    ),
}


async def run_workload(
    workload: Workload,
    opened: AbstractAsyncContextManager[Any],
    run: BenchRun,
) -> None:
    """Open a store with ``opened``, run ``workload`` on it, close it."""
    async with opened as store:
        await workload.run(store, run)
