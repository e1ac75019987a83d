"""Requirement tests of bad input, deleting and listing (ST-6, ST-8 .. ST-10, G-3, G-5, G-8,
G-9).
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import strategies as st

from agentstores.spec.errors import InvalidArgument

from ..harness import Harness
from ..markers import requirement
from ..models.state_session import RecordingModule, StateSessionModel
from ..strategies import adversarial_ids, invalid_ids
from .state_session_support import (
    UNTOUCHED,
    invalid_module_states,
    load_states,
    opened,
    save_states,
)

__all__ = ["BadInputTests", "ListingTests"]


class BadInputTests:
    """Arguments outside their domain: InvalidArgument, nothing written, no module loaded."""

    # --- bad input ---------------------------------------------------------------------------

    @requirement("ST-6", "G-3")
    def test_invalid_ids_are_rejected(self, harness: Harness[Any]) -> None:
        """ST-6, G-3: an id outside the domain in any position raises InvalidArgument and
        nothing is written or loaded."""
        with opened(harness) as store:
            harness.run(save_states(store, "s", "u", {"agent": {"v": 1}}))

            def check(bad: Any, position: str) -> None:
                session, user = (bad, "u") if position == "session" else ("s", bad)
                module = RecordingModule(dict(UNTOUCHED))
                for call in (
                    store.save_session_state(session, user_id=user, agent=RecordingModule()),
                    store.load_session_state(session, user_id=user, agent=module),
                    store.delete_session_state(session, user_id=user),
                ):
                    with pytest.raises(InvalidArgument):
                        harness.run(call)
                if position == "user":
                    with pytest.raises(InvalidArgument):
                        harness.run(store.list_sessions(bad))
                assert module.loads == []
                assert harness.run(store.list_sessions("u")) == ["s"]
                assert harness.run(load_states(store, "s", "u", ["agent"])) == {"agent": {"v": 1}}

            harness.for_all(check, bad=invalid_ids(), position=st.sampled_from(["session", "user"]))

    @requirement("ST-6", "G-5")
    def test_invalid_states_are_rejected(self, harness: Harness[Any]) -> None:
        """ST-6, G-5: a state that is not a JSON object fails the whole save with
        InvalidArgument; the stored state, valid modules included, stays as it was."""
        with opened(harness) as store:
            harness.run(save_states(store, "s", "u", {"agent": {"v": 1}}))

            def check(bad: Any) -> None:
                with pytest.raises(InvalidArgument):
                    harness.run(
                        store.save_session_state(
                            "s",
                            user_id="u",
                            agent=RecordingModule({"v": 2}),
                            bad=RecordingModule(bad),
                        )
                    )
                with pytest.raises(InvalidArgument):
                    harness.run(
                        store.save_session_state("fresh", user_id="u", bad=RecordingModule(bad))
                    )
                assert harness.run(load_states(store, "s", "u", ["agent", "bad"])) == {
                    "agent": {"v": 1}
                }
                assert harness.run(store.list_sessions("u")) == ["s"]

            harness.for_all(check, bad=invalid_module_states())

    @requirement("ST-6")
    def test_non_modules_are_rejected(self, harness: Harness[Any]) -> None:
        """ST-6: values without state_dict / load_state_dict raise InvalidArgument before any
        module is touched."""

        class SaveOnly:
            def state_dict(self) -> dict[str, Any]:
                return {"v": 9}

        async def body(store: Any) -> None:
            await save_states(store, "s", "u", {"agent": {"v": 1}})
            for bad in [{"v": 2}, None, 42, "agent"]:
                with pytest.raises(InvalidArgument):
                    await store.save_session_state(
                        "s", user_id="u", agent=RecordingModule({"v": 2}), bad=bad
                    )
            module = RecordingModule(dict(UNTOUCHED))
            with pytest.raises(InvalidArgument):
                await store.load_session_state("s", user_id="u", agent=module, other=SaveOnly())
            assert module.loads == [], "ST-6: no module may be loaded by a rejected call"
            assert await load_states(store, "s", "u", ["agent", "bad"]) == {"agent": {"v": 1}}

        harness.with_store(body)

    @requirement("ST-6")
    def test_allow_not_exist_must_be_a_bool(self, harness: Harness[Any]) -> None:
        """ST-6: allow_not_exist is a bool; "no", 0 or None raise InvalidArgument."""

        async def body(store: Any) -> None:
            await save_states(store, "s", "u", {"agent": {"v": 1}})
            for bad in ["no", "false", 0, 1, None]:
                module = RecordingModule(dict(UNTOUCHED))
                with pytest.raises(InvalidArgument):
                    await store.load_session_state("s", "u", bad, agent=module)
                with pytest.raises(InvalidArgument):
                    await store.load_session_state("missing", "u", bad, agent=module)
                assert module.loads == []

        harness.with_store(body)


class ListingTests:
    """Deleting sessions and listing a user's sessions with keyset paging."""

    # --- deleting and listing ----------------------------------------------------------------

    @requirement("ST-8")
    def test_delete(self, harness: Harness[Any]) -> None:
        """ST-8: delete removes one session and says whether it existed."""

        async def body(store: Any) -> None:
            await save_states(store, "s", "u", {"agent": {"v": 1}})
            await save_states(store, "t", "u", {"agent": {"v": 2}})
            await save_states(store, "s", "v", {"agent": {"v": 3}})
            assert await store.delete_session_state("s", user_id="u") is True
            assert await store.delete_session_state("s", user_id="u") is False
            assert await store.delete_session_state("never", user_id="u") is False
            assert await store.delete_session_state("s", user_id="nobody") is False
            assert await load_states(store, "s", "u", ["agent"]) is None
            assert await load_states(store, "t", "u", ["agent"]) == {"agent": {"v": 2}}
            assert await load_states(store, "s", "v", ["agent"]) == {"agent": {"v": 3}}
            assert await store.list_sessions("u") == ["t"]

        harness.with_store(body)

    @requirement("ST-9", "G-9")
    def test_list_order_and_paging(self, harness: Harness[Any]) -> None:
        """ST-9, G-9: ids ascend by code point; after is exclusive; limit caps; 0 gives []."""
        sessions = ["b", "a", "B", "é", "e\u0301", "a b", "ab", "日本", "👩‍💻", "~", "a/b"]

        async def body(store: Any) -> None:
            for session in sessions:
                await store.save_session_state(session, user_id="u")
            await store.save_session_state("zz", user_id="someone else")
            ordered = sorted(sessions)
            assert await store.list_sessions("u") == ordered
            assert await store.list_sessions("u", limit=3) == ordered[:3]
            assert await store.list_sessions("u", limit=0) == []
            assert await store.list_sessions("u", limit=10**9) == ordered
            assert await store.list_sessions("u", after="a") == [s for s in ordered if s > "a"]
            assert await store.list_sessions("u", after="aa", limit=2) == ["ab", "b"]
            assert await store.list_sessions("u", after="\U0010ffff") == []
            assert await store.list_sessions("nobody") == []

        harness.with_store(body)

    @requirement("ST-9", "G-8")
    def test_list_rejects_bad_arguments(self, harness: Harness[Any]) -> None:
        """ST-9, G-8: a negative or non-int limit and an after outside the id domain raise
        InvalidArgument; a negative limit never means "all"."""

        async def body(store: Any) -> None:
            await store.save_session_state("s", user_id="u")
            for limit in [-1, -100, "2", 1.5, True]:
                with pytest.raises(InvalidArgument):
                    await store.list_sessions("u", limit=limit)
            for after in ["", "a\x00", 5]:
                with pytest.raises(InvalidArgument):
                    await store.list_sessions("u", after=after)

        harness.with_store(body)

    @requirement("ST-9", "G-9")
    def test_list_matches_the_model(self, harness: Harness[Any]) -> None:
        """ST-9, G-9: listing any set of hostile ids with any bounds equals the model's."""
        counter = itertools.count()
        with opened(harness) as store:

            def check(sessions: list[str], after: str | None, limit: int | None) -> None:
                user = f"lister-{next(counter)}"
                model = StateSessionModel()
                for session in sessions:
                    harness.run(store.save_session_state(session, user_id=user))
                    model.save(session, user)
                listed = harness.run(store.list_sessions(user, after=after, limit=limit))
                assert listed == model.list_sessions(user, after=after, limit=limit)

            harness.for_all(
                check,
                sessions=st.lists(adversarial_ids(), max_size=6, unique=True),
                after=st.one_of(st.none(), adversarial_ids()),
                limit=st.one_of(st.none(), st.integers(min_value=0, max_value=7)),
            )

    @requirement("ST-10")
    def test_paging_walk_is_stable_under_changes(self, harness: Harness[Any]) -> None:
        """ST-10: walking pages while other sessions come and go returns every session that
        stays exactly once, in order."""

        async def body(store: Any) -> None:
            stable = [f"s{i:02d}" for i in range(12)]
            churn = [f"s{i:02d}x" for i in range(12)]
            for session in stable + churn:
                await store.save_session_state(session, user_id="u")
            seen: list[str] = []
            after: str | None = None
            for step in itertools.count():
                page = await store.list_sessions("u", after=after, limit=3)
                if not page:
                    break
                seen.extend(page)
                after = page[-1]
                # Delete churn sessions around the cursor and add new ones on both sides of it
                # (right after it for the first pages only, so that the walk ends).
                await store.delete_session_state(churn[step % len(churn)], user_id="u")
                await store.save_session_state(f"s{step:02d}y", user_id="u")
                if step < 4:
                    await store.save_session_state(f"{after}z", user_id="u")
                assert step < 100, "ST-10: the walk does not end"
            assert seen == sorted(set(seen)), "ST-10: pages repeat or go backwards"
            missing = [s for s in stable if s not in seen]
            assert not missing, f"ST-10: the walk skipped {missing}"

        harness.with_store(body)
