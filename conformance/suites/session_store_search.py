"""Requirement tests of chat-history search (SS-20 .. SS-22; G-8, G-13).

Hand-made examples pin each rule down; a property then compares the store with the model on
random conversations and queries built from words that stress substring matching, case
folding, short words and text-index query syntax.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import strategies as st

from agentstores.spec.errors import InvalidArgument
from agentstores.spec.messages import Message
from agentstores.spec.session_store import ChatHistoryMatch, SessionStore, SessionType

from ..clock import ManualClock
from ..harness import Harness
from ..markers import requirement
from ..models.session_store import SessionStoreModel
from .session_store_support import (
    assert_exact,
    opened,
    said,
    search_messages,
    search_queries,
    session_types,
)

__all__ = ["SearchTests"]

Store = SessionStore
H = Harness[SessionStore]


async def _session_with(store: Store, name: str, messages: Sequence[Message], **kw: Any) -> str:
    session = await store.create_session("/w", name, kw.get("session_type", SessionType.USER))
    await store.replace_conversation(session.id, list(messages))
    return session.id


def _contents(matches: Sequence[ChatHistoryMatch]) -> list[str]:
    return [m.message_content for m in matches]


class SearchTests:
    """search_chat_history: matching, windows, exclusion, limit, order and result fields."""

    @requirement("SS-20")
    def test_words_match_as_case_insensitive_substrings(self, harness: H) -> None:
        """SS-20: a word matches inside other words and across case; every session type is
        searched; a word not in any text matches nothing."""

        async def scenario(store: Store) -> None:
            await _session_with(store, "a", [said("The Alphabet song", 3), said("nothing", 2)])
            await _session_with(
                store, "h", [said("ALPHA release", 1)], session_type=SessionType.HIDDEN
            )
            assert _contents(await store.search_chat_history("alpha")) == [
                "The Alphabet song",
                "ALPHA release",
            ]
            assert _contents(await store.search_chat_history("PHAB")) == ["The Alphabet song"]
            assert await store.search_chat_history("omega") == []
            assert await store.search_chat_history("alpha song!") != []

        harness.with_store(scenario)

    @requirement("SS-20", "SS-22")
    def test_several_words_match_any_and_score_the_share_found(self, harness: H) -> None:
        """SS-20, SS-22: a message matches when any word occurs; relevance is the share of
        the distinct words found (repeats and case variants count once); order stays newest
        first, not by relevance."""

        async def scenario(store: Store) -> None:
            await _session_with(
                store,
                "s",
                [said("red fish", 4), said("blue fish", 3), said("red blue green", 2)],
            )
            hits = await store.search_chat_history("RED blue red Red purple")
            scores = [(h.message_content, h.relevance_score) for h in hits]
            assert scores == [("red fish", 1 / 3), ("blue fish", 1 / 3), ("red blue green", 2 / 3)]
            (only,) = await store.search_chat_history("fish  \t red", after_date=4)
            assert only.relevance_score == 1.0

        harness.with_store(scenario)

    @requirement("SS-20", "G-13")
    def test_only_text_parts_are_searched(self, harness: H) -> None:
        """SS-20, G-13: "text" parts count, joined by newlines; other part types never match,
        even with a "text" field; a word never spans two parts."""
        message = Message(
            "assistant",
            (
                {"type": "text", "text": "visible foo"},
                {"type": "thinking", "text": "hidden secret"},
                {"type": "tool_request", "name": "secret", "args": {"q": "secret"}},
                {"type": "text", "text": "bar end"},
            ),
            created_at=1,
        )

        async def scenario(store: Store) -> None:
            await _session_with(store, "s", [message])
            assert await store.search_chat_history("secret") == []
            assert await store.search_chat_history("foobar") == []
            (hit,) = await store.search_chat_history("BAR")
            assert hit.message_content == "visible foo\nbar end"
            assert hit.message_role == "assistant"

        harness.with_store(scenario)

    @requirement("SS-20")
    def test_case_folding_follows_python_lower(self, harness: H) -> None:
        """SS-20: both sides are lower-cased with str.lower, no further folding: "ÉCOLE" finds
        "école", "STRASSE" does not find "straße", a decomposed "é" is not "é", and Greek
        capitals find their lower-case forms."""

        async def scenario(store: Store) -> None:
            await _session_with(
                store,
                "s",
                [
                    said("école", 6),
                    said("straße", 5),
                    said("cafe\u0301", 4),
                    said("σοφία", 3),
                    said("İstanbul", 2),
                ],
            )
            assert _contents(await store.search_chat_history("ÉCOLE")) == ["école"]
            assert await store.search_chat_history("STRASSE") == []
            assert _contents(await store.search_chat_history("STRAßE")) == ["straße"]
            assert await store.search_chat_history("café") == []
            assert _contents(await store.search_chat_history("CAFE\u0301")) == ["cafe\u0301"]
            assert _contents(await store.search_chat_history("ΣΟΦΊΑ")) == ["σοφία"]
            # "İ".lower() is "i" and a combining dot: the plain "istanbul" is no substring.
            assert await store.search_chat_history("istanbul") == []
            assert _contents(await store.search_chat_history("İSTANBUL")) == ["İstanbul"]

        harness.with_store(scenario)

    @requirement("SS-20")
    def test_short_words_punctuation_and_query_syntax_match_literally(self, harness: H) -> None:
        """SS-20: one- and two-letter words, quotes, operators and wildcards of text-index
        query languages, emoji and NUL are plain substrings."""
        texts = [
            'say "hi" AND go',
            "x* OR y",
            "NEAR(a b) -c",
            "col:umn",
            "👩‍💻 works",
            "nul\x00byte",
            "日本語のテキスト",
        ]

        async def scenario(store: Store) -> None:
            await _session_with(store, "s", [said(t, 10 - n) for n, t in enumerate(texts)])
            expectations = {
                "hi": ['say "hi" AND go'],
                '"hi"': ['say "hi" AND go'],
                "and": ['say "hi" AND go'],
                "x*": ["x* OR y"],
                "*": ["x* OR y"],
                "or": ["x* OR y", "👩‍💻 works"],
                "near(a": ["NEAR(a b) -c"],
                "-c": ["NEAR(a b) -c"],
                "l:u": ["col:umn"],
                "👩": ["👩‍💻 works"],
                "\x00": ["nul\x00byte"],
                "l\x00b": ["nul\x00byte"],
                "語": ["日本語のテキスト"],
                "のテ": ["日本語のテキスト"],
                "y": ['say "hi" AND go', "x* OR y", "nul\x00byte"],
            }
            for query, expected in expectations.items():
                got = _contents(await store.search_chat_history(query, limit=100))
                assert got == expected, f"query {query!r}: {got!r}"

        harness.with_store(scenario)

    @requirement("SS-20")
    def test_a_query_without_words_finds_nothing(self, harness: H) -> None:
        """SS-20: "", white space only (any Unicode white space) return []."""

        async def scenario(store: Store) -> None:
            await _session_with(store, "s", [said(" ", 1), said("", 2), said("a b", 3)])
            for query in ("", " ", "\t\n", "\u3000", "\x1c\x1d"):
                assert await store.search_chat_history(query) == [], repr(query)

        harness.with_store(scenario)

    @requirement("SS-20")
    def test_exclude_session_id_leaves_one_session_out(self, harness: H) -> None:
        """SS-20: every session but the excluded one; an unknown id excludes nothing."""

        async def scenario(store: Store) -> None:
            first = await _session_with(store, "first", [said("needle 1", 2)])
            second = await _session_with(store, "second", [said("needle 2", 1)])
            hits = await store.search_chat_history("needle", exclude_session_id=first)
            assert [h.session_id for h in hits] == [second]
            hits = await store.search_chat_history("needle", exclude_session_id="unknown")
            assert [h.session_id for h in hits] == [first, second]

        harness.with_store(scenario)

    @requirement("SS-21")
    def test_date_window_includes_its_start_and_excludes_its_end(self, harness: H) -> None:
        """SS-21: after_date <= created_at < before_date; with any bound, undated messages are
        left out; an empty window finds nothing."""

        async def scenario(store: Store) -> None:
            await _session_with(
                store, "s", [said(f"m{t}", t) for t in (9, 10, 11, 19, 20, 21)] + [said("m-")]
            )

            async def window(after: int | None, before: int | None) -> list[str]:
                hits = await store.search_chat_history(
                    "m", limit=100, after_date=after, before_date=before
                )
                return _contents(hits)

            assert await window(None, None) == ["m21", "m20", "m19", "m11", "m10", "m9", "m-"]
            assert await window(10, 20) == ["m19", "m11", "m10"]
            assert await window(10, None) == ["m21", "m20", "m19", "m11", "m10"]
            assert await window(None, 10) == ["m9"]
            assert await window(0, None) == ["m21", "m20", "m19", "m11", "m10", "m9"]
            assert await window(20, 20) == []
            assert await window(21, 10) == []
            assert await window(21, 22) == ["m21"]

        harness.with_store(scenario)

    @requirement("SS-21", "G-8")
    def test_limit_counts_messages(self, harness: H) -> None:
        """SS-21, G-8: 10 by default; 0 gives []; a large limit gives every match; the limit
        counts messages, even when they are all in one session."""

        async def scenario(store: Store) -> None:
            await _session_with(store, "one", [said(f"hit {n}", n) for n in range(12)])
            await _session_with(store, "two", [said("hit x", 100), said("hit y", 101)])
            default = await store.search_chat_history("hit")
            assert _contents(default) == ["hit y", "hit x"] + [f"hit {n}" for n in (11, 10, 9)] + [
                f"hit {n}" for n in range(8, 3, -1)
            ]
            assert len(await store.search_chat_history("hit", limit=None)) == 10
            assert await store.search_chat_history("hit", limit=0) == []
            assert len(await store.search_chat_history("hit", limit=13)) == 13
            assert len(await store.search_chat_history("hit", limit=2**62)) == 14
            assert _contents(await store.search_chat_history("hit", limit=1)) == ["hit y"]

        harness.with_store(scenario)

    @requirement("SS-22", "G-9")
    def test_matches_order_newest_first_then_session_then_position(self, harness: H) -> None:
        """SS-22, G-9: created_at descending; equal times by session id, then by position in
        the conversation; messages without created_at last (in the same tie order)."""

        async def scenario(store: Store) -> None:
            first = await _session_with(
                store, "a", [said("w 5 b", 5), said("w u1"), said("w 5 c", 5), said("w 7", 7)]
            )
            second = await _session_with(store, "b", [said("w 5 a", 5), said("w u2")])
            low, high = sorted([first, second])
            by_session = {first: ["w 5 b", "w 5 c"], second: ["w 5 a"]}
            undated = {first: ["w u1"], second: ["w u2"]}
            expected = ["w 7", *by_session[low], *by_session[high], *undated[low], *undated[high]]
            assert _contents(await store.search_chat_history("w", limit=50)) == expected

        harness.with_store(scenario)

    @requirement("SS-22")
    def test_a_match_reports_session_message_and_time(self, harness: H) -> None:
        """SS-22: session id and current name, role, the text in its original case, created_at
        as timestamp, and the relevance."""

        async def scenario(store: Store) -> None:
            session_id = await _session_with(
                store, "old name", [said("Hello\nWORLD", 42, role="assistant")]
            )
            await store.update_session_name(session_id, "New Name", True)
            hits = await store.search_chat_history("world")
            expected = ChatHistoryMatch(
                session_id=session_id,
                session_name="New Name",
                message_role="assistant",
                message_content="Hello\nWORLD",
                timestamp=42,
                relevance_score=1.0,
            )
            assert_exact(hits, [expected], "search_chat_history")

        harness.with_store(scenario)

    @requirement("SS-20", "SS-21", "G-8", "G-10")
    def test_bad_search_arguments_are_invalid(self, harness: H) -> None:
        """SS-20, SS-21, G-8, G-10: a non-str query, a negative or non-int limit, ill-typed
        dates, an invalid excluded id raise InvalidArgument (a ValueError)."""
        bad: list[dict[str, Any]] = [
            {"query": None},
            {"query": b"bytes"},
            {"query": 5},
            {"query": "\ud800"},
            {"query": "x", "limit": -1},
            {"query": "x", "limit": 1.5},
            {"query": "x", "limit": True},
            {"query": "x", "limit": "3"},
            {"query": "x", "after_date": -1},
            {"query": "x", "before_date": 1.0},
            {"query": "x", "after_date": "0"},
            {"query": "x", "exclude_session_id": ""},
            {"query": "x", "exclude_session_id": "a\x00"},
            {"query": "x", "exclude_session_id": 5},
        ]

        async def scenario(store: Store) -> None:
            await _session_with(store, "s", [said("x", 1)])
            for arguments in bad:
                with pytest.raises(ValueError) as raised:
                    await store.search_chat_history(**arguments)
                assert isinstance(raised.value, InvalidArgument), arguments

        harness.with_store(scenario)

    @requirement("SS-20", "SS-21", "SS-22")
    def test_search_agrees_with_the_model(self, harness: H) -> None:
        """SS-20 .. SS-22: on random conversations of awkward words, every query, window,
        exclusion and limit gives exactly the model's matches in the model's order."""
        conversations = st.lists(
            st.tuples(session_types(), st.lists(search_messages(), max_size=5)),
            min_size=1,
            max_size=3,
        )
        searches = st.lists(
            st.tuples(
                search_queries(),
                st.none() | st.integers(0, 12),
                st.none() | st.integers(0, 7),
                st.none() | st.integers(0, 7),
                st.booleans(),
            ),
            min_size=1,
            max_size=4,
        )

        def check(
            sessions: list[tuple[SessionType, list[Message]]],
            queries: list[tuple[str, int | None, int | None, int | None, bool]],
        ) -> None:
            clock = ManualClock()
            pending: list[str] = []
            model = SessionStoreModel(clock, id_source=lambda: pending.pop())
            with opened(harness, harness.new_context(clock=clock)) as store:
                ids: list[str] = []
                for session_type, messages in sessions:
                    made = harness.run(store.create_session("/w", "s", session_type))
                    pending.append(made.id)
                    model.create_session("/w", "s", session_type)
                    harness.run(store.replace_conversation(made.id, messages))
                    model.replace_conversation(made.id, messages)
                    ids.append(made.id)
                for query, limit, after, before, exclude in queries:
                    args = (query, limit, after, before, ids[0] if exclude else None)
                    expected = model.search_chat_history(*args)
                    actual = harness.run(store.search_chat_history(*args))
                    assert_exact(actual, expected, f"search_chat_history{args!r}")

        harness.for_all(check, sessions=conversations, queries=searches)
