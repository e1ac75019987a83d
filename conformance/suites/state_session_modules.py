"""Requirement tests of ids, saving and loading (ST-1 .. ST-5, G-1, G-3, G-4, G-7, G-10).

Readable examples, one behaviour each; the state machine in ``state_session_isolation``
covers the same rules with random operation sequences.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest

from agentstores.spec.errors import InvalidArgument, NotFound, StoreError
from agentstores.spec.state_session import DEFAULT_USER_ID

from ..harness import Harness
from ..markers import requirement
from ..models.state_session import RecordingModule, module_states
from .state_session_support import (
    UNTOUCHED,
    assert_same_states,
    load_states,
    opened,
    save_states,
)

__all__ = ["ModuleTests"]


class ModuleError(Exception):
    """Raised by a test module's own code; a store must let it through unchanged (ST-2, ST-4)."""


class _FailingModule(RecordingModule):
    """A module whose ``state_dict`` or ``load_state_dict`` raises :class:`ModuleError`."""

    def __init__(self, *, fail_save: bool = False, fail_load: bool = False) -> None:
        super().__init__({"ok": True})
        self.fail_save = fail_save
        self.fail_load = fail_load

    def state_dict(self) -> Any:
        if self.fail_save:
            raise ModuleError("state_dict failed")
        return super().state_dict()

    def load_state_dict(self, state_dict: dict[str, Any], /) -> None:
        super().load_state_dict(state_dict)
        if self.fail_load:
            raise ModuleError("load_state_dict failed")


class _Timeline:
    """Real time since a start, for the TTL tests."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self.start

    def sleep_until(self, seconds: float) -> None:
        delay = self.start + seconds - time.monotonic()
        if delay > 0:
            time.sleep(delay)


class ModuleTests:
    """Ids and module names, what a save stores and what a load restores."""

    # --- ids and modules ---------------------------------------------------------------------

    @requirement("ST-3", "ST-4", "G-4")
    def test_save_then_load_round_trips(self, harness: Harness[Any]) -> None:
        """ST-3, ST-4, G-4: every saved module state comes back exactly, big ints and -0.0
        included."""
        counter = itertools.count()
        with opened(harness) as store:

            def check(states: dict[str, Any]) -> None:
                session = f"round-trip-{next(counter)}"
                harness.run(save_states(store, session, "u", states))
                loaded = harness.run(load_states(store, session, "u", list(states)))
                assert_same_states(loaded, states)

            harness.for_all(check, states=module_states())

    @requirement("ST-1")
    def test_default_user_id(self, harness: Harness[Any]) -> None:
        """ST-1: a call without user id and a call with "default_user" reach one session."""

        async def body(store: Any) -> None:
            await store.save_session_state("s1", agent=RecordingModule({"v": 1}))
            loaded = await load_states(store, "s1", DEFAULT_USER_ID, ["agent"])
            assert loaded == {"agent": {"v": 1}}, "ST-1: the default user is not 'default_user'"
            await store.save_session_state("s2", user_id=DEFAULT_USER_ID, agent=RecordingModule())
            module = RecordingModule(dict(UNTOUCHED))
            await store.load_session_state("s2", allow_not_exist=False, agent=module)
            assert module.loads == [{}]
            assert await store.list_sessions() == ["s1", "s2"]
            assert await store.list_sessions(DEFAULT_USER_ID) == ["s1", "s2"]
            assert await store.delete_session_state("s1") is True
            assert await store.list_sessions(DEFAULT_USER_ID) == ["s2"]

        harness.with_store(body)

    @requirement("ST-1", "G-3")
    def test_empty_user_id_is_not_an_alias(self, harness: Harness[Any]) -> None:
        """ST-1, G-3: user id "" raises InvalidArgument everywhere and writes nothing."""

        async def body(store: Any) -> None:
            await store.save_session_state("s", agent=RecordingModule({"v": "default"}))
            with pytest.raises(InvalidArgument):
                await store.save_session_state("s", user_id="", agent=RecordingModule({"v": 2}))
            with pytest.raises(InvalidArgument):
                await store.load_session_state("s", user_id="", agent=RecordingModule())
            with pytest.raises(InvalidArgument):
                await store.delete_session_state("s", user_id="")
            with pytest.raises(InvalidArgument):
                await store.list_sessions("")
            assert await load_states(store, "s", DEFAULT_USER_ID, ["agent"]) == {
                "agent": {"v": "default"}
            }

        harness.with_store(body)

    @requirement("ST-1", "G-1", "G-3")
    def test_module_names_are_ids(self, harness: Harness[Any]) -> None:
        """ST-1, G-1, G-3: any id names a module; a name outside the id domain is rejected."""
        names = ["a/b", "../x", "a:b", "é", "e\u0301", " ", "x" * 256, "{tag}", "日本語"]

        async def body(store: Any) -> None:
            states = {name: {"name": name} for name in names}
            await save_states(store, "s", "u", states)
            assert_same_states(await load_states(store, "s", "u", names), states)
            for bad in ["", "x" * 257, "a\x00b", "\ud800"]:
                with pytest.raises(InvalidArgument):
                    await store.save_session_state("s", user_id="u", **{bad: RecordingModule()})
                with pytest.raises(InvalidArgument):
                    await store.load_session_state("s", user_id="u", **{bad: RecordingModule()})
            assert_same_states(await load_states(store, "s", "u", names), states)

        harness.with_store(body)

    # --- saving ------------------------------------------------------------------------------

    @requirement("ST-2", "G-7")
    def test_save_takes_a_snapshot(self, harness: Harness[Any]) -> None:
        """ST-2, G-7: state_dict() is called once per save; later changes are not stored."""

        async def body(store: Any) -> None:
            module = RecordingModule({"items": [1, 2], "nested": {"k": "v"}})
            await store.save_session_state("s", user_id="u", agent=module)
            assert module.state_dict_calls == 1, "ST-2: state_dict() must be called once"
            module.state["items"].append(3)
            module.state["nested"]["k"] = "changed"
            module.state["new"] = True
            loaded = await load_states(store, "s", "u", ["agent"])
            assert loaded == {"agent": {"items": [1, 2], "nested": {"k": "v"}}}

        harness.with_store(body)

    @requirement("ST-2", "ST-7")
    def test_module_error_propagates_and_nothing_is_written(self, harness: Harness[Any]) -> None:
        """ST-2, ST-7: an exception from state_dict() reaches the caller unchanged and the
        previous state stays whole."""

        async def body(store: Any) -> None:
            await save_states(store, "s", "u", {"a": {"v": 1}, "b": {"v": 1}})
            with pytest.raises(ModuleError):
                await store.save_session_state(
                    "s", user_id="u", a=RecordingModule({"v": 2}), b=_FailingModule(fail_save=True)
                )
            with pytest.raises(ModuleError):
                await store.save_session_state("new", user_id="u", a=_FailingModule(fail_save=True))
            assert await load_states(store, "s", "u", ["a", "b"]) == {"a": {"v": 1}, "b": {"v": 1}}
            assert await store.list_sessions("u") == ["s"]

        harness.with_store(body)

    @requirement("ST-3")
    def test_save_replaces_the_whole_state(self, harness: Harness[Any]) -> None:
        """ST-3: modules an earlier save named and this one does not are gone."""

        async def body(store: Any) -> None:
            await save_states(store, "s", "u", {"agent": {"v": 1}, "memory": {"m": [1]}})
            await save_states(store, "s", "u", {"agent": {"v": 2}})
            loaded = await load_states(store, "s", "u", ["agent", "memory"])
            assert loaded == {"agent": {"v": 2}}, (
                "ST-3: a save must replace the whole state; 'memory' was not named by it"
            )

        harness.with_store(body)

    @requirement("ST-3", "ST-5")
    def test_save_without_modules(self, harness: Harness[Any]) -> None:
        """ST-3, ST-5: a save naming no module creates the session, or empties it."""

        async def body(store: Any) -> None:
            await store.save_session_state("empty", user_id="u")
            assert await load_states(store, "empty", "u", ["agent"]) == {}
            assert await store.list_sessions("u") == ["empty"]
            await save_states(store, "full", "u", {"agent": {"v": 1}})
            await store.save_session_state("full", user_id="u")
            assert await load_states(store, "full", "u", ["agent"]) == {}
            assert await store.list_sessions("u") == ["empty", "full"]

        harness.with_store(body)

    # --- loading -----------------------------------------------------------------------------

    @requirement("ST-4")
    def test_load_leaves_unsaved_modules_untouched(self, harness: Harness[Any]) -> None:
        """ST-4: a named module that the stored state lacks is not loaded at all."""

        async def body(store: Any) -> None:
            await save_states(store, "s", "u", {"agent": {"v": 1}})
            agent, memory = RecordingModule({"old": 1}), RecordingModule({"old": 2})
            await store.load_session_state("s", user_id="u", agent=agent, memory=memory)
            assert agent.loads == [{"v": 1}]
            assert memory.loads == [], "ST-4: a module never saved must not be loaded"
            assert memory.state == {"old": 2}

        harness.with_store(body)

    @requirement("ST-4")
    def test_load_ignores_modules_it_does_not_name(self, harness: Harness[Any]) -> None:
        """ST-4: loading some modules leaves the others stored."""

        async def body(store: Any) -> None:
            await save_states(store, "s", "u", {"agent": {"v": 1}, "memory": {"m": 2}})
            assert await load_states(store, "s", "u", ["agent"]) == {"agent": {"v": 1}}
            assert await load_states(store, "s", "u", ["memory"]) == {"memory": {"m": 2}}
            assert await load_states(store, "s", "u", []) == {}

        harness.with_store(body)

    @requirement("ST-4", "G-7")
    def test_loaded_state_belongs_to_the_module(self, harness: Harness[Any]) -> None:
        """ST-4, G-7: changing a loaded state does not change the stored one."""

        async def body(store: Any) -> None:
            await save_states(store, "s", "u", {"agent": {"items": [1], "d": {"k": 1}}})
            first = await load_states(store, "s", "u", ["agent"])
            assert first is not None
            first["agent"]["items"].append(2)
            first["agent"]["d"]["k"] = 99
            again = await load_states(store, "s", "u", ["agent"])
            assert again == {"agent": {"items": [1], "d": {"k": 1}}}

        harness.with_store(body)

    @requirement("ST-4")
    def test_load_order_and_module_errors(self, harness: Harness[Any]) -> None:
        """ST-4: modules load in the order named; a module's own error propagates unchanged
        and the modules after it are not called."""

        async def body(store: Any) -> None:
            await save_states(store, "s", "u", {"a": {"n": "a"}, "b": {"n": "b"}, "c": {"n": "c"}})
            order: list[str] = []

            class Ordered(RecordingModule):
                def __init__(self, name: str) -> None:
                    super().__init__({})
                    self.name = name

                def load_state_dict(self, state_dict: dict[str, Any], /) -> None:
                    order.append(self.name)
                    super().load_state_dict(state_dict)

            modules = {name: Ordered(name) for name in ["c", "a", "b"]}
            await store.load_session_state("s", user_id="u", **modules)
            assert order == ["c", "a", "b"]
            a, failing, c = RecordingModule(), _FailingModule(fail_load=True), RecordingModule()
            with pytest.raises(ModuleError):
                await store.load_session_state("s", user_id="u", a=a, b=failing, c=c)
            assert a.loads == [{"n": "a"}]
            assert c.loads == [], "ST-4: modules after a failing one must not be loaded"

        harness.with_store(body)

    @requirement("ST-5", "G-10")
    def test_missing_session(self, harness: Harness[Any]) -> None:
        """ST-5, G-10: a missing session loads nothing: None by default, NotFound (a KeyError
        and a StoreError) with allow_not_exist=False."""

        async def body(store: Any) -> None:
            await save_states(store, "other", "u", {"agent": {"v": 1}})
            await save_states(store, "gone", "u", {"agent": {"v": 1}})
            assert await store.delete_session_state("gone", user_id="u") is True
            for session in ["never", "gone"]:
                module = RecordingModule(dict(UNTOUCHED))
                result = await store.load_session_state(session, user_id="u", agent=module)
                assert result is None
                with pytest.raises(NotFound) as raised:
                    await store.load_session_state(
                        session, user_id="u", allow_not_exist=False, agent=module
                    )
                assert isinstance(raised.value, KeyError) and isinstance(raised.value, StoreError)
                assert module.loads == [] and module.state == UNTOUCHED

        harness.with_store(body)
