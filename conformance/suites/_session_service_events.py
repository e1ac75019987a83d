"""Session-service suite, events: records, appends, order, filters, concurrency.

Part of :class:`~agentstores.conformance.suites.session_service.SessionServiceSuite`
(SV-12 .. SV-18, SV-28; G-7, G-12 .. G-14, G-17, G-18).
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import strategies as st

from agentstores.spec.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from agentstores.spec.messages import Message
from agentstores.spec.session_service import (
    Event,
    EventActions,
    EventFilter,
    GetRequest,
    Session,
    SessionService,
    UpdateRequest,
    is_temp_key,
)
from agentstores.spec.values import check_id

from ..harness import Harness
from ..markers import requirement
from ..strategies import json_objects, messages, plain_ids, timestamps
from ._session_service_support import APP, USER, assert_same, create, event, snapshot

__all__ = ["SessionServiceEventTests", "events"]

H = Harness[Any]


def events() -> st.SearchStrategy[Event]:
    """Events with every field exercised (SV-12): optional ids and times, any message,
    scoped state deltas (``temp:`` keys included), artifacts and custom actions."""
    keys = st.sampled_from(["k", "session:k", "app:k", "user:k", "temp:k", "temp:j", "App:k"])
    actions = st.builds(
        EventActions,
        state_delta=st.dictionaries(keys, st.sampled_from([0, 1.0, True, None, "v", [-0.0]])),
        artifact_delta=st.dictionaries(plain_ids(), st.integers(0, 2**64 - 1), max_size=2),
        skip_summarization=st.booleans(),
        transfer_to_agent=st.one_of(st.none(), plain_ids()),
        escalate=st.booleans(),
        custom_actions=json_objects(max_size=2),
    )
    optional_id = st.one_of(st.none(), plain_ids())
    return st.builds(
        Event,
        author=st.sampled_from(["user", "agent", "a/b:c"]),
        id=optional_id,
        timestamp=st.one_of(st.none(), timestamps()),
        invocation_id=optional_id,
        agent_id=optional_id,
        branch=st.one_of(st.none(), st.sampled_from(["a", "a.b", "a.b.c"])),
        content=st.one_of(st.none(), messages()),
        reasoning=st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=10),
        actions=actions,
        long_running_tool_ids=st.lists(plain_ids(), max_size=2).map(tuple),
        metadata=json_objects(max_size=2),
    )


def _with(record: Any, **changes: Any) -> Any:
    """``record`` with fields replaced by values of any type (to build bad input)."""
    return replace(record, **changes)


def _expected_stored(given: Event, stored: Event, now: int) -> Event:
    """What SV-12 says is stored for ``given``: the store's id if none, its time if none,
    and the state delta without ``temp:`` keys."""
    delta = {k: v for k, v in given.actions.state_delta.items() if not is_temp_key(k)}
    return replace(
        given,
        id=given.id if given.id is not None else stored.id,
        timestamp=given.timestamp if given.timestamp is not None else now,
        actions=replace(given.actions, state_delta=delta),
    )


class SessionServiceEventTests:
    """Event tests; mixed into the suite class (which provides the fixtures)."""

    @requirement("SV-12", "SV-13", "G-4", "G-12", "G-13", "G-14")
    def test_events_round_trip_exactly(self, harness: H) -> None:
        """SV-12, SV-13, G-4, G-12 .. G-14: every field of an event comes back exactly."""
        counter = itertools.count()

        def check(given: Event) -> None:
            session_id = f"s{next(counter)}"

            async def body(store: SessionService) -> None:
                session = await create(store, session_id)
                after = await store.append_event(session, given)
                stored = after.events[-1]
                assert stored.id is not None
                check_id(stored.id)
                expected = _expected_stored(given, stored, harness.clock())
                assert_same(stored, expected, "returned event")
                read = await store.get(GetRequest(APP, USER, session_id))
                assert read is not None
                assert_same(read.events, (expected,), "event read back")
                assert_same(await store.get_events(APP, USER, session_id), [expected], "events")

            harness.with_store(body)

        harness.for_all(check, given=events())

    @requirement("SV-12", "G-6")
    def test_store_fills_event_id_and_time(self, harness: H) -> None:
        """SV-12, G-6: a missing id becomes a fresh unique id, a missing time the clock's."""
        harness.clock.set(5_000)

        async def body(store: SessionService) -> None:
            session = await create(store, "s1")
            for _ in range(4):
                session = await store.append_event(session, event("x"))
            ids = [e.id for e in session.events]
            assert len(set(ids)) == 4 and None not in ids
            assert [e.timestamp for e in session.events] == [5_000] * 4
            given = await store.append_event(session, event("y", id="mine", timestamp=7))
            assert given.events[-1].id == "mine" and given.events[-1].timestamp == 7

        harness.with_store(body)

    @requirement("SV-12", "SV-27", "G-3", "G-5", "G-14")
    def test_malformed_events_write_nothing(self, harness: H) -> None:
        """SV-12, SV-27, G-3, G-5, G-14: a bad event field is InvalidArgument; nothing written."""
        good = event("x", delta={"k": 1, "app:a": 1})
        bad_events: list[Any] = [
            "not an event",
            _with(good, author=""),
            _with(good, author=None),
            _with(good, id=""),
            _with(good, id="x" * 257),
            _with(good, timestamp=-1),
            _with(good, timestamp=1.5),
            _with(good, timestamp=True),
            _with(good, invocation_id=""),
            _with(good, agent_id="a\x00"),
            _with(good, branch=""),
            _with(good, content="text"),
            _with(good, content=Message(role="")),
            _with(good, content=Message("user", ({"no": "type"},))),
            _with(good, reasoning=None),
            _with(good, reasoning="\ud800"),
            _with(good, long_running_tool_ids=("",)),
            _with(good, metadata={"x": float("nan")}),
            _with(good, metadata={1: 2}),
            _with(good, actions=_with(good.actions, state_delta={"k": {1, 2}})),
            _with(good, actions=_with(good.actions, artifact_delta={"f": -1})),
            _with(good, actions=_with(good.actions, artifact_delta={"f": 1.0})),
            _with(good, actions=_with(good.actions, skip_summarization=1)),
            _with(good, actions=_with(good.actions, escalate=None)),
            _with(good, actions=_with(good.actions, transfer_to_agent="")),
            _with(good, actions=_with(good.actions, custom_actions={"x": b"b"})),
            _with(good, actions=None),
        ]

        async def body(store: SessionService) -> None:
            session = await create(store, "s1")
            before = await snapshot(store, [(APP, USER)])
            for bad in bad_events:
                with pytest.raises(InvalidArgument):
                    await store.append_event(session, bad)
            for bad_handle in ("s1", replace(session, version=-1), replace(session, id="")):
                with pytest.raises(InvalidArgument):
                    await store.append_event(bad_handle, good)  # type: ignore[arg-type]
            assert await snapshot(store, [(APP, USER)]) == before
            after = await store.append_event(session, good)
            assert after.version == 1

        harness.with_store(body)

    @requirement("SV-13")
    def test_append_result_and_failures(self, harness: H) -> None:
        """SV-13: the result continues the caller's session; missing and duplicate fail."""
        harness.clock.set(10_000)

        async def body(store: SessionService) -> None:
            session = await create(store, "s1", metadata={"m": 1}, state={"k": 0})
            first = await store.append_event(session, event("a", id="e1"))
            harness.clock.advance(3)
            second = await store.append_event(first, event("b", id="e2", delta={"k": 1}))
            assert [e.id for e in second.events] == ["e1", "e2"]
            assert second.version == 2 and second.last_update_time == 10_003
            assert second.metadata == {"m": 1} and second.state == {"k": 1}
            assert second.created_at == 10_000 and second.agent_id is None
            windowed = replace(second, events=())
            third = await store.append_event(windowed, event("c", id="e3"))
            assert [e.id for e in third.events] == ["e3"], "result = caller's events + new"
            with pytest.raises(AlreadyExists):
                await store.append_event(third, event("again", id="e1", delta={"k": 9}))
            other = await create(store, "s2")
            await store.append_event(other, event("same id elsewhere", id="e1"))
            missing = replace(third, id="missing")
            with pytest.raises(NotFound):
                await store.append_event(missing, event("x"))
            with pytest.raises(NotFound):
                await store.append_event(replace(missing, version=99), event("x"))
            with pytest.raises(Conflict):  # stale is checked before the duplicate id
                await store.append_event(second, event("x", id="e1"))
            read = await store.get(GetRequest(APP, USER, "s1"))
            assert read is not None and read.version == 3 and read.state == {"k": 1}
            assert [e.id for e in read.events] == ["e1", "e2", "e3"]

        harness.with_store(body)

    @requirement("SV-14", "SV-15", "G-17")
    def test_failed_append_leaves_neither(self, harness: H) -> None:
        """SV-14, SV-15, G-17: a Conflict or a duplicate writes no event and no delta."""
        delta = {"k": 9, "app:a": 9, "user:u": 9}

        async def body(store: SessionService) -> None:
            stale = await create(store, "s1", state={"k": 0})
            fresh = await store.append_event(stale, event("a", id="e1"))
            before = await snapshot(store, [(APP, USER)])
            with pytest.raises(Conflict) as conflict:
                await store.append_event(stale, event("b", id="e2", delta=delta))
            assert conflict.value.expected == 0 and conflict.value.actual == 1
            with pytest.raises(AlreadyExists):
                await store.append_event(fresh, event("c", id="e1", delta=delta))
            with pytest.raises(Conflict):
                await store.update_state(stale, delta)
            assert await snapshot(store, [(APP, USER)]) == before

        harness.with_store(body)

    @requirement("SV-15")
    def test_stale_append_from_another_store_object(self, harness: H) -> None:
        """SV-15: the version check lives in storage: a second store object sees it."""

        async def scenario() -> None:
            async with harness.open() as first, harness.open() as second:
                await create(first, "s1")
                for round_ in range(3):
                    seen_first = await first.get(GetRequest(APP, USER, "s1"))
                    seen_second = await second.get(GetRequest(APP, USER, "s1"))
                    assert seen_first is not None and seen_second is not None
                    await first.append_event(seen_first, event("a", id=f"a{round_}"))
                    with pytest.raises(Conflict) as stale:
                        await second.append_event(seen_second, event("b", id=f"b{round_}"))
                    assert stale.value.expected == seen_second.version
                    assert stale.value.actual == seen_second.version + 1
                    with pytest.raises(Conflict):
                        await second.update_state(seen_second, {"k": round_})
                final = await second.get(GetRequest(APP, USER, "s1"))
                assert final is not None and [e.id for e in final.events] == ["a0", "a1", "a2"]
                assert final.version == 3 and "k" not in final.state

        harness.run(scenario())

    @requirement("SV-15", "SV-28", "G-18")
    def test_racing_appends_from_one_version_one_wins(self, harness: H) -> None:
        """SV-15, SV-28, G-18: of appends made from one version, exactly one succeeds."""

        async def scenario() -> None:
            async with harness.open() as first, harness.open() as second:
                await create(first, "s1")
                for round_ in range(8):
                    base = await first.get(GetRequest(APP, USER, "s1"))
                    assert base is not None
                    tries = [
                        store.append_event(base, event(str(i), id=f"r{round_}-{i}"))
                        for i, store in enumerate((first, second, first, second))
                    ]
                    outcomes = await asyncio.gather(*tries, return_exceptions=True)
                    won = [o for o in outcomes if isinstance(o, Session)]
                    lost = [o for o in outcomes if isinstance(o, Conflict)]
                    assert len(won) == 1 and len(lost) == 3, f"round {round_}: {outcomes!r}"
                    assert won[0].version == base.version + 1
                final = await second.get(GetRequest(APP, USER, "s1"))
                assert final is not None and final.version == 8 and len(final.events) == 8

        harness.run(scenario())

    @requirement("SV-14", "SV-28", "G-17", "G-18")
    def test_concurrent_appends_lose_nothing(self, harness: H) -> None:
        """SV-14, SV-28, G-17, G-18: retrying writers on two store objects lose and duplicate
        nothing, and readers never see an event without its state delta."""
        writers, per_writer = 4, 4

        async def write(store: SessionService, writer: int, versions: list[int]) -> None:
            for i in range(per_writer):
                while True:
                    seen = await store.get(GetRequest(APP, USER, "s1", num_recent_events=0))
                    assert seen is not None
                    count = seen.version + 1
                    delta = {"count": count, "user:count": count, "app:count": count}
                    try:
                        done = await store.append_event(
                            seen, event(f"{writer}-{i}", id=f"w{writer}-{i}", delta=delta)
                        )
                    except Conflict:
                        await asyncio.sleep(0)
                        continue
                    versions.append(done.version)
                    break

        async def read(store: SessionService, stop: asyncio.Event) -> int:
            checks = 0
            while not stop.is_set():
                seen = await store.get(GetRequest(APP, USER, "s1"))
                assert seen is not None
                n = len(seen.events)
                if n:
                    state = seen.state
                    assert state["count"] == state["user:count"] == state["app:count"] == n, (
                        f"half an append seen: {n} events, state {dict(state)}"
                    )
                assert seen.version == n
                checks += 1
                await asyncio.sleep(0)
            return checks

        async def scenario() -> None:
            async with harness.open() as first, harness.open() as second:
                await create(first, "s1")
                versions: list[int] = []
                stop = asyncio.Event()
                reader = asyncio.ensure_future(read(second, stop))
                await asyncio.gather(
                    *(write((first, second)[w % 2], w, versions) for w in range(writers))
                )
                stop.set()
                assert await reader > 0
                total = writers * per_writer
                assert sorted(versions) == list(range(1, total + 1)), "a version acked twice"
                final = await first.get(GetRequest(APP, USER, "s1"))
                assert final is not None and final.version == total
                ids = sorted(str(e.id) for e in final.events)
                expected = sorted(f"w{w}-{i}" for w in range(writers) for i in range(per_writer))
                assert ids == expected, "events lost or duplicated"

        harness.run(scenario())

    @requirement("SV-4", "SV-15")
    def test_metadata_update_does_not_touch_the_version(self, harness: H) -> None:
        """SV-4, SV-15: update (metadata) neither checks nor bumps the version."""

        async def body(store: SessionService) -> None:
            session = await create(store, "s1")
            await store.update(UpdateRequest(APP, USER, "s1", {"x": 1}))
            after = await store.append_event(session, event("still fresh"))
            assert after.version == 1

        harness.with_store(body)

    @requirement("SV-16", "SV-3", "G-9")
    def test_events_ordered_by_time_then_append(self, harness: H) -> None:
        """SV-16, SV-3, G-9: order by timestamp, ties by append order, in every listing."""
        stamps = [("a", 50), ("b", 30), ("c", 50), ("d", 10), ("e", 30), ("f", 60), ("g", 10)]
        ordered = ["d", "g", "b", "e", "a", "c", "f"]

        async def body(store: SessionService) -> None:
            session = await create(store, "s1")
            for event_id, ts in stamps:
                session = await store.append_event(
                    session, event(event_id, id=event_id, timestamp=ts)
                )
            read = await store.get(GetRequest(APP, USER, "s1"))
            assert read is not None and [e.id for e in read.events] == ordered
            recent = await store.get(GetRequest(APP, USER, "s1", num_recent_events=3))
            assert recent is not None and [e.id for e in recent.events] == ordered[-3:]
            listed = await store.get_events(APP, USER, "s1")
            assert [e.id for e in listed] == ordered

        harness.with_store(body)

    @requirement("SV-17", "SV-18")
    def test_event_filters(self, harness: H) -> None:
        """SV-17, SV-18: author, agent, branch with descendants, half-open time range, paging."""
        specs = [
            ("e1", "user", None, None, 100),
            ("e2", "bot", "ag1", "a", 110),
            ("e3", "bot", "ag1", "a.b", 120),
            ("e4", "bot", "ag2", "a.b.c", 130),
            ("e5", "bot", "ag2", "a.bc", 140),
            ("e6", "user", None, "b", 150),
        ]

        async def body(store: SessionService) -> None:
            session = await create(store, "s1")
            for event_id, author, agent, branch, ts in specs:
                session = await store.append_event(
                    session,
                    event(
                        event_id,
                        id=event_id,
                        author=author,
                        agent_id=agent,
                        branch=branch,
                        timestamp=ts,
                    ),
                )

            async def ids(**fields: Any) -> list[str | None]:
                return [
                    e.id for e in await store.get_events(APP, USER, "s1", EventFilter(**fields))
                ]

            assert await ids() == ["e1", "e2", "e3", "e4", "e5", "e6"]
            assert [e.id for e in await store.get_events(APP, USER, "s1", None)] == await ids()
            assert await ids(author="user") == ["e1", "e6"]
            assert await ids(agent_id="ag2") == ["e4", "e5"]
            assert await ids(branch="a.b") == ["e3", "e4"], "descendants, not 'a.bc'"
            assert await ids(branch="a") == ["e2", "e3", "e4", "e5"]
            assert await ids(branch="a.b.c.d") == []
            assert await ids(start_time=110, end_time=130) == ["e2", "e3"], "half-open"
            assert await ids(start_time=150) == ["e6"]
            assert await ids(end_time=100) == []
            assert await ids(start_time=120, end_time=120) == []
            assert await ids(author="bot", branch="a", start_time=115) == ["e3", "e4", "e5"]
            assert await ids(offset=2, limit=2) == ["e3", "e4"]
            assert await ids(author="bot", offset=3) == ["e5"]
            assert await ids(limit=0) == []
            assert await ids(limit=2**63 - 1, offset=5) == ["e6"]
            assert await ids(offset=2**63 - 1) == []
            assert await ids(offset=10) == []
            with pytest.raises(NotFound):
                await store.get_events(APP, USER, "missing")
            with pytest.raises(NotFound):
                await store.get_events(APP, "other", "s1")
            bad_filters: list[Any] = [
                EventFilter(limit=-1),
                EventFilter(offset=-1),
                EventFilter(start_time=-5),
                EventFilter(start_time=10, end_time=9),
                EventFilter(author=""),
                EventFilter(branch=""),
                _with(EventFilter(), agent_id=3),
                "author=user",
            ]
            for bad in bad_filters:
                with pytest.raises(InvalidArgument):
                    await store.get_events(APP, USER, "s1", bad)

        harness.with_store(body)

    @requirement("G-7")
    def test_records_are_the_callers(self, harness: H) -> None:
        """G-7: changing returned or given objects never changes what is stored."""

        async def body(store: SessionService) -> None:
            state: dict[str, Any] = {"k": [1], "app:a": {"x": 1}}
            metadata: dict[str, Any] = {"m": [1]}
            session = await create(store, "s1", state=state, metadata=metadata)
            state["k"].append(2)
            metadata["m"].append(2)
            delta: dict[str, Any] = {"user:u": [1]}
            given = event("x", id="e1", delta=delta, metadata={"n": [1]})
            session = await store.append_event(session, given)
            delta["user:u"].append(2)
            given.metadata["n"].append(2)
            session.state["k"].append(3)
            session.events[0].metadata["n"].append(3)
            session.metadata["m"].append(3)
            read = await store.get(GetRequest(APP, USER, "s1"))
            assert read is not None
            assert_same(read.state, {"k": [1], "app:a": {"x": 1}, "user:u": [1]}, "state")
            assert_same(read.metadata, {"m": [1]}, "metadata")
            assert_same(read.events[0].metadata, {"n": [1]}, "event metadata")
            read.events[0].actions.state_delta["user:u"].append(4)
            again = await store.get_events(APP, USER, "s1")
            assert_same(again[0].actions.state_delta, {"user:u": [1]}, "event delta")

        harness.with_store(body)
