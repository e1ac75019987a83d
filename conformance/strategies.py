"""Hypothesis strategies shared by every family: ids, JSON values, messages.

Each is a function (nothing is built at import time) with keyword-only bounds; the docstring
says which spec rule the generated data exercises.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from agentstores.spec.messages import ContentPart, Message
from agentstores.spec.values import MAX_ID_LENGTH, MAX_INT_BITS

__all__ = [
    "ADVERSARIAL_IDS",
    "adversarial_ids",
    "content_parts",
    "ids",
    "invalid_ids",
    "invalid_json_values",
    "json_objects",
    "json_values",
    "messages",
    "plain_ids",
    "timestamps",
]

#: Ids that broke real stores: separators, traversal, absolute paths, look-alikes, wildcards,
#: key-family names, white space, the longest allowed. All are valid ids (G-1).
ADVERSARIAL_IDS: tuple[str, ...] = (
    "a",
    "A",
    "a/b",
    "a_b",
    "a:b",
    "a:session:b",
    "user_id:x",
    "..",
    "../x",
    "../../etc/passwd",
    "/abs/path",
    "C:\\temp\\x",
    "a\\b",
    ".",
    ".hidden",
    "x.json",
    " ",
    " a",
    "a ",
    "\t",
    "{tag}",
    "{a}b",
    "*",
    "?",
    "[x]",
    "%2F",
    "a%3Ab",
    "é",
    "e\u0301",
    "ﬁle",
    "\u202eevil",
    "日本語",
    "👩‍💻",
    "CON",
    "nul",
    "app:",
    "user:",
    "temp:",
    "session:",
    "x" * MAX_ID_LENGTH,
    "é" * MAX_ID_LENGTH,
)


def plain_ids(*, min_size: int = 1, max_size: int = 8) -> st.SearchStrategy[str]:
    """Short lowercase ids (G-1): readable in failure reports, likely to collide on purpose."""
    return st.text(alphabet="abc", min_size=min_size, max_size=max_size)


def adversarial_ids() -> st.SearchStrategy[str]:
    """Valid ids that stress isolation (G-2): :data:`ADVERSARIAL_IDS` and random mixes of
    separators, dots, slashes and non-ASCII text."""
    pieces = st.sampled_from(["/", "..", ":", "_", "{", "}", "*", "\\", " ", "a", "b", "é", "$"])
    mixed = st.lists(pieces, min_size=1, max_size=6).map("".join)
    unicode_text = st.text(
        alphabet=st.characters(codec="utf-8", exclude_characters="\x00"),
        min_size=1,
        max_size=12,
    )
    return st.one_of(st.sampled_from(ADVERSARIAL_IDS), mixed, unicode_text)


def ids() -> st.SearchStrategy[str]:
    """Any valid id (G-1), mostly short plain ones so that state machines reuse them."""
    return st.one_of(plain_ids(), adversarial_ids())


def invalid_ids() -> st.SearchStrategy[Any]:
    """Values outside the id domain (G-3): empty, too long, NUL, lone surrogates, non-str."""
    return st.one_of(
        st.just(""),
        st.just("x" * (MAX_ID_LENGTH + 1)),
        st.just("a\x00b"),
        st.just("\ud800"),
        st.none(),
        st.integers(),
        st.just(b"bytes"),
    )


def timestamps(*, min_value: int = 0, max_value: int = 4_102_444_800_000) -> st.SearchStrategy[int]:
    """Times in ms since the epoch (G-6); the default range ends in 2100."""
    return st.integers(min_value=min_value, max_value=max_value)


def _json_scalars() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.sampled_from([2**64 - 1, 2**64, -(2**63), 2 ** (MAX_INT_BITS - 1)]),
        st.floats(allow_nan=False, allow_infinity=False),
        st.just(-0.0),
        st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
    )


def json_values(*, max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Values of the JSON domain (G-4): big integers, -0.0, unicode, nested lists and dicts."""
    keys = st.text(alphabet=st.characters(codec="utf-8"), max_size=8)
    return st.recursive(
        _json_scalars(),
        lambda children: st.one_of(
            st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)
        ),
        max_leaves=max_leaves,
    )


def json_objects(*, max_size: int = 4) -> st.SearchStrategy[dict[str, Any]]:
    """JSON objects (G-4) with str keys and :func:`json_values` values."""
    keys = st.text(alphabet=st.characters(codec="utf-8"), max_size=8)
    return st.dictionaries(keys, json_values(max_leaves=6), max_size=max_size)


def invalid_json_values() -> st.SearchStrategy[Any]:
    """Values outside the JSON domain (G-5), alone or nested inside a valid container."""
    bad = st.sampled_from(
        [
            float("nan"),
            float("inf"),
            float("-inf"),
            (1, 2),
            {1, 2},
            b"bytes",
            object(),
            {1: "int key"},
            "\udc80",
            2 ** (MAX_INT_BITS + 1),
        ]
    )
    return st.one_of(bad, bad.map(lambda v: {"ok": 1, "bad": [v]}))


def content_parts() -> st.SearchStrategy[ContentPart]:
    """Typed content parts (G-13): text parts and other types with JSON fields."""
    text = st.text(alphabet=st.characters(codec="utf-8"), max_size=30)
    text_parts = text.map(lambda t: {"type": "text", "text": t})
    other = st.builds(
        lambda kind, data: {"type": kind, **data},
        st.sampled_from(["image", "tool_request", "tool_response", "thinking"]),
        st.dictionaries(st.sampled_from(["id", "data", "name", "args"]), json_values(max_leaves=4)),
    )
    return st.one_of(text_parts, other)


def messages(
    *, roles: tuple[str, ...] = ("user", "assistant", "system", "tool")
) -> st.SearchStrategy[Message]:
    """Messages of the shared model (G-12 .. G-14) with every optional field exercised."""
    return st.builds(
        Message,
        role=st.sampled_from(roles),
        content=st.lists(content_parts(), max_size=3).map(tuple),
        created_at=st.one_of(st.none(), timestamps()),
        id=st.one_of(st.none(), plain_ids()),
        metadata=st.one_of(st.just({}), json_objects(max_size=2)),
    )
