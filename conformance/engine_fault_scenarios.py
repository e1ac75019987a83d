"""What the engine-fault checks do to a store of each family: seed it, run one (compound)
operation while the engine fails, and read back everything the operation could have touched.

A :class:`Scenario` is engine-agnostic: it talks to the family's protocol only. The
``engine_faults`` suite (:mod:`agentstores.conformance.engine_fault_check`) runs each operation
of its family's scenario with the engine failing at each call the operation makes and checks
G-11, G-17 and G-23: the failure is :class:`~agentstores.spec.errors.StorageUnavailable`, the
state read back is the state before or after the whole operation (never a mix), and the same
store object works again once the engine does. The kit's engine-specific tests (a stopped
server, a locked file, a full disk) use the scenarios too.

Snapshots leave out what a store may choose freely (store-assigned message ids of the memory
storage; session ids of the session store, which may skip a number after a failed creation,
SS-4), so that a snapshot compares equal across two runs of the same scenario, also in two
contexts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from agentstores.spec.memory_storage import (
    MemoryRetrieval,
    MemoryStorage,
    SessionSummary,
    UserMemory,
)
from agentstores.spec.messages import Message
from agentstores.spec.session_service import (
    CreateRequest,
    Event,
    EventActions,
    GetRequest,
    ListRequest,
    SessionService,
)
from agentstores.spec.session_store import SessionStore, SessionType, TokenStatsUpdate
from agentstores.spec.state_session import StateSessionStore
from agentstores.spec.thread_run import (
    RunQuery,
    RunRecord,
    RunStatus,
    Thread,
    ThreadMetadata,
    ThreadRunStore,
)

from .backend import Family

__all__ = ["BULK", "SCENARIOS", "Handles", "Operation", "Scenario", "operations"]

#: What a seed hands to the operations: ids the store chose, keyed by a name.
Handles = dict[str, Any]

S = TypeVar("S")


@dataclass(frozen=True)
class Operation:
    """One operation under test: ``run(store, handles)`` (its result is ignored)."""

    name: str
    run: Callable[[Any, Handles], Coroutine[Any, Any, object]]


@dataclass(frozen=True)
class Scenario:
    """A family's seed, its operations under test, and its observation.

    Attributes:
        family: the family.
        seed: writes the data the operations change; returns the handles they need.
        operations: the operations, compound ones first.
        observe: everything the operations could have touched, as a comparable value.
        light: the cheap operation used where one call is enough (e.g. probing a dead server).
        bulky: an operation that writes a lot (about :data:`BULK` bytes), for a full disk.
    """

    family: Family
    seed: Callable[[Any], Awaitable[Handles]]
    operations: tuple[Operation, ...]
    observe: Callable[[Any], Awaitable[object]]
    light: Operation
    bulky: Operation

    def operation(self, name: str) -> Operation:
        """The operation under test called ``name``; KeyError if there is none."""
        for operation in self.operations:
            if operation.name == name:
                return operation
        raise KeyError(f"the {self.family.value} scenario has no operation {name!r}")


#: The size of the text a bulky operation writes, in characters.
BULK = 256 * 1024


def _bulk_text() -> str:
    # Not one repeated character: some engines compress, none of the references does today.
    return "".join(f"{i:08x}" for i in range(BULK // 8))


def _messages(prefix: str, count: int) -> list[Message]:
    roles = ("user", "assistant")
    return [Message.text(roles[i % 2], f"{prefix} {i} " + "x" * 40) for i in range(count)]


def _operation(name: str, call: Callable[[S, Handles], Awaitable[object]]) -> Operation:
    """``call`` as an operation whose ``run`` is a coroutine (callers may make a task of it)."""

    async def run(store: Any, handles: Handles) -> object:
        return await call(store, handles)

    return Operation(name, run)


def _scenario(
    family: Family,
    seed: Callable[[S], Awaitable[Handles]],
    observe: Callable[[S], Awaitable[object]],
    operations: Mapping[str, Callable[[S, Handles], Awaitable[object]]],
    *,
    light: str | tuple[str, Callable[[S, Handles], Awaitable[object]]],
    bulky: tuple[str, Callable[[S, Handles], Awaitable[object]]],
) -> Scenario:
    """A family's scenario from its table of operations (in order, compound ones first);
    ``light`` names one of them or is an operation of its own."""
    table = tuple(_operation(name, call) for name, call in operations.items())
    return Scenario(
        family=family,
        seed=seed,
        operations=table,
        observe=observe,
        light=(
            next(op for op in table if op.name == light)
            if isinstance(light, str)
            else _operation(*light)
        ),
        bulky=_operation(*bulky),
    )


# --- thread/run ------------------------------------------------------------------------------


def _run(run_id: str, thread_id: str, agent_id: str, at: int) -> RunRecord:
    return RunRecord(
        run_id=run_id, thread_id=thread_id, agent_id=agent_id, created_at=at, updated_at=at
    )


async def _tr_seed(store: ThreadRunStore) -> Handles:
    await store.save_thread(Thread("t1", ThreadMetadata(title="first", custom={"k": [1, 2]})))
    run1 = _run("r1", "t1", "a", 10)
    await store.checkpoint("t1", _messages("seed", 3), run1)
    await store.checkpoint("t2", _messages("other", 2), _run("r2", "t2", "a", 20))
    return {"run1": run1}


async def _tr_checkpoint(store: ThreadRunStore, handles: Handles) -> None:
    done = replace(handles["run1"], status=RunStatus.DONE, updated_at=30, steps=4)
    await store.checkpoint("t1", _messages("next", 6), done)


async def _tr_observe(store: ThreadRunStore) -> object:
    threads = await store.list_threads(0, 1000)
    contents = [(t, await store.load_thread(t), await store.load_messages(t)) for t in threads]
    runs = await store.list_runs(RunQuery(limit=200))
    latest = [await store.latest_run(t) for t in threads]
    return contents, runs, latest


THREAD_RUN = _scenario(
    Family.THREAD_RUN,
    _tr_seed,
    _tr_observe,
    {
        "checkpoint": _tr_checkpoint,
        "checkpoint_new_thread": lambda store, _: store.checkpoint(
            "t3", _messages("new", 2), _run("r3", "t3", "b", 40)
        ),
        "delete_thread": lambda store, _: store.delete_thread("t1"),
        "save_messages": lambda store, _: store.save_messages("t2", _messages("replaced", 5)),
        "create_run": lambda store, _: store.create_run(_run("r4", "t2", "c", 50)),
    },
    light="create_run",
    bulky=(
        "save_bulky_messages",
        lambda store, _: store.save_messages("t1", [Message.text("user", _bulk_text())]),
    ),
)


# --- session store ---------------------------------------------------------------------------


async def _ss_seed(store: SessionStore) -> Handles:
    first = await store.create_session("/work/one", "one")
    for message in _messages("seed", 3):
        await store.add_message(first.id, message)
    await store.update_token_stats(first.id, TokenStatsUpdate(total_tokens=7, input_tokens=3))
    await store.update_extension_data(first.id, {"todo.v0": {"items": ["a"]}})
    second = await store.create_session("/work/two", "two", SessionType.SCHEDULED)
    await store.add_message(second.id, Message.text("user", "other"))
    return {"first": first.id, "second": second.id}


async def _ss_import(store: SessionStore, handles: Handles) -> None:
    document = await store.export_session(handles["first"])
    await store.import_session(document)


async def _ss_truncate(store: SessionStore, handles: Handles) -> None:
    # Every seeded message was stamped by the (manual) clock at one instant: truncate them all.
    session = await store.get_session(handles["first"], include_messages=True)
    assert session.conversation
    stamp = session.conversation[0].created_at
    await store.truncate_conversation(handles["first"], stamp if stamp is not None else 0)


async def _ss_observe(store: SessionStore) -> object:
    sessions = await store.list_sessions_by_types(list(SessionType))
    full = [await store.get_session(s.id, include_messages=True) for s in sessions]
    # Ids are opaque and may skip numbers after a failed creation (SS-4): compare without them.
    records = sorted(repr(replace(s, id="")) for s in full)
    insights = await store.get_insights()
    return records, insights


SESSION_STORE = _scenario(
    Family.SESSION_STORE,
    _ss_seed,
    _ss_observe,
    {
        "replace_conversation": lambda store, handles: store.replace_conversation(
            handles["first"], _messages("replaced", 5)
        ),
        "import_session": _ss_import,
        "copy_session": lambda store, handles: store.copy_session(handles["first"], "copy"),
        "truncate_conversation": _ss_truncate,
        "delete_session": lambda store, handles: store.delete_session(handles["first"]),
        "add_message": lambda store, handles: store.add_message(
            handles["first"], Message.text("assistant", "added")
        ),
    },
    light=("create_session", lambda store, _: store.create_session("/work/three", "three")),
    bulky=(
        "add_bulky_message",
        lambda store, handles: store.add_message(
            handles["first"], Message.text("user", _bulk_text())
        ),
    ),
)


# --- session service -------------------------------------------------------------------------

APP, USER, OTHER_USER = "app", "u1", "u2"


async def _sv_seed(store: SessionService) -> Handles:
    await store.create(
        CreateRequest(APP, USER, session_id="s1", state={"app:a": 1, "user:b": 2, "c": 3})
    )
    await store.create(CreateRequest(APP, OTHER_USER, session_id="s9", state={"d": 4}))
    session = await store.get(GetRequest(APP, USER, "s1"))
    assert session is not None
    event = Event(author="user", id="e1", content=Message.text("user", "hello"))
    await store.append_event(session, event)
    return {}


async def _sv_current(store: SessionService) -> Any:
    session = await store.get(GetRequest(APP, USER, "s1"))
    assert session is not None
    return session


async def _sv_append(store: SessionService, handles: Handles) -> None:
    delta = {"app:a": 10, "user:b": 20, "c": 30, "temp:t": 1, "new": [1, 2]}
    event = Event(
        author="agent",
        id="e2",
        content=Message.text("assistant", "hi"),
        actions=EventActions(state_delta=delta),
    )
    await store.append_event(await _sv_current(store), event)


async def _sv_update_state(store: SessionService, handles: Handles) -> None:
    await store.update_state(await _sv_current(store), {"app:x": 1, "user:y": 2, "z": 3})


async def _sv_bulky(store: SessionService, handles: Handles) -> None:
    event = Event(author="user", id="e3", content=Message.text("user", _bulk_text()))
    await store.append_event(await _sv_current(store), event)


async def _sv_observe(store: SessionService) -> object:
    seen = []
    for user in (USER, OTHER_USER):
        for listed in await store.list(ListRequest(APP, user)):
            seen.append(await store.get(GetRequest(APP, user, listed.id)))
    return seen


SESSION_SERVICE = _scenario(
    Family.SESSION_SERVICE,
    _sv_seed,
    _sv_observe,
    {
        "append_event": _sv_append,
        "update_state": _sv_update_state,
        "delete": lambda store, _: store.delete(APP, USER, "s1"),
        "create": lambda store, _: store.create(
            CreateRequest(APP, USER, session_id="s2", state={"app:n": 1, "user:m": 2})
        ),
    },
    light="create",
    bulky=("append_bulky_event", _sv_bulky),
)


# --- memory storage --------------------------------------------------------------------------


async def _ms_seed(store: MemoryStorage) -> Handles:
    for i in range(3):
        await store.save_user_memory(UserMemory(f"m{i}", USER, f"likes {i}", input=f"said {i}"))
    await store.save_user_memory(UserMemory("m9", OTHER_USER, "other"))
    await store.save_session_summary(SessionSummary("s1", USER, "a summary"))
    for message in _messages("seed", 4):
        await store.save_message("s1", USER, message)
    await store.save_message("s2", USER, Message.text("user", "elsewhere"))
    return {}


async def _ms_observe(store: MemoryStorage) -> object:
    memories = {
        user: await store.get_user_memories(user, 0, MemoryRetrieval.FIRST_N)
        for user in (USER, OTHER_USER)
    }
    summary = await store.get_session_summary("s1", USER)
    # Message ids are the store's choice (MS-17); compare the rest.
    conversations = {
        session: [
            (m.message, m.created_at, m.session_id, m.user_id)
            for m in await store.get_messages(session, USER)
        ]
        for session in ("s1", "s2")
    }
    counts = [await store.get_message_count(USER, session) for session in ("s1", "s2")]
    return memories, summary, conversations, counts


MEMORY_STORAGE = _scenario(
    Family.MEMORY_STORAGE,
    _ms_seed,
    _ms_observe,
    {
        "cleanup_messages_by_limit": lambda store, _: store.cleanup_messages_by_limit(
            USER, "s1", 1
        ),
        "delete_user_memories_by_ids": lambda store, _: store.delete_user_memories_by_ids(
            USER, ["m0", "m2"]
        ),
        "clear_user_memories": lambda store, _: store.clear_user_memories(USER),
        "save_message": lambda store, _: store.save_message(
            "s1", USER, Message.text("assistant", "added")
        ),
        "update_user_memory": lambda store, _: store.update_user_memory(
            UserMemory("m1", USER, "likes tea")
        ),
    },
    light=(
        "save_user_memory",
        lambda store, _: store.save_user_memory(UserMemory("m5", USER, "new")),
    ),
    bulky=(
        "save_bulky_message",
        lambda store, _: store.save_message("s1", USER, Message.text("user", _bulk_text())),
    ),
)


# --- state session ---------------------------------------------------------------------------


class Module:
    """A minimal state module (ST-2): a dict it hands out and takes back."""

    def __init__(self, state: Mapping[str, Any] | None = None) -> None:
        self.state: dict[str, Any] | None = dict(state) if state is not None else None

    def state_dict(self) -> dict[str, Any]:
        return dict(self.state or {})

    def load_state_dict(self, state_dict: dict[str, Any], /) -> None:
        self.state = dict(state_dict)


async def _st_seed(store: StateSessionStore) -> Handles:
    await store.save_session_state(
        "s1", USER, agent=Module({"memory": ["a", "b"]}), toolkit=Module({"tools": 3})
    )
    await store.save_session_state("s2", USER, agent=Module({"memory": []}))
    return {}


async def _st_observe(store: StateSessionStore) -> object:
    seen = {}
    for session in await store.list_sessions(USER):
        modules = {name: Module() for name in ("agent", "toolkit", "planner")}
        await store.load_session_state(session, USER, True, **modules)
        seen[session] = {name: module.state for name, module in modules.items()}
    return seen


STATE_SESSION = _scenario(
    Family.STATE_SESSION,
    _st_seed,
    _st_observe,
    {
        "save_session_state": lambda store, _: store.save_session_state(
            "s1", USER, agent=Module({"memory": ["c"]}), planner=Module({"plan": {"step": 2}})
        ),
        "delete_session_state": lambda store, _: store.delete_session_state("s1", USER),
        "save_new_session": lambda store, _: store.save_session_state(
            "s3", USER, agent=Module({"memory": ["new"]})
        ),
    },
    light="save_new_session",
    bulky=(
        "save_bulky_state",
        lambda store, _: store.save_session_state(
            "s1", USER, agent=Module({"memory": [_bulk_text()]})
        ),
    ),
)


SCENARIOS: dict[Family, Scenario] = {
    s.family: s for s in (THREAD_RUN, SESSION_STORE, SESSION_SERVICE, MEMORY_STORAGE, STATE_SESSION)
}


def operations() -> list[tuple[Family, str]]:
    """Every (family, operation name), for parametrising tests."""
    return [(family, op.name) for family, s in SCENARIOS.items() for op in s.operations]
