"""Session-service suite: sessions (SV-1 .. SV-6) and scoped state (SV-7 .. SV-11).

Part of :class:`~agentstores.conformance.suites.session_service.SessionServiceSuite`.
"""

from __future__ import annotations

from typing import Any

import pytest

from agentstores.spec.errors import AlreadyExists, InvalidArgument, NotFound
from agentstores.spec.session_service import (
    CreateRequest,
    GetRequest,
    ListRequest,
    Session,
    SessionService,
    UpdateRequest,
)
from agentstores.spec.values import check_id

from ..harness import Harness
from ..markers import requirement
from ._session_service_support import APP, USER, assert_same, create, event, snapshot

__all__ = ["SessionServiceSessionTests"]

H = Harness[Any]


class SessionServiceSessionTests:
    """Session and state tests; mixed into the suite class (which provides the fixtures)."""

    # --- sessions ------------------------------------------------------------------------

    @requirement("SV-1", "G-6")
    def test_create_returns_the_new_session(self, harness: H) -> None:
        """SV-1, G-6: create stores and returns an empty session stamped by the store's clock."""
        harness.clock.set(1_700_000_123_000)

        async def body(store: SessionService) -> None:
            made = await store.create(
                CreateRequest(
                    APP,
                    USER,
                    agent_id="agent-1",
                    metadata={"title": "t", "n": 1.0},
                    state={"k": 1, "app:a": True, "user:u": None, "temp:t": "x"},
                    session_id="s1",
                )
            )
            expected = Session(
                id="s1",
                app_name=APP,
                user_id=USER,
                agent_id="agent-1",
                state={"k": 1, "app:a": True, "user:u": None, "temp:t": "x"},
                events=(),
                last_update_time=1_700_000_123_000,
                created_at=1_700_000_123_000,
                metadata={"title": "t", "n": 1.0},
                version=0,
            )
            assert_same(made, expected, "created session")
            read = await store.get(GetRequest(APP, USER, "s1"))
            expected_read = Session(
                **{**expected.__dict__, "state": {"k": 1, "app:a": True, "user:u": None}}
            )
            assert_same(read, expected_read, "session read back")

        harness.with_store(body)

    @requirement("SV-1", "G-1")
    def test_create_chooses_fresh_ids(self, harness: H) -> None:
        """SV-1, G-1: without a session id the store chooses distinct ids in the id domain."""

        async def body(store: SessionService) -> None:
            made = [await create(store) for _ in range(5)]
            ids = [s.id for s in made]
            assert len(set(ids)) == 5, f"store reused a session id: {ids}"
            for session_id in ids:
                check_id(session_id)
                read = await store.get(GetRequest(APP, USER, session_id))
                assert read is not None and read.id == session_id

        harness.with_store(body)

    @requirement("SV-2")
    def test_create_existing_id_is_already_exists(self, harness: H) -> None:
        """SV-2: a taken id raises AlreadyExists and applies nothing; other pairs may reuse it."""

        async def body(store: SessionService) -> None:
            await create(store, "s1", state={"k": 1})
            before = await snapshot(store, [(APP, USER)])
            with pytest.raises(AlreadyExists):
                await create(store, "s1", state={"k": 2, "app:a": 1, "user:u": 1})
            assert await snapshot(store, [(APP, USER)]) == before
            other = await create(store, "s1", user="someone-else")
            assert other.state == {}, "the failed create applied app: state"
            other_app = await create(store, "s1", app="other-app")
            assert other_app.state == {}

        harness.with_store(body)

    @requirement("SV-3")
    def test_get_missing_and_recent_events(self, harness: H) -> None:
        """SV-3: get gives None for a missing session; num_recent_events keeps the newest."""

        async def body(store: SessionService) -> None:
            assert await store.get(GetRequest(APP, USER, "nope")) is None
            session = await create(store, "s1")
            for i in range(5):
                harness.clock.advance(1)
                session = await store.append_event(session, event(f"m{i}", id=f"e{i}"))

            def ids(session: Session) -> list[str | None]:
                return [e.id for e in session.events]

            full = await store.get(GetRequest(APP, USER, "s1"))
            assert full is not None and ids(full) == ["e0", "e1", "e2", "e3", "e4"]
            recent = [(0, []), (2, ["e3", "e4"]), (5, ids(full)), (100, ids(full))]
            for n, expected in [*recent, (2**63 - 1, ids(full))]:
                part = await store.get(GetRequest(APP, USER, "s1", num_recent_events=n))
                assert part is not None and ids(part) == expected, f"num_recent_events={n}"
                assert part.version == full.version and part.state == full.state
            with pytest.raises(InvalidArgument):
                await store.get(GetRequest(APP, USER, "s1", num_recent_events=-1))

        harness.with_store(body)

    @requirement("SV-4")
    def test_update_replaces_metadata(self, harness: H) -> None:
        """SV-4: update replaces metadata, stamps the time, keeps version, state and events."""

        async def body(store: SessionService) -> None:
            session = await create(store, "s1", metadata={"a": 1, "b": 2}, state={"k": 1})
            session = await store.append_event(session, event("hi", id="e1"))
            harness.clock.advance(7)
            await store.update(UpdateRequest(APP, USER, "s1", {"c": [1.5]}))
            read = await store.get(GetRequest(APP, USER, "s1"))
            assert read is not None
            assert_same(read.metadata, {"c": [1.5]}, "metadata")
            assert read.last_update_time == harness.clock()
            assert read.version == session.version == 1
            assert read.state == {"k": 1} and [e.id for e in read.events] == ["e1"]
            with pytest.raises(NotFound):
                await store.update(UpdateRequest(APP, USER, "missing", {"x": 1}))
            assert await store.get(GetRequest(APP, USER, "missing")) is None
            with pytest.raises(NotFound):
                await store.update(UpdateRequest(APP, "other-user", "s1", {"x": 1}))

        harness.with_store(body)

    @requirement("SV-5")
    def test_delete_removes_session_keeps_shared_state(self, harness: H) -> None:
        """SV-5: delete removes the session, its events and own state; shared state stays."""

        async def body(store: SessionService) -> None:
            s1 = await create(store, "s1", state={"k": 1, "app:a": 1, "user:u": 1})
            await store.append_event(s1, event("hi", id="e1", delta={"k": 2, "user:v": 2}))
            await create(store, "s2")
            await store.delete(APP, USER, "s1")
            assert await store.get(GetRequest(APP, USER, "s1")) is None
            with pytest.raises(NotFound):
                await store.get_events(APP, USER, "s1")
            assert [s.id for s in await store.list(ListRequest(APP, USER))] == ["s2"]
            s2 = await store.get(GetRequest(APP, USER, "s2"))
            assert s2 is not None and s2.state == {"app:a": 1, "user:u": 1, "user:v": 2}
            again = await create(store, "s1")
            assert again.events == () and again.version == 0
            assert again.state == {"app:a": 1, "user:u": 1, "user:v": 2}
            reused = await store.append_event(again, event("new life", id="e1"))
            assert [e.id for e in reused.events] == ["e1"], "a deleted event id lingered"
            with pytest.raises(NotFound):
                await store.delete(APP, USER, "never")
            with pytest.raises(NotFound):
                await store.delete(APP, "other-user", "s1")
            assert await store.get(GetRequest(APP, USER, "s1")) is not None

        harness.with_store(body)

    @requirement("SV-6", "G-8", "G-9")
    def test_list_newest_update_first_and_paged(self, harness: H) -> None:
        """SV-6, G-8, G-9: list orders by update time desc then id asc, pages, no events."""

        async def body(store: SessionService) -> None:
            harness.clock.set(1_000)
            await create(store, "b")
            await create(store, "a")  # same time as "b": the id decides
            harness.clock.set(2_000)
            c = await create(store, "c", state={"app:x": 1})
            harness.clock.set(3_000)
            await store.update(UpdateRequest(APP, USER, "b", {"touched": True}))
            harness.clock.set(4_000)
            await store.append_event(c, event("hi", id="e"))
            await create(store, "z", user="other")
            listed = await store.list(ListRequest(APP, USER))
            assert [s.id for s in listed] == ["c", "b", "a"], "order is newest update, then id"
            assert [s.last_update_time for s in listed] == [4_000, 3_000, 1_000]
            assert all(s.events == () for s in listed), "listed sessions carry no events"
            assert all(s.state == {"app:x": 1} for s in listed), "listed state is merged"
            assert listed[0].version == 1 and listed[1].metadata == {"touched": True}
            pages = [
                ((1, 0), ["c"]),
                ((2, 1), ["b", "a"]),
                ((None, 2), ["a"]),
                ((0, 0), []),
                ((5, 3), []),
                ((10**12, 0), ["c", "b", "a"]),
            ]
            for (limit, offset), expected in pages:
                got = await store.list(ListRequest(APP, USER, limit=limit, offset=offset))
                assert [s.id for s in got] == expected, f"limit={limit} offset={offset}"
            assert await store.list(ListRequest(APP, "nobody")) == []
            for bad in (ListRequest(APP, USER, limit=-1), ListRequest(APP, USER, offset=-1)):
                with pytest.raises(InvalidArgument):
                    await store.list(bad)

        harness.with_store(body)

    # --- state ---------------------------------------------------------------------------

    @requirement("SV-7", "G-3")
    def test_malformed_state_keys_are_rejected(self, harness: H) -> None:
        """SV-7, G-3: empty keys, bare prefixes, non-str and over-long keys: InvalidArgument."""
        bad_keys: list[Any] = [
            "",
            "app:",
            "user:",
            "temp:",
            "session:",
            1,
            None,
            "a\x00",
            "x" * 257,
        ]

        async def body(store: SessionService) -> None:
            session = await create(store, "s1", state={"k": 0})
            before = await snapshot(store, [(APP, USER)])
            for key in bad_keys:
                with pytest.raises(InvalidArgument):
                    await create(store, "s2", state={key: 1, "app:a": 1})
                with pytest.raises(InvalidArgument):
                    await store.update_state(session, {"user:u": 1, key: 1})
                with pytest.raises(InvalidArgument):
                    await store.append_event(session, event("x", delta={"k": 1, key: 1}))
            assert await snapshot(store, [(APP, USER)]) == before, "a rejected write wrote"
            assert await store.get(GetRequest(APP, USER, "s2")) is None
            fine = {"app::x": 1, "App:x": 2, "session:x": 3, "user:user:": 4, "x" * 256: 5}
            session = await store.update_state(session, fine)
            assert {k: session.state[k] for k in fine} == fine

        harness.with_store(body)

    @requirement("SV-8")
    def test_state_is_scoped_by_prefix(self, harness: H) -> None:
        """SV-8: app: keys shared by the app, user: keys by the pair, others by the session."""

        async def body(store: SessionService) -> None:
            mine = await create(store, "s1")
            mine2 = await create(store, "s2")
            theirs = await create(store, "s3", user="other")
            other_app = await create(store, "s4", app="other-app")
            delta = {"app:a": 1, "user:u": 2, "k": 3, "session:s": 4, "App:x": 5, "n": None}
            await store.update_state(mine, delta)

            async def state(app: str, user: str, sid: str) -> dict[str, Any]:
                read = await store.get(GetRequest(app, user, sid))
                assert read is not None
                return dict(read.state)

            assert_same(await state(APP, USER, "s1"), delta, "own state")
            assert_same(await state(APP, USER, "s2"), {"app:a": 1, "user:u": 2}, "same pair")
            assert_same(await state(APP, "other", "s3"), {"app:a": 1}, "same app, other user")
            assert_same(await state("other-app", USER, "s4"), {}, "other app")
            mine2 = await store.update_state(mine2, {"user:u": 20, "k": 30, "app:b": 0.0})
            assert_same(
                await state(APP, USER, "s1"),
                {**delta, "user:u": 20, "app:b": 0.0},
                "a delta merges key by key",
            )
            assert theirs.id == "s3" and other_app.id == "s4" and mine2.version == 1

        harness.with_store(body)

    @requirement("SV-9")
    def test_temp_keys_live_only_for_the_call(self, harness: H) -> None:
        """SV-9: temp: keys show in the returned session only, never stored."""

        async def body(store: SessionService) -> None:
            made = await create(store, "s1", state={"temp:a": 1, "k": 1})
            assert made.state == {"temp:a": 1, "k": 1}
            appended = await store.append_event(
                made, event("x", id="e1", delta={"temp:b": 2, "k": 2, "temp:a": 3})
            )
            assert_same(appended.state, {"k": 2, "temp:b": 2, "temp:a": 3}, "append result")
            assert appended.events[-1].actions.state_delta == {"k": 2}, "temp: kept in event"
            updated = await store.update_state(appended, {"temp:c": [1]})
            assert_same(updated.state, {"k": 2, "temp:c": [1]}, "update_state result")
            read = await store.get(GetRequest(APP, USER, "s1"))
            assert read is not None and read.state == {"k": 2}
            assert read.events[0].actions.state_delta == {"k": 2}
            events = await store.get_events(APP, USER, "s1")
            assert events[0].actions.state_delta == {"k": 2}
            listed = await store.list(ListRequest(APP, USER))
            assert listed[0].state == {"k": 2}
            other = await create(store, "s2")
            assert other.state == {}

        harness.with_store(body)

    @requirement("SV-10")
    def test_reads_show_the_merged_view(self, harness: H) -> None:
        """SV-10: every read merges own, user: and app: state as stored at the read."""

        async def body(store: SessionService) -> None:
            s1 = await create(store, "s1", state={"k": 1})
            s2 = await create(store, "s2")
            s3 = await create(store, "s3", user="other")
            await store.append_event(s2, event("x", delta={"app:a": "A", "user:u": "U"}))
            await store.update_state(s3, {"app:b": "B"})
            expected = {"k": 1, "app:a": "A", "user:u": "U", "app:b": "B"}
            read = await store.get(GetRequest(APP, USER, "s1"))
            assert read is not None and read.state == expected
            listed = {s.id: s.state for s in await store.list(ListRequest(APP, USER))}
            assert listed["s1"] == expected
            after = await store.append_event(s1, event("y", delta={"k": 2}))
            assert after.state == {**expected, "k": 2}

        harness.with_store(body)

    @requirement("SV-11", "SV-15")
    def test_update_state_counts_as_a_checked_write(self, harness: H) -> None:
        """SV-11, SV-15: update_state bumps version and time, keeps the caller's events."""

        async def body(store: SessionService) -> None:
            session = await create(store, "s1")
            session = await store.append_event(session, event("hi", id="e1"))
            harness.clock.advance(5)
            updated = await store.update_state(session, {"k": 1})
            assert updated.version == 2 and updated.last_update_time == harness.clock()
            assert updated.events == session.events
            emptied = await store.update_state(updated, {})
            assert emptied.version == 3
            read = await store.get(GetRequest(APP, USER, "s1"))
            assert read is not None and read.version == 3 and read.state == {"k": 1}
            with pytest.raises(NotFound):
                await store.update_state(Session(id="nope", app_name=APP, user_id=USER), {})

        harness.with_store(body)
