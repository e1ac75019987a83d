"""Session-service suite: isolation, bad input and durability.

Part of :class:`~agentstores.conformance.suites.session_service.SessionServiceSuite`
(SV-26, SV-27, SV-29; G-2, G-3, G-5, G-16, G-19).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import strategies as st

from agentstores.spec.errors import InvalidArgument, NotFound
from agentstores.spec.session_service import (
    CreateRequest,
    EventFilter,
    GetRequest,
    ListRequest,
    SearchOptions,
    SessionService,
    UpdateRequest,
)

from ..backend import Capability
from ..harness import Harness
from ..markers import needs, requirement
from ..strategies import adversarial_ids, invalid_ids, invalid_json_values
from ._session_service_support import APP, USER, create, event, snapshot

__all__ = ["SessionServiceRobustnessTests"]

H = Harness[Any]

#: What the bad-input tests start from: one session with state of every scope and an event.
_SEED_STATE = {"k": 1, "app:a": 1, "user:u": 1}


async def _seed(store: SessionService) -> None:
    session = await create(store, "s1", state=_SEED_STATE)
    await store.append_event(session, event("seed", id="e1", delta={"k": 2}))


class SessionServiceRobustnessTests:
    """Isolation, bad input and durability tests; mixed into the suite class."""

    @requirement("SV-26", "G-2")
    def test_joined_names_stay_apart(self, harness: H) -> None:
        """SV-26, G-2: ("a:b", "c") and ("a", "b:c") share nothing; neither do "a:b" and "a"."""

        async def body(store: SessionService) -> None:
            one = await create(store, "s", app="a:b", user="c", state={"k": 1, "user:u": 1})
            await store.append_event(one, event("secret", id="e", delta={"app:x": 1}))
            two = await create(store, "s", app="a", user="b:c")
            assert two.state == {}, "state leaked between ('a:b','c') and ('a','b:c')"
            assert await store.get_events("a", "b:c", "s") == []
            assert [s.id for s in await store.list(ListRequest("a", "b:c"))] == ["s"]
            three = await create(store, "s", app="a", user="b:c:s")
            assert three.state == {}
            assert await store.search(SearchOptions("secret", "a", "b:c")) == []
            assert await store.list(ListRequest("a:b", "c:s")) == []
            four = await create(store, "s", app="a:b", user="d")
            assert four.state == {"app:x": 1}

        harness.with_store(body)

    @requirement("SV-26", "G-1", "G-2")
    def test_adversarial_tenants_are_isolated(self, harness: H) -> None:
        """SV-26, G-1, G-2: any two distinct (app, user) pairs share no session, no user:
        state, and app: state only when the app is the same; names come back exactly."""
        pairs = st.tuples(adversarial_ids(), adversarial_ids())

        def check(first: tuple[str, str], second: tuple[str, str], session_id: str) -> None:
            if first == second:
                return

            async def body(store: SessionService) -> None:
                made = await create(
                    store,
                    session_id,
                    app=first[0],
                    user=first[1],
                    state={"k": 1, "user:u": 1, "app:a": 1},
                )
                assert (made.app_name, made.user_id, made.id) == (*first, session_id)
                await store.append_event(made, event("needle", id="e"))
                assert await store.get(GetRequest(*second, session_id)) is None
                assert await store.list(ListRequest(*second)) == []
                assert await store.search(SearchOptions("needle", *second)) == []
                with pytest.raises(NotFound):
                    await store.get_events(*second, session_id)
                other = await create(store, session_id, app=second[0], user=second[1])
                expected = {"app:a": 1} if first[0] == second[0] else {}
                assert other.state == expected, f"state leaked from {first!r} to {second!r}"
                listed = await store.list(ListRequest(*first))
                assert [(s.app_name, s.user_id, s.id) for s in listed] == [(*first, session_id)]

            harness.with_store(body, harness.new_context())

        harness.for_all(check, first=pairs, second=pairs, session_id=adversarial_ids())

    @requirement("G-19")
    def test_namespaces_on_one_root_are_isolated(self, harness: H) -> None:
        """G-19: a context sharing the directory but not the namespace sees nothing."""
        neighbour = harness.new_context(root=harness.context.root)
        harness.with_store(_seed)

        async def body(store: SessionService) -> None:
            assert await store.get(GetRequest(APP, USER, "s1")) is None
            assert await store.list(ListRequest(APP, USER)) == []
            fresh = await create(store, "s1")
            assert fresh.state == {}, "app:/user: state leaked across namespaces"

        harness.with_store(body, neighbour)

    @requirement("SV-27", "G-3")
    def test_invalid_ids_write_nothing(self, harness: H) -> None:
        """SV-27, G-3: an id outside the domain in any operation is InvalidArgument."""
        harness.with_store(_seed)

        def check(bad: Any, slot: int) -> None:
            key = [APP, USER, "s1"]
            key[slot] = bad

            async def body(store: SessionService) -> None:
                before = await snapshot(store, [(APP, USER)])
                app, user, sid = key
                calls: list[Callable[[], Awaitable[object]]] = [
                    lambda: store.get(GetRequest(app, user, sid)),
                    lambda: store.update(UpdateRequest(app, user, sid, {"x": 1})),
                    lambda: store.delete(app, user, sid),
                    lambda: store.get_events(app, user, sid),
                ]
                if bad is not None or slot < 2:  # a None session_id is valid here
                    calls.append(lambda: store.create(CreateRequest(app, user, session_id=sid)))
                    calls.append(
                        lambda: store.search(SearchOptions("x", app, user, session_id=sid))
                    )
                if bad is not None:  # None is a valid agent_id and author filter
                    calls.append(lambda: store.create(CreateRequest(APP, USER, agent_id=bad)))
                    calls.append(lambda: store.get_events(APP, USER, "s1", EventFilter(author=bad)))
                if slot < 2:
                    calls.append(lambda: store.list(ListRequest(app, user)))
                for call in calls:
                    with pytest.raises(InvalidArgument):
                        await call()
                assert await snapshot(store, [(APP, USER)]) == before

            harness.with_store(body)

        harness.for_all(check, bad=invalid_ids(), slot=st.integers(0, 2))

    @requirement("SV-27", "G-5")
    def test_invalid_values_write_nothing(self, harness: H) -> None:
        """SV-27, G-5: a value outside the JSON domain anywhere writes nothing at all."""
        harness.with_store(_seed)

        def check(bad: Any) -> None:
            async def body(store: SessionService) -> None:
                session = await store.get(GetRequest(APP, USER, "s1"))
                assert session is not None
                before = await snapshot(store, [(APP, USER)])
                mixed = {"k": 5, "app:a": 5, "user:u": 5}
                calls: list[Callable[[], Awaitable[object]]] = [
                    lambda: store.create(CreateRequest(APP, USER, state={**mixed, "x": bad})),
                    lambda: store.create(CreateRequest(APP, USER, metadata={"x": bad})),
                    lambda: store.update(UpdateRequest(APP, USER, "s1", {"x": bad})),
                    lambda: store.update_state(session, {**mixed, "temp:x": bad}),
                    lambda: store.append_event(session, event("x", delta={**mixed, "x": bad})),
                    lambda: store.append_event(
                        session, event("x", delta=mixed, metadata={"x": bad})
                    ),
                ]
                for call in calls:
                    with pytest.raises(InvalidArgument):
                        await call()
                assert await snapshot(store, [(APP, USER)]) == before

            harness.with_store(body)

        harness.for_all(check, bad=invalid_json_values())

    @requirement("SV-27", "G-10")
    def test_wrong_record_types_are_invalid(self, harness: H) -> None:
        """SV-27, G-10: requests of the wrong type are InvalidArgument (also a ValueError)."""
        harness.with_store(_seed)

        async def body(store: SessionService) -> None:
            session = await store.get(GetRequest(APP, USER, "s1"))
            assert session is not None
            calls: list[Callable[[], Awaitable[object]]] = [
                lambda: store.create(GetRequest(APP, USER, "x")),  # type: ignore[arg-type]
                lambda: store.get(CreateRequest(APP, USER)),  # type: ignore[arg-type]
                lambda: store.update(None),  # type: ignore[arg-type]
                lambda: store.list({"app_name": APP, "user_id": USER}),  # type: ignore[arg-type]
                lambda: store.update_state(session, [("k", 1)]),  # type: ignore[arg-type]
                lambda: store.search("query"),  # type: ignore[arg-type]
                lambda: store.get(GetRequest(APP, USER, "s1", num_recent_events=1.0)),  # type: ignore[arg-type]
                lambda: store.list(ListRequest(APP, USER, limit=True)),
            ]
            before = await snapshot(store, [(APP, USER)])
            for call in calls:
                with pytest.raises(ValueError) as caught:
                    await call()
                assert isinstance(caught.value, InvalidArgument)
            assert await snapshot(store, [(APP, USER)]) == before

        harness.with_store(body)

    @requirement("G-16")
    def test_close_is_idempotent(self, harness: H) -> None:
        """G-16: close() may be called twice (and again by the opener's context manager)."""

        async def body(store: SessionService) -> None:
            await create(store, "s1")
            await store.close()
            await store.close()

        harness.with_store(body)

    @needs(Capability.DURABLE)
    @requirement("SV-29", "SV-9", "G-16")
    def test_everything_survives_reopening(self, harness: H) -> None:
        """SV-29, SV-9, G-16: sessions, events, every stored scope survive; temp: keys do not."""
        pairs = [(APP, USER), (APP, "other"), ("other-app", USER)]

        async def write(store: SessionService) -> None:
            s1 = await create(
                store,
                "s1",
                state={"k": 1, "app:a": [1.0], "temp:t": 1},
                agent_id="ag",
                metadata={"m": -0.0},
            )
            for i, ts in enumerate((30, 10, 20)):
                delta = {"n": i, "user:u": 2**70, "temp:x": i, "session:s": None}
                s1 = await store.append_event(
                    s1, event(f"m{i}", id=f"e{i}", timestamp=ts, delta=delta)
                )
            s2 = await create(store, "s2", user="other")
            await store.update_state(s2, {"user:v": "ü"})
            await create(store, "s3", app="other-app")
            await store.update(UpdateRequest(APP, USER, "s1", {"m": 2}))
            await store.close()
            await store.close()  # G-16: idempotent

        harness.with_store(write)

        async def read_all(store: SessionService) -> str:
            return await snapshot(store, pairs)

        first = harness.with_store(read_all)
        second = harness.with_store(read_all)
        assert first == second

        async def check(store: SessionService) -> None:
            s1 = await store.get(GetRequest(APP, USER, "s1"))
            assert s1 is not None
            assert dict(s1.state) == {
                "k": 1,
                "app:a": [1.0],
                "n": 2,
                "user:u": 2**70,
                "session:s": None,
            }
            assert [e.id for e in s1.events] == ["e1", "e2", "e0"] and s1.version == 3
            assert s1.metadata == {"m": 2} and s1.agent_id == "ag"
            assert all("temp:x" not in e.actions.state_delta for e in s1.events)
            after = await store.append_event(s1, event("after reopen", id="e3"))
            assert after.version == 4
            other = await store.get(GetRequest(APP, "other", "s2"))
            assert other is not None and other.state == {"app:a": [1.0], "user:v": "ü"}

        harness.with_store(check)
