"""Helpers of the state-session suite: driving a store with recording modules, and the
hypothesis state machine that compares a store with the model (``StateSessionSuite``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import note
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, precondition, rule

from agentstores.spec.errors import InvalidArgument, NotFound
from agentstores.spec.state_session import DEFAULT_USER_ID

from ..backend import StoreContext
from ..compare import same_json
from ..harness import Harness
from ..models.state_session import RecordingModule, StateSessionModel, module_names, module_states
from ..strategies import adversarial_ids, invalid_json_values, plain_ids

__all__ = [
    "COLLISION_PAIRS",
    "UNTOUCHED",
    "StateSessionMachine",
    "load_states",
    "machine_for",
    "opened",
    "save_states",
    "session_ids",
    "user_ids",
]

#: The state a :class:`RecordingModule` starts with in loads, to see that it stayed untouched.
UNTOUCHED: dict[str, Any] = {"untouched": True}

#: (user, session) pairs that naive key or file names merge (ST-11): ``{user}_{session}``,
#: ``user:{u}:session:{s}``, ``{u}/{s}``, case-insensitive and normalising file systems, and
#: long ids that a truncating or hashing scheme might fold together.
COLLISION_PAIRS: tuple[tuple[tuple[str, str], tuple[str, str]], ...] = (
    (("alice_x", "s1"), ("alice", "x_s1")),
    (("a:session:b", "c"), ("a", "b:session:c")),
    (("a", "b:state"), ("a:state", "b")),
    (("a/b", "c"), ("a", "b/c")),
    (("a\\b", "c"), ("a", "b\\c")),
    (("u", "A"), ("u", "a")),
    (("U", "s"), ("u", "s")),
    (("u", "é"), ("u", "e\u0301")),
    (("u", "x.json"), ("u", "x")),
    (("u", "{a}b"), ("u", "{a}c")),
    (("u", "x" * 256), ("u", "x" * 255 + "y")),
    (("x" * 256, "s"), ("x" * 255, "xs")),
    (("u", "%2F"), ("u", "/")),
    (("u", "a%3Ab"), ("u", "a:b")),
)

#: Users and sessions that make the state machine meet the collision pairs above.
_USER_POOL = ("alice", "alice_x", "a", "a:session:b", "u", "U", DEFAULT_USER_ID)
_SESSION_POOL = ("s1", "x_s1", "c", "b:session:c", "A", "a", "é", "e\u0301")


def user_ids() -> st.SearchStrategy[str]:
    """Users for the state machine: a small pool (so keys meet) plus hostile ids (G-2)."""
    return st.one_of(st.sampled_from(_USER_POOL), plain_ids(max_size=2), adversarial_ids())


def session_ids() -> st.SearchStrategy[str]:
    """Sessions for the state machine: a small pool plus hostile ids (G-2)."""
    return st.one_of(st.sampled_from(_SESSION_POOL), plain_ids(max_size=2), adversarial_ids())


def modules_for(states: Mapping[str, Any]) -> dict[str, RecordingModule]:
    """One :class:`RecordingModule` per state."""
    return {name: RecordingModule(state) for name, state in states.items()}


async def save_states(store: Any, session_id: str, user_id: str, states: Mapping[str, Any]) -> None:
    """Save ``states`` (module name to state) as the session's modules."""
    await store.save_session_state(session_id, user_id=user_id, **modules_for(states))


async def load_states(
    store: Any, session_id: str, user_id: str, names: Sequence[str]
) -> dict[str, Any] | None:
    """Load the named modules with ``allow_not_exist=False``.

    Returns the state each module received (modules left untouched are absent), or None if the
    store raised NotFound. Fails the test if a module was loaded twice (ST-4) or touched by a
    load that found nothing (ST-5).
    """
    modules = {name: RecordingModule(dict(UNTOUCHED)) for name in names}
    try:
        await store.load_session_state(
            session_id, user_id=user_id, allow_not_exist=False, **modules
        )
    except NotFound:
        touched = [name for name, module in modules.items() if module.loads]
        assert not touched, f"ST-5: a load that raised NotFound loaded modules {touched}"
        return None
    result: dict[str, Any] = {}
    for name, module in modules.items():
        assert len(module.loads) <= 1, f"ST-4: load_state_dict of {name!r} called twice"
        if module.loads:
            result[name] = module.loads[0]
    return result


def assert_same_states(
    actual: Mapping[str, Any] | None, expected: Mapping[str, Any] | None
) -> None:
    """Fail unless two load results are identical in the sense of G-4 (None: no session)."""
    if expected is None or actual is None:
        assert actual == expected, f"expected {expected!r}, the store gave {actual!r}"
        return
    assert set(actual) == set(expected), (
        f"modules loaded {sorted(actual)}, expected {sorted(expected)}"
    )
    for name, state in expected.items():
        assert same_json(actual[name], state), (
            f"module {name!r}: the store gave {actual[name]!r}, expected {state!r}"
        )


@contextmanager
def opened(harness: Harness[Any], context: StoreContext | None = None) -> Iterator[Any]:
    """Open a store for ``context`` across several ``harness.run`` calls; close it at the end."""
    manager = harness.open(context)
    store = harness.run(manager.__aenter__())
    try:
        yield store
    finally:
        harness.run(manager.__aexit__(None, None, None))


def invalid_module_states() -> st.SearchStrategy[Any]:
    """States a module may not return (ST-6): non-objects and objects holding non-JSON values."""
    return st.one_of(
        st.sampled_from([[1, 2], "text", 3, None, (("k", 1),)]),
        invalid_json_values().map(lambda bad: {"bad": bad}),
    )


class StateSessionMachine(RuleBasedStateMachine):
    """Random operation sequences on one fresh store, each result compared with the model.

    Rules save (replacing the whole state, ST-3), load named modules (ST-4, ST-5), delete
    (ST-8), list with paging (ST-9), try invalid saves (ST-6) and, for durable backends, close
    and reopen the store (ST-14). Users and sessions come from pools that contain the collision
    pairs, so a store that merges two pairs' storage diverges from the model (ST-11).
    """

    keys = Bundle("keys")

    def __init__(self, harness: Harness[Any], *, durable: bool) -> None:
        super().__init__()
        self.harness = harness
        self.durable = durable
        self.context = harness.new_context()
        self.model = StateSessionModel()
        self._manager = harness.open(self.context)
        self.store = harness.run(self._manager.__aenter__())

    def teardown(self) -> None:
        self.harness.run(self._manager.__aexit__(None, None, None))

    @rule(target=keys, user=user_ids(), session=session_ids(), states=module_states())
    def save(self, user: str, session: str, states: dict[str, Any]) -> tuple[str, str]:
        note(f"save({session!r}, user_id={user!r}, modules={sorted(states)})")
        self.harness.run(save_states(self.store, session, user, states))
        self.model.save(session, user, states)
        return (user, session)

    @rule(key=keys, states=module_states())
    def save_again(self, key: tuple[str, str], states: dict[str, Any]) -> None:
        user, session = key
        note(f"save({session!r}, user_id={user!r}, modules={sorted(states)}) again")
        self.harness.run(save_states(self.store, session, user, states))
        self.model.save(session, user, states)

    @rule(key=keys, states=module_states(), bad=invalid_module_states())
    def save_invalid(self, key: tuple[str, str], states: dict[str, Any], bad: Any) -> None:
        user, session = key
        note(f"invalid save({session!r}, user_id={user!r})")
        modules = {**modules_for(states), "bad_module": RecordingModule(bad)}
        with pytest.raises(InvalidArgument):
            self.harness.run(self.store.save_session_state(session, user_id=user, **modules))

    @rule(
        key=st.one_of(keys, st.tuples(user_ids(), session_ids())),
        names=st.lists(module_names(), unique=True, max_size=4),
    )
    def load(self, key: tuple[str, str], names: list[str]) -> None:
        user, session = key
        note(f"load({session!r}, user_id={user!r}, modules={names})")
        actual = self.harness.run(load_states(self.store, session, user, names))
        assert_same_states(actual, self.model.load(session, user, names))

    @rule(key=st.one_of(keys, st.tuples(user_ids(), session_ids())))
    def load_allowing_missing(self, key: tuple[str, str]) -> None:
        user, session = key
        module = RecordingModule(dict(UNTOUCHED))
        self.harness.run(self.store.load_session_state(session, user_id=user, agent=module))
        expected = self.model.load(session, user, ["agent"])
        if expected is None or "agent" not in expected:
            assert module.loads == [], "ST-4/ST-5: a module without stored state was loaded"
        else:
            assert len(module.loads) == 1 and same_json(module.loads[0], expected["agent"])

    @rule(key=st.one_of(keys, st.tuples(user_ids(), session_ids())))
    def delete(self, key: tuple[str, str]) -> None:
        user, session = key
        note(f"delete({session!r}, user_id={user!r})")
        deleted = self.harness.run(self.store.delete_session_state(session, user_id=user))
        assert deleted is self.model.delete(session, user), "ST-8: wrong delete result"

    @rule(
        user=st.one_of(st.sampled_from(_USER_POOL), user_ids()),
        after=st.one_of(st.none(), session_ids()),
        limit=st.one_of(st.none(), st.integers(min_value=0, max_value=4)),
    )
    def list_sessions(self, user: str, after: str | None, limit: int | None) -> None:
        listed = self.harness.run(self.store.list_sessions(user, after=after, limit=limit))
        expected = self.model.list_sessions(user, after=after, limit=limit)
        assert listed == expected, f"ST-9: list_sessions({user!r}, {after!r}, {limit!r})"

    @precondition(lambda self: self.durable)
    @rule()
    def reopen(self) -> None:
        note("close and reopen the store")
        self.harness.run(self._manager.__aexit__(None, None, None))
        self._manager = self.harness.open(self.context)
        self.store = self.harness.run(self._manager.__aenter__())


def machine_for(harness: Harness[Any], *, durable: bool) -> type[StateSessionMachine]:
    """A :class:`StateSessionMachine` class bound to ``harness``, as hypothesis wants a class."""

    class BoundStateSessionMachine(StateSessionMachine):
        def __init__(self) -> None:
            super().__init__(harness, durable=durable)

    return BoundStateSessionMachine
