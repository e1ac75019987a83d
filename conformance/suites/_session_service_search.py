"""Session-service suite, history search (SV-19 .. SV-25).

Part of :class:`~agentstores.conformance.suites.session_service.SessionServiceSuite`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from agentstores.spec.errors import InvalidArgument
from agentstores.spec.messages import Message
from agentstores.spec.session_service import (
    MatchMode,
    SearchOptions,
    SearchResult,
    SessionService,
)

from ..harness import Harness
from ..markers import requirement
from ._session_service_support import APP, USER, assert_same, create, event

__all__ = ["SessionServiceSearchTests"]

H = Harness[Any]


def _options(query: str, **fields: Any) -> SearchOptions:
    return SearchOptions(
        query=query,
        app_name=fields.pop("app_name", APP),
        user_id=fields.pop("user_id", USER),
        **fields,
    )


async def _hits(store: SessionService, query: str, **fields: Any) -> list[str]:
    """The event ids a search returns, in order."""
    return [r.event_id for r in await store.search(_options(query, **fields))]


def _with(record: Any, **changes: Any) -> Any:
    """``record`` with fields replaced by values of any type (to build bad input)."""
    return replace(record, **changes)


class SessionServiceSearchTests:
    """Search tests; mixed into the suite class (which provides the fixtures)."""

    @requirement("SV-19", "SV-26")
    def test_search_scope(self, harness: H) -> None:
        """SV-19, SV-26: the pair's sessions only, narrowed by session, agents, content, role."""

        async def body(store: SessionService) -> None:
            s1 = await create(store, "s1", agent_id="ag1")
            s2 = await create(store, "s2", agent_id="ag2")
            s3 = await create(store, "s3")
            other_user = await create(store, "s1", user="other", agent_id="ag1")
            other_app = await create(store, "s1", app="other", agent_id="ag1")
            s1 = await store.append_event(s1, event("find me", id="a", timestamp=10))
            await store.append_event(s1, event(None, id="no-content", reasoning="find me"))
            await store.append_event(
                s2, event("find me too", id="b", role="assistant", timestamp=20)
            )
            await store.append_event(s3, event("find me three", id="c", role="tool", timestamp=30))
            await store.append_event(other_user, event("find me", id="x", timestamp=40))
            await store.append_event(other_app, event("find me", id="y", timestamp=50))

            assert await _hits(store, "find") == ["c", "b", "a"]
            assert await _hits(store, "find", session_id="s2") == ["b"]
            assert await _hits(store, "find", session_id="missing") == []
            assert await _hits(store, "find", agent_ids=("ag1", "ag9")) == ["a"]
            assert await _hits(store, "find", agent_ids=()) == []
            assert await _hits(store, "find", only_user=True) == ["a"]
            assert await _hits(store, "find", only_assistant=True) == ["b"]
            assert await _hits(store, "find", user_id="other") == ["x"]
            assert await _hits(store, "find", app_name="other") == ["y"]
            assert await _hits(store, "find", user_id="nobody") == []

        harness.with_store(body)

    @requirement("SV-19")
    def test_search_time_range_is_half_open(self, harness: H) -> None:
        """SV-19: start_time <= timestamp < end_time, each bound optional."""

        async def body(store: SessionService) -> None:
            session = await create(store, "s1")
            for ts in (100, 200, 300):
                session = await store.append_event(
                    session, event("word", id=f"t{ts}", timestamp=ts)
                )
            assert await _hits(store, "word", start_time=200) == ["t300", "t200"]
            assert await _hits(store, "word", end_time=200) == ["t100"]
            assert await _hits(store, "word", start_time=100, end_time=300) == ["t200", "t100"]
            assert await _hits(store, "word", start_time=200, end_time=200) == []
            assert await _hits(store, "word", start_time=301) == []

        harness.with_store(body)

    @requirement("SV-20")
    def test_search_reads_text_parts_only(self, harness: H) -> None:
        """SV-20: the text parts joined with newlines; other parts and reasoning are not read."""
        parts = (
            {"type": "text", "text": "first part"},
            {"type": "tool_request", "text": "hidden words", "name": "tool"},
            {"type": "text", "text": "second part"},
        )

        async def body(store: SessionService) -> None:
            session = await create(store, "s1")
            rich = replace(event(None, id="e1", reasoning="secret"), content=Message("user", parts))
            await store.append_event(session, rich)
            assert await _hits(store, "part\nsecond", match_mode=MatchMode.EXACT) == ["e1"]
            assert await _hits(store, "hidden") == []
            assert await _hits(store, "secret") == []
            assert await _hits(store, "tool") == []

        harness.with_store(body)

    @requirement("SV-21", "SV-16")
    def test_search_result_fields(self, harness: H) -> None:
        """SV-21, SV-16: session, agent, event id, index in the session's order, message,
        snippet, relevance and the event's own timestamp."""
        harness.clock.set(9_999)

        async def body(store: SessionService) -> None:
            session = await create(store, "s1", agent_id="ag")
            session = await store.append_event(session, event("later", id="e1", timestamp=500))
            session = await store.append_event(
                session, event("needle", id="e2", timestamp=100, role="assistant")
            )
            session = await store.append_event(session, event("earliest", id="e0", timestamp=50))
            results = await store.search(_options("NEEDLE"))
            expected = SearchResult(
                session_id="s1",
                agent_id="ag",
                event_id="e2",
                message_index=1,
                message=Message.text("assistant", "needle"),
                snippet="needle",
                relevance=1.0,
                timestamp=100,
            )
            assert_same(results, [expected], "search results")

        harness.with_store(body)

    @requirement("SV-22")
    def test_match_modes(self, harness: H) -> None:
        """SV-22: exact is case-sensitive, contains folds case, fuzzy needs > 30% of words."""

        async def body(store: SessionService) -> None:
            session = await create(store, "s1")
            texts = {
                "e1": "The Quick brown fox",
                "e2": "the quick BROWN dog",
                "e3": "ÉCOLE and Straße",
                "e4": "nothing relevant",
            }
            for event_id, text in texts.items():
                session = await store.append_event(session, event(text, id=event_id, timestamp=1))

            async def relevance(query: str, mode: MatchMode) -> dict[str, float]:
                found = await store.search(_options(query, match_mode=mode))
                return {r.event_id: r.relevance for r in found}

            assert await relevance("Quick", MatchMode.EXACT) == {"e1": 1.0}
            assert await relevance("quick brown", MatchMode.CONTAINS) == {"e1": 1.0, "e2": 1.0}
            assert await relevance("école", MatchMode.CONTAINS) == {"e3": 1.0}
            assert await relevance("straße", MatchMode.CONTAINS) == {"e3": 1.0}
            assert await relevance("strasse", MatchMode.CONTAINS) == {}
            assert await relevance("école", MatchMode.EXACT) == {}
            assert await relevance("fox dog cat", MatchMode.FUZZY) == {"e1": 1 / 3, "e2": 1 / 3}
            fuzzy = await relevance("fox quick cat bird", MatchMode.FUZZY)
            assert fuzzy == {"e1": 0.5}, "a share of 1/4 is not above 0.3"
            assert await relevance("BROWN brown Fox", MatchMode.FUZZY) == {"e1": 1.0, "e2": 0.5}
            assert await relevance("quick", MatchMode.CONTAINS) == await relevance(
                "quick", MatchMode.FUZZY
            )

        harness.with_store(body)

    @requirement("SV-23")
    def test_snippets(self, harness: H) -> None:
        """SV-23: whole short texts; 150 code points from 50 before the match, kept inside."""
        long_text = "".join(chr(ord("a") + i % 26) for i in range(1000))
        cases = {
            "short": ("a short text with key", "key", "a short text with key"),
            "start": ("key" + long_text, "key", ("key" + long_text)[:150]),
            "middle": (long_text[:500] + "KEY" + long_text[500:], "key", None),
            "end": (long_text + "key", "key", (long_text + "key")[-150:]),
        }

        async def body(store: SessionService) -> None:
            session = await create(store, "s1")
            for name, (text, _, _) in cases.items():
                session = await store.append_event(session, event(text, id=name))
            for name, (text, query, expected) in cases.items():
                found = await store.search(
                    _options(query, session_id="s1", match_mode=MatchMode.CONTAINS)
                )
                by_id = {r.event_id: r.snippet for r in found}
                want = expected if expected is not None else text[450:600]
                assert by_id[name] == want, f"snippet of {name}"
                assert len(by_id[name]) <= 150

        harness.with_store(body)

    @requirement("SV-24")
    def test_search_order_and_paging(self, harness: H) -> None:
        """SV-24: relevance, then newest, then session id, then index; default limit 20."""

        async def body(store: SessionService) -> None:
            a = await create(store, "a")
            b = await create(store, "b")
            a = await store.append_event(a, event("red blue", id="a1", timestamp=10))
            a = await store.append_event(a, event("red", id="a2", timestamp=20))
            a = await store.append_event(a, event("red", id="a3", timestamp=20))
            b = await store.append_event(b, event("red", id="b1", timestamp=20))
            b = await store.append_event(b, event("red blue", id="b2", timestamp=5))
            order = await _hits(store, "red blue", match_mode=MatchMode.FUZZY)
            assert order == ["a1", "b2", "a3", "a2", "b1"]
            assert await _hits(
                store, "red blue", match_mode=MatchMode.FUZZY, offset=1, limit=2
            ) == ["b2", "a3"]
            assert await _hits(store, "red", limit=0) == []
            assert await _hits(store, "red", offset=5) == []
            many = await create(store, "many")
            for i in range(25):
                many = await store.append_event(many, event("common", id=f"m{i:02}", timestamp=i))
            page = await _hits(store, "common")
            assert page == [f"m{i:02}" for i in range(24, 4, -1)], "default limit is 20"
            assert len(await _hits(store, "common", limit=100)) == 25

        harness.with_store(body)

    @requirement("SV-25", "SV-27", "G-3", "G-8")
    def test_search_validation(self, harness: H) -> None:
        """SV-25, SV-27, G-3, G-8: bad search options raise InvalidArgument."""
        good = _options("x")
        bad_options: list[Any] = [
            "x",
            _with(good, query=""),
            _with(good, query=None),
            _with(good, query="\udc80"),
            _with(good, query="   ", match_mode=MatchMode.FUZZY),
            _with(good, match_mode="contains"),
            _with(good, app_name=""),
            _with(good, user_id=None),
            _with(good, session_id=""),
            _with(good, agent_ids=("",)),
            _with(good, start_time=-1),
            _with(good, start_time=5, end_time=4),
            _with(good, limit=-1),
            _with(good, offset=-1),
            _with(good, only_user=True, only_assistant=True),
        ]

        async def body(store: SessionService) -> None:
            await create(store, "s1")
            for bad in bad_options:
                with pytest.raises(InvalidArgument):
                    await store.search(bad)
            assert await store.search(replace(good, query="   ")) == []

        harness.with_store(body)
