"""Bad-input tests of the memory-storage suite (G-3, G-5, G-14, MS-1), as a mixin.

:class:`~agentstores.conformance.suites.memory_storage.MemoryStorageSuite` inherits these
tests; they are kept here so that each module stays readable. Every test fills a store, makes
calls that must raise InvalidArgument, and then checks that nothing of the store changed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from agentstores.spec.errors import InvalidArgument
from agentstores.spec.memory_storage import MemoryStorage, SessionSummary, UserMemory
from agentstores.spec.messages import Message

from ..harness import Harness
from ..markers import requirement
from ..strategies import invalid_json_values
from .memory_storage_support import assert_same, opened, store_snapshot

__all__ = ["BAD_IDS", "MemoryStorageBadInput"]

#: Values outside the id domain (G-1): empty, too long, NUL, a lone surrogate, non-str.
BAD_IDS: tuple[Any, ...] = ("", "x" * 257, "a\x00b", "\ud800", None, 7, b"u")

Call = Callable[[MemoryStorage], Awaitable[Any]]
_USERS, _SESSIONS = ["u", "v"], ["s"]


async def _populate(store: MemoryStorage) -> None:
    await store.save_user_memory(UserMemory("m1", "u", "tea", "input"))
    await store.save_user_memory(UserMemory("m2", "v", "coffee"))
    await store.save_session_summary(SessionSummary("s", "u", "summary"))
    for text in ("one", "two"):
        await store.save_message("s", "u", Message.text("user", text))


def _calls_with_id(bad: Any) -> list[tuple[str, Call]]:
    """Every operation with ``bad`` in each of its id positions."""
    message = Message.text("user", "x")
    return [
        ("save_user_memory id", lambda s: s.save_user_memory(UserMemory(bad, "u", "t"))),
        ("save_user_memory user", lambda s: s.save_user_memory(UserMemory("n", bad, "t"))),
        ("get_user_memories", lambda s: s.get_user_memories(bad)),
        ("update_user_memory id", lambda s: s.update_user_memory(UserMemory(bad, "u", "t"))),
        ("update_user_memory user", lambda s: s.update_user_memory(UserMemory("m1", bad, "t"))),
        ("delete_user_memory", lambda s: s.delete_user_memory(bad)),
        ("delete_by_ids user", lambda s: s.delete_user_memories_by_ids(bad, ["m1"])),
        ("delete_by_ids id", lambda s: s.delete_user_memories_by_ids("u", ["m1", bad])),
        ("clear_user_memories", lambda s: s.clear_user_memories(bad)),
        ("search_user_memories", lambda s: s.search_user_memories(bad, "t")),
        ("save_summary session", lambda s: s.save_session_summary(SessionSummary(bad, "u", "x"))),
        ("save_summary user", lambda s: s.save_session_summary(SessionSummary("s", bad, "x"))),
        (
            "update_summary session",
            lambda s: s.update_session_summary(SessionSummary(bad, "u", "x")),
        ),
        ("update_summary user", lambda s: s.update_session_summary(SessionSummary("s", bad, "x"))),
        ("get_summary session", lambda s: s.get_session_summary(bad, "u")),
        ("get_summary user", lambda s: s.get_session_summary("s", bad)),
        ("delete_summary session", lambda s: s.delete_session_summary(bad, "u")),
        ("delete_summary user", lambda s: s.delete_session_summary("s", bad)),
        ("save_message session", lambda s: s.save_message(bad, "u", message)),
        ("save_message user", lambda s: s.save_message("s", bad, message)),
        ("get_messages session", lambda s: s.get_messages(bad, "u")),
        ("get_messages user", lambda s: s.get_messages("s", bad)),
        ("delete_messages session", lambda s: s.delete_messages(bad, "u")),
        ("delete_messages user", lambda s: s.delete_messages("s", bad)),
        ("get_message_count user", lambda s: s.get_message_count(bad, "s")),
        ("get_message_count session", lambda s: s.get_message_count("u", bad)),
        ("cleanup_old_messages", lambda s: s.cleanup_old_messages(bad, 2**60)),
        ("cleanup_by_limit user", lambda s: s.cleanup_messages_by_limit(bad, "s", 1)),
        ("cleanup_by_limit session", lambda s: s.cleanup_messages_by_limit("u", bad, 1)),
    ]


def _calls_with_bad_values() -> list[tuple[str, Call]]:
    """Operations with a bad text, record, message, id list or number (MS-1, G-14)."""
    lone = "\udc80"
    bad_messages = [
        Message("", ({"type": "text", "text": "x"},)),
        Message("user", ({"text": "no type"},)),
        Message("user", ({"type": "text", "text": 5},)),
        Message("user", ({"type": "text", "text": lone},)),
        Message("user", metadata={"x": float("nan")}),
        Message("user", created_at=-1),
        Message("user", id=""),
        Message(5, ()),  # type: ignore[arg-type]
        "hello",  # not a Message at all
    ]
    calls: list[tuple[str, Call]] = [
        ("memory text", lambda s: s.save_user_memory(UserMemory("n", "u", lone))),
        ("memory input", lambda s: s.save_user_memory(UserMemory("n", "u", "t", lone))),
        ("memory type", lambda s: s.save_user_memory(UserMemory("n", "u", 5))),  # type: ignore[arg-type]
        ("memory record", lambda s: s.save_user_memory({"id": "n", "user_id": "u"})),  # type: ignore[arg-type]
        ("update text", lambda s: s.update_user_memory(UserMemory("m1", "u", lone))),
        ("update input", lambda s: s.update_user_memory(UserMemory("m1", "u", "t", None))),  # type: ignore[arg-type]
        ("summary text", lambda s: s.save_session_summary(SessionSummary("s", "u", lone))),
        ("summary record", lambda s: s.save_session_summary(None)),  # type: ignore[arg-type]
        ("update summary", lambda s: s.update_session_summary(SessionSummary("s", "u", b"x"))),  # type: ignore[arg-type]
        ("search query", lambda s: s.search_user_memories("u", lone)),
        ("search query type", lambda s: s.search_user_memories("u", None)),  # type: ignore[arg-type]
        ("memory_ids as str", lambda s: s.delete_user_memories_by_ids("u", "m1")),
        ("memory_ids as set", lambda s: s.delete_user_memories_by_ids("u", {"m1"})),  # type: ignore[arg-type]
        ("before type", lambda s: s.cleanup_old_messages("u", "2000")),  # type: ignore[arg-type]
        ("keep_limit type", lambda s: s.cleanup_messages_by_limit("u", "s", 1.0)),  # type: ignore[arg-type]
        ("search limit", lambda s: s.search_user_memories("u", "t", None)),  # type: ignore[arg-type]
        ("messages limit", lambda s: s.get_messages("s", "u", "3")),  # type: ignore[arg-type]
    ]
    for index, message in enumerate(bad_messages):
        calls.append(
            (f"message {index}", lambda s, m=message: s.save_message("s", "u", m))  # type: ignore[misc]
        )
    return calls


class MemoryStorageBadInput:
    """Bad-input tests; mixed into the memory-storage suite."""

    def _expect_rejected(self, harness: Harness[Any], calls: list[tuple[str, Call]]) -> None:
        async def body(store: MemoryStorage) -> None:
            await _populate(store)
            before = await store_snapshot(store, _USERS, _SESSIONS)
            for what, call in calls:
                with pytest.raises(InvalidArgument):
                    await call(store)
                    pytest.fail(f"{what}: no InvalidArgument")
            after = await store_snapshot(store, _USERS, _SESSIONS)
            for key, value in before.items():
                assert_same(after[key], value, f"{key} after the rejected calls")

        harness.with_store(body)

    @requirement("G-3", "MS-1", "G-10")
    @pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
    def test_ids_outside_the_domain_are_rejected(self, harness: Harness[Any], bad: Any) -> None:
        """G-3, MS-1, G-10: an id outside the domain in any position of any operation raises
        InvalidArgument, and nothing is written or deleted."""
        self._expect_rejected(harness, _calls_with_id(bad))

    @requirement("MS-1", "G-14", "G-5")
    def test_bad_texts_records_and_messages_are_rejected(self, harness: Harness[Any]) -> None:
        """MS-1, G-14, G-5: lone surrogates, wrong types, malformed messages, a str of memory
        ids and non-int numbers raise InvalidArgument, and nothing is written or deleted."""
        self._expect_rejected(harness, _calls_with_bad_values())

    @requirement("G-5", "G-14")
    def test_messages_with_non_json_values_are_rejected(self, harness: Harness[Any]) -> None:
        """G-5, G-14: a message whose metadata or content holds a value outside the JSON
        domain raises InvalidArgument and is not stored."""
        with opened(harness) as store:

            def check(value: Any) -> None:
                for message in (
                    Message("user", ({"type": "data", "value": value},)),
                    Message("user", metadata={"value": value}),
                ):
                    with pytest.raises(InvalidArgument):
                        harness.run(store.save_message("s", "u", message))
                assert harness.run(store.get_message_count("u", "s")) == 0

            harness.for_all(check, value=invalid_json_values())
