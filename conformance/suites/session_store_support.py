"""What the session-store suite modules share: message builders, strategies, snapshots of a
whole store, and a synchronous way to keep a store open across steps.

Nothing here is a test. Exact comparison (:func:`assert_exact`, stricter than ``==`` about
``1``/``1.0``/``True`` and ``-0.0``, G-4) and the G-7 scribbler come from the thread/run
support module, so that every family compares records the same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from agentstores.spec.messages import ContentPart, Message
from agentstores.spec.session_store import (
    Session,
    SessionInsights,
    SessionStore,
    SessionType,
    TokenStatsUpdate,
)
from agentstores.spec.values import MAX_U64

from ..backend import StoreContext
from ..harness import Harness
from ..models.session_store import SessionStoreModel
from ..strategies import content_parts, plain_ids
from .thread_run_support import (
    assert_exact,
    canonical,
    error_kind,
    nested_lists,
    rich_json_object,
    scribble,
)

__all__ = [
    "ALL_TYPES",
    "SEARCH_WORDS",
    "Snapshot",
    "assert_exact",
    "canonical",
    "counters",
    "error_kind",
    "model_snapshot",
    "nested_lists",
    "opened",
    "parsed",
    "recipe_values",
    "rich_json_object",
    "said",
    "scribble",
    "search_messages",
    "search_queries",
    "session_names",
    "session_types",
    "store_snapshot",
    "token_updates",
]

#: Every session type, in declaration order (SS-1).
ALL_TYPES: tuple[SessionType, ...] = tuple(SessionType)

#: Words that search tests put in messages: case and Unicode variants whose lower-cased forms
#: do and do not meet (SS-20), short words (fewer than three code points), punctuation and
#: quotes (FTS query syntax), NUL, and text that only a code-point substring test finds.
SEARCH_WORDS: tuple[str, ...] = (
    "alpha",
    "Alpha",
    "ALPHABET",
    "beta",
    "ab",
    "a",
    "é",
    "É",
    "e\u0301",
    "école",
    "ÉCOLE",
    "straße",
    "STRASSE",
    "İstanbul",
    "ΣΟΦΊΑ",
    "σοφία",
    "日本語",
    "語",
    "👩‍💻",
    '"quoted"',
    "AND",
    "OR",
    "NEAR(x)",
    "col:umn",
    "x*",
    "-minus",
    "x\x00y",
    "tab\tsep",
)


def said(text: str, created_at: int | None = None, *, role: str = "user", **fields: Any) -> Message:
    """A message with one text part."""
    return Message.text(role, text, created_at=created_at, **fields)


def parsed(document: str) -> Any:
    """An export document as JSON (big integers and ``-0.0`` exact)."""
    return json.loads(document)


@contextmanager
def opened(harness: Harness[Any], context: StoreContext | None = None) -> Iterator[SessionStore]:
    """Keep a store open across several ``harness.run`` calls (hypothesis properties and state
    machines are synchronous); the store is closed on exit."""
    manager = harness.open(context)
    store: SessionStore = harness.run(manager.__aenter__())
    try:
        yield store
    finally:
        harness.run(manager.__aexit__(None, None, None))


# --- strategies ------------------------------------------------------------------------------


def session_types() -> st.SearchStrategy[SessionType]:
    """Every session type (SS-1)."""
    return st.sampled_from(ALL_TYPES)


def session_names() -> st.SearchStrategy[str]:
    """Names (SS-2): empty, plain, any valid Unicode without NUL."""
    return st.one_of(
        st.sampled_from(["", "name", "Näme ✓", " "]),
        st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=10),
    )


def counters() -> st.SearchStrategy[int]:
    """Unsigned 64-bit token counters (SS-2): small ones and the extremes."""
    return st.one_of(
        st.integers(min_value=0, max_value=1000),
        st.sampled_from([0, 2**63 - 1, 2**63, MAX_U64]),
    )


def token_updates() -> st.SearchStrategy[TokenStatsUpdate]:
    """Token updates with each field present or absent (SS-12)."""
    maybe = st.none() | counters()
    return st.builds(
        TokenStatsUpdate,
        schedule_id=st.none() | plain_ids(max_size=3),
        total_tokens=maybe,
        input_tokens=maybe,
        output_tokens=maybe,
        accumulated_total_tokens=maybe,
        accumulated_input_tokens=maybe,
        accumulated_output_tokens=maybe,
    )


def recipe_values() -> st.SearchStrategy[dict[str, str]]:
    """User recipe values (SS-2): str to str without NUL."""
    text = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=6)
    return st.dictionaries(text, text, max_size=3)


def _search_text(vocabulary: Sequence[str]) -> st.SearchStrategy[str]:
    words = st.lists(st.sampled_from(vocabulary), min_size=1, max_size=3)
    glue = st.sampled_from([" ", "", "-", "\n"])
    return st.tuples(words, glue).map(lambda pair: pair[1].join(pair[0]))


def search_messages(
    *,
    created: st.SearchStrategy[int | None] | None = None,
    vocabulary: Sequence[str] = SEARCH_WORDS,
) -> st.SearchStrategy[Message]:
    """Messages for search tests (SS-20): text parts made of :data:`SEARCH_WORDS`, now and then
    a part of another type that carries the same words (never searched), and created times
    from a small range so that ties and window edges happen."""
    # one_of() drops repeated strategy objects, so weights come from distinct ones.
    text_parts = [
        _search_text(vocabulary).map(lambda t: {"type": "text", "text": t}) for _ in range(3)
    ]
    decoys = _search_text(vocabulary).map(lambda t: {"type": "thinking", "text": t})
    parts: st.SearchStrategy[ContentPart] = st.one_of(*text_parts, decoys, content_parts())
    return st.builds(
        Message,
        role=st.sampled_from(["user", "assistant"]),
        content=st.lists(parts, min_size=1, max_size=3).map(tuple),
        created_at=created if created is not None else st.none() | st.integers(0, 6),
    )


def search_queries(*, vocabulary: Sequence[str] = SEARCH_WORDS) -> st.SearchStrategy[str]:
    """Queries of one to three words from ``vocabulary`` (and their upper- and lower-case
    forms and fragments), joined by assorted white space, or blank."""
    word = st.sampled_from(vocabulary)
    variant = st.one_of(
        word,
        word.map(str.upper),
        word.map(str.lower),
        word.map(lambda w: w[1:] or w),
        word.map(lambda w: w[:2]),
    )
    space = st.sampled_from([" ", "  ", "\t", "\n", "\u3000", "\x1c"])
    joined = st.tuples(st.lists(variant, min_size=1, max_size=3), space).map(
        lambda pair: pair[1].join(pair[0])
    )
    return st.one_of(joined, joined, st.sampled_from(["", " ", "\t\n"]))


# --- whole-store snapshots -------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """Everything a session store holds, as read through its public operations.

    Attributes:
        sessions: ``list_sessions_by_types`` of every type (SS-6), without messages.
        full: each listed session read with its messages (SS-5).
        insights: ``get_insights`` (SS-16).
    """

    sessions: list[Session]
    full: dict[str, Session]
    insights: SessionInsights


async def store_snapshot(store: SessionStore) -> Snapshot:
    """Read everything ``store`` holds."""
    sessions = await store.list_sessions_by_types(list(ALL_TYPES))
    full = {s.id: await store.get_session(s.id, True) for s in sessions}
    return Snapshot(sessions, full, await store.get_insights())


def model_snapshot(model: SessionStoreModel) -> Snapshot:
    """What :func:`store_snapshot` must read from a store in the model's state."""
    sessions = model.list_sessions_by_types(list(ALL_TYPES))
    full = {s.id: model.get_session(s.id, True) for s in sessions}
    return Snapshot(sessions, full, model.get_insights())
