"""The state machine against the model, and isolation of ids and namespaces (ST-11, ST-12,
G-2, G-19).
"""

from __future__ import annotations

from typing import Any

import hypothesis
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test

from ..backend import Capability
from ..harness import Harness
from ..markers import requirement
from ..models.state_session import StateSessionModel
from ..strategies import adversarial_ids
from .state_session_support import (
    COLLISION_PAIRS,
    load_states,
    machine_for,
    opened,
    save_states,
)

__all__ = ["IsolationTests", "MachineTests"]


class MachineTests:
    """Random operation sequences compared with the model at every step."""

    # --- the state machine -------------------------------------------------------------------

    @requirement("ST-3", "ST-4", "ST-5", "ST-6", "ST-8", "ST-9", "ST-11", "G-2")
    def test_state_machine(self, harness: Harness[Any]) -> None:
        """ST-3, ST-4, ST-5, ST-6, ST-8, ST-9, ST-11, G-2: random operation sequences over
        colliding and hostile ids agree with the model at every step (and across reopening,
        for durable backends)."""
        durable = harness.backend.claims(Capability.DURABLE)
        # One bug, shrunk, is enough to report; shrinking several costs minutes on slow disks.
        settings = hypothesis.settings(harness.settings, report_multiple_bugs=False)
        run_state_machine_as_test(machine_for(harness, durable=durable), settings=settings)


class IsolationTests:
    """Colliding and hostile ids, paths that try to escape, and namespaces."""

    # --- isolation ---------------------------------------------------------------------------

    @requirement("ST-11", "G-2")
    def test_collision_pairs_are_isolated(self, harness: Harness[Any]) -> None:
        """ST-11, G-2: pairs that naive keys or file names merge stay separate sessions."""

        async def body(store: Any) -> None:
            for first, second in COLLISION_PAIRS:
                for user, session in (first, second):
                    await save_states(store, session, user, {"m": {"key": [user, session]}})
                for user, session in (first, second):
                    loaded = await load_states(store, session, user, ["m"])
                    assert loaded == {"m": {"key": [user, session]}}, (
                        f"ST-11: ({user!r}, {session!r}) shares storage with its pair"
                    )
                assert await store.delete_session_state(second[1], user_id=second[0]) is True
                assert await load_states(store, first[1], first[0], ["m"]) == {
                    "m": {"key": list(first)}
                }, f"ST-11: deleting {second!r} removed {first!r}"
                assert await store.delete_session_state(first[1], user_id=first[0]) is True
            for user in {u for pair in COLLISION_PAIRS for (u, _s) in pair}:
                assert await store.list_sessions(user) == [], f"ST-11: {user!r} still lists"

        harness.with_store(body)

    @requirement("ST-11", "ST-9", "G-2")
    def test_hostile_ids_are_isolated(self, harness: Harness[Any]) -> None:
        """ST-11, ST-9, G-2: any set of hostile (user, session) pairs keeps one state each, and
        each user lists exactly their own sessions."""
        with opened(harness) as store:

            def check(pairs: list[tuple[str, str]]) -> None:
                model = StateSessionModel()
                for user, session in pairs:
                    harness.run(save_states(store, session, user, {"m": {"k": [user, session]}}))
                    model.save(session, user, {"m": {"k": [user, session]}})
                for user, session in pairs:
                    loaded = harness.run(load_states(store, session, user, ["m"]))
                    assert loaded == {"m": {"k": [user, session]}}
                for user in model.users():
                    assert harness.run(store.list_sessions(user)) == model.list_sessions(user)
                for user, session in pairs:
                    harness.run(store.delete_session_state(session, user_id=user))

            harness.for_all(
                check,
                pairs=st.lists(
                    st.tuples(adversarial_ids(), adversarial_ids()), max_size=5, unique=True
                ),
            )

    @requirement("ST-11", "ST-12", "G-2", "G-19")
    def test_ids_never_escape_the_store(self, harness: Harness[Any]) -> None:
        """ST-11, ST-12, G-2, G-19: path-like ids, also ones aimed at a neighbouring
        namespace's directory or outside the context's root, write nothing outside the store."""
        mine = harness.context
        neighbour = harness.new_context(root=mine.root)
        parent = mine.root.parent
        aimed = [
            "..",
            "../x",
            *("../" * depth + "escaped" for depth in range(2, 6)),
            f"../{neighbour.namespace}",
            f"../{neighbour.namespace}/u",
            f"../{neighbour.namespace}/u_s",
            str(parent / "escaped-abs"),
            str(mine.root / neighbour.namespace / "u"),
            "/abs/path",
            "~",
        ]
        with opened(harness, neighbour) as theirs:
            harness.run(save_states(theirs, "s", "u", {"m": {"owner": "neighbour"}}))
            with opened(harness, mine) as store:
                pairs = [(u, "s") for u in aimed] + [("u", s) for s in aimed]
                pairs += [(a, a) for a in aimed]
                for user, session in pairs:
                    harness.run(save_states(store, session, user, {"m": {"k": [user, session]}}))
                for user, session in pairs:
                    loaded = harness.run(load_states(store, session, user, ["m"]))
                    assert loaded == {"m": {"k": [user, session]}}
            escaped = harness.files_outside_contexts()
            assert not escaped, f"G-2: a store wrote outside its context's root: {escaped}"
            assert harness.run(load_states(theirs, "s", "u", ["m"])) == {
                "m": {"owner": "neighbour"}
            }, "ST-12: an id reached the neighbouring namespace"
            for user in [*aimed, "u"]:
                expected = ["s"] if user == "u" else []
                assert harness.run(theirs.list_sessions(user)) == expected

    @requirement("ST-12", "G-19")
    def test_namespaces_are_isolated(self, harness: Harness[Any]) -> None:
        """ST-12, G-19: two namespaces on one root never see each other's sessions."""
        first = harness.context
        second = harness.new_context(root=first.root)
        with opened(harness, first) as one, opened(harness, second) as two:
            harness.run(save_states(one, "s", "u", {"m": {"ns": 1}}))
            harness.run(save_states(one, "only-one", "u", {"m": {"ns": 1}}))
            assert harness.run(load_states(two, "s", "u", ["m"])) is None
            assert harness.run(two.list_sessions("u")) == []
            assert harness.run(two.delete_session_state("only-one", user_id="u")) is False
            harness.run(save_states(two, "s", "u", {"m": {"ns": 2}}))
            assert harness.run(load_states(one, "s", "u", ["m"])) == {"m": {"ns": 1}}
            assert harness.run(load_states(two, "s", "u", ["m"])) == {"m": {"ns": 2}}
            assert harness.run(two.delete_session_state("s", user_id="u")) is True
            assert harness.run(one.list_sessions("u")) == ["only-one", "s"]
