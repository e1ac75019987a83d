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
from typing import Any

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


# --- thread/run ------------------------------------------------------------------------------


async def _tr_seed(store: ThreadRunStore) -> Handles:
    await store.save_thread(Thread("t1", ThreadMetadata(title="first", custom={"k": [1, 2]})))
    run1 = RunRecord(run_id="r1", thread_id="t1", agent_id="a", created_at=10, updated_at=10)
    await store.checkpoint("t1", _messages("seed", 3), run1)
    run2 = RunRecord(run_id="r2", thread_id="t2", agent_id="a", created_at=20, updated_at=20)
    await store.checkpoint("t2", _messages("other", 2), run2)
    return {"run1": run1}


async def _tr_checkpoint(store: ThreadRunStore, handles: Handles) -> None:
    done = replace(handles["run1"], status=RunStatus.DONE, updated_at=30, steps=4)
    await store.checkpoint("t1", _messages("next", 6), done)


async def _tr_checkpoint_new(store: ThreadRunStore, handles: Handles) -> None:
    run3 = RunRecord(run_id="r3", thread_id="t3", agent_id="b", created_at=40, updated_at=40)
    await store.checkpoint("t3", _messages("new", 2), run3)


async def _tr_delete_thread(store: ThreadRunStore, handles: Handles) -> None:
    await store.delete_thread("t1")


async def _tr_save_messages(store: ThreadRunStore, handles: Handles) -> None:
    await store.save_messages("t2", _messages("replaced", 5))


async def _tr_create_run(store: ThreadRunStore, handles: Handles) -> None:
    await store.create_run(
        RunRecord(run_id="r4", thread_id="t2", agent_id="c", created_at=50, updated_at=50)
    )


async def _tr_bulky(store: ThreadRunStore, handles: Handles) -> None:
    await store.save_messages("t1", [Message.text("user", _bulk_text())])


async def _tr_observe(store: ThreadRunStore) -> object:
    threads = await store.list_threads(0, 1000)
    contents = [(t, await store.load_thread(t), await store.load_messages(t)) for t in threads]
    runs = await store.list_runs(RunQuery(limit=200))
    latest = [await store.latest_run(t) for t in threads]
    return contents, runs, latest


THREAD_RUN = Scenario(
    family=Family.THREAD_RUN,
    seed=_tr_seed,
    operations=(
        Operation("checkpoint", _tr_checkpoint),
        Operation("checkpoint_new_thread", _tr_checkpoint_new),
        Operation("delete_thread", _tr_delete_thread),
        Operation("save_messages", _tr_save_messages),
        Operation("create_run", _tr_create_run),
    ),
    observe=_tr_observe,
    light=Operation("create_run", _tr_create_run),
    bulky=Operation("save_bulky_messages", _tr_bulky),
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


async def _ss_replace(store: SessionStore, handles: Handles) -> None:
    await store.replace_conversation(handles["first"], _messages("replaced", 5))


async def _ss_import(store: SessionStore, handles: Handles) -> None:
    document = await store.export_session(handles["first"])
    await store.import_session(document)


async def _ss_copy(store: SessionStore, handles: Handles) -> None:
    await store.copy_session(handles["first"], "copy")


async def _ss_add(store: SessionStore, handles: Handles) -> None:
    await store.add_message(handles["first"], Message.text("assistant", "added"))


async def _ss_truncate(store: SessionStore, handles: Handles) -> None:
    # Every seeded message was stamped by the (manual) clock at one instant: truncate them all.
    session = await store.get_session(handles["first"], include_messages=True)
    assert session.conversation
    stamp = session.conversation[0].created_at
    await store.truncate_conversation(handles["first"], stamp if stamp is not None else 0)


async def _ss_delete(store: SessionStore, handles: Handles) -> None:
    await store.delete_session(handles["first"])


async def _ss_create(store: SessionStore, handles: Handles) -> None:
    await store.create_session("/work/three", "three")


async def _ss_bulky(store: SessionStore, handles: Handles) -> None:
    await store.add_message(handles["first"], Message.text("user", _bulk_text()))


async def _ss_observe(store: SessionStore) -> object:
    sessions = await store.list_sessions_by_types(list(SessionType))
    full = [await store.get_session(s.id, include_messages=True) for s in sessions]
    # Ids are opaque and may skip numbers after a failed creation (SS-4): compare without them.
    records = sorted(repr(replace(s, id="")) for s in full)
    insights = await store.get_insights()
    return records, insights


SESSION_STORE = Scenario(
    family=Family.SESSION_STORE,
    seed=_ss_seed,
    operations=(
        Operation("replace_conversation", _ss_replace),
        Operation("import_session", _ss_import),
        Operation("copy_session", _ss_copy),
        Operation("truncate_conversation", _ss_truncate),
        Operation("delete_session", _ss_delete),
        Operation("add_message", _ss_add),
    ),
    observe=_ss_observe,
    light=Operation("create_session", _ss_create),
    bulky=Operation("add_bulky_message", _ss_bulky),
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


async def _sv_delete(store: SessionService, handles: Handles) -> None:
    await store.delete(APP, USER, "s1")


async def _sv_create(store: SessionService, handles: Handles) -> None:
    await store.create(CreateRequest(APP, USER, session_id="s2", state={"app:n": 1, "user:m": 2}))


async def _sv_bulky(store: SessionService, handles: Handles) -> None:
    event = Event(author="user", id="e3", content=Message.text("user", _bulk_text()))
    await store.append_event(await _sv_current(store), event)


async def _sv_observe(store: SessionService) -> object:
    seen = []
    for user in (USER, OTHER_USER):
        for listed in await store.list(ListRequest(APP, user)):
            seen.append(await store.get(GetRequest(APP, user, listed.id)))
    return seen


SESSION_SERVICE = Scenario(
    family=Family.SESSION_SERVICE,
    seed=_sv_seed,
    operations=(
        Operation("append_event", _sv_append),
        Operation("update_state", _sv_update_state),
        Operation("delete", _sv_delete),
        Operation("create", _sv_create),
    ),
    observe=_sv_observe,
    light=Operation("create", _sv_create),
    bulky=Operation("append_bulky_event", _sv_bulky),
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


async def _ms_save_message(store: MemoryStorage, handles: Handles) -> None:
    await store.save_message("s1", USER, Message.text("assistant", "added"))


async def _ms_cleanup(store: MemoryStorage, handles: Handles) -> None:
    await store.cleanup_messages_by_limit(USER, "s1", 1)


async def _ms_delete_ids(store: MemoryStorage, handles: Handles) -> None:
    await store.delete_user_memories_by_ids(USER, ["m0", "m2"])


async def _ms_clear(store: MemoryStorage, handles: Handles) -> None:
    await store.clear_user_memories(USER)


async def _ms_update(store: MemoryStorage, handles: Handles) -> None:
    await store.update_user_memory(UserMemory("m1", USER, "likes tea"))


async def _ms_save_memory(store: MemoryStorage, handles: Handles) -> None:
    await store.save_user_memory(UserMemory("m5", USER, "new"))


async def _ms_bulky(store: MemoryStorage, handles: Handles) -> None:
    await store.save_message("s1", USER, Message.text("user", _bulk_text()))


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


MEMORY_STORAGE = Scenario(
    family=Family.MEMORY_STORAGE,
    seed=_ms_seed,
    operations=(
        Operation("cleanup_messages_by_limit", _ms_cleanup),
        Operation("delete_user_memories_by_ids", _ms_delete_ids),
        Operation("clear_user_memories", _ms_clear),
        Operation("save_message", _ms_save_message),
        Operation("update_user_memory", _ms_update),
    ),
    observe=_ms_observe,
    light=Operation("save_user_memory", _ms_save_memory),
    bulky=Operation("save_bulky_message", _ms_bulky),
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


async def _st_save(store: StateSessionStore, handles: Handles) -> None:
    await store.save_session_state(
        "s1", USER, agent=Module({"memory": ["c"]}), planner=Module({"plan": {"step": 2}})
    )


async def _st_delete(store: StateSessionStore, handles: Handles) -> None:
    await store.delete_session_state("s1", USER)


async def _st_new(store: StateSessionStore, handles: Handles) -> None:
    await store.save_session_state("s3", USER, agent=Module({"memory": ["new"]}))


async def _st_bulky(store: StateSessionStore, handles: Handles) -> None:
    await store.save_session_state("s1", USER, agent=Module({"memory": [_bulk_text()]}))


async def _st_observe(store: StateSessionStore) -> object:
    seen = {}
    for session in await store.list_sessions(USER):
        modules = {name: Module() for name in ("agent", "toolkit", "planner")}
        await store.load_session_state(session, USER, True, **modules)
        seen[session] = {name: module.state for name, module in modules.items()}
    return seen


STATE_SESSION = Scenario(
    family=Family.STATE_SESSION,
    seed=_st_seed,
    operations=(
        Operation("save_session_state", _st_save),
        Operation("delete_session_state", _st_delete),
        Operation("save_new_session", _st_new),
    ),
    observe=_st_observe,
    light=Operation("save_new_session", _st_new),
    bulky=Operation("save_bulky_state", _st_bulky),
)


SCENARIOS: dict[Family, Scenario] = {
    s.family: s for s in (THREAD_RUN, SESSION_STORE, SESSION_SERVICE, MEMORY_STORAGE, STATE_SESSION)
}


def operations() -> list[tuple[Family, str]]:
    """Every (family, operation name), for parametrising tests."""
    return [(family, op.name) for family, s in SCENARIOS.items() for op in s.operations]
