"""Summary, message and retention tests of the memory-storage suite (MS-14 .. MS-23), as a
mixin of :class:`~agentstores.conformance.suites.memory_storage.MemoryStorageSuite`.
"""

from __future__ import annotations

import pytest

from agentstores.spec.errors import (
    InvalidArgument,
    NotFound,
)
from agentstores.spec.memory_storage import SessionSummary
from agentstores.spec.messages import Message
from agentstores.spec.values import check_id

from ..markers import requirement
from .memory_storage_support import (
    H,
    Store,
    assert_same,
    texts_of,
)

__all__ = ["MessageTests"]


class MessageTests:
    """Session summaries, conversations and their clean-up."""

    # --- session summaries ---------------------------------------------------------------

    @requirement("MS-14", "MS-2")
    def test_save_session_summary_creates_then_replaces(self, harness: H) -> None:
        """MS-14, MS-2: the first save stamps created_at = updated_at = now; a later save
        replaces the text, keeps created_at and stamps updated_at."""

        async def body(store: Store) -> None:
            harness.clock.set(10)
            first = await store.save_session_summary(SessionSummary("s", "u", "one", 1, 1))
            assert_same(first, SessionSummary("s", "u", "one", 10, 10), "the first save")
            harness.clock.set(20)
            second = await store.save_session_summary(SessionSummary("s", "u", "two"))
            assert_same(second, SessionSummary("s", "u", "two", 10, 20), "the second save")
            assert_same(await store.get_session_summary("s", "u"), second, "the stored summary")

        harness.with_store(body)

    @requirement("MS-14", "MS-24", "G-2")
    def test_summaries_are_keyed_by_session_and_user(self, harness: H) -> None:
        """MS-14, MS-24, G-2: one session id of two users holds two summaries, and (a, b) is
        not (b, a); deleting one leaves the others."""

        async def body(store: Store) -> None:
            pairs = [("s", "u"), ("s", "v"), ("u", "s"), ("t", "u")]
            saved = {}
            for session, user in pairs:
                text = f"{session}/{user}"
                saved[(session, user)] = await store.save_session_summary(
                    SessionSummary(session, user, text)
                )
            for pair in pairs:
                assert_same(await store.get_session_summary(*pair), saved[pair], f"summary {pair}")
            await store.delete_session_summary("s", "u")
            assert await store.get_session_summary("s", "u") is None
            for pair in pairs[1:]:
                assert_same(await store.get_session_summary(*pair), saved[pair], f"summary {pair}")

        harness.with_store(body)

    @requirement("MS-15")
    def test_missing_summary_is_none_and_delete_is_a_no_op(self, harness: H) -> None:
        """MS-15: get of a missing summary returns None, not an error; deleting a missing one
        does nothing."""

        async def body(store: Store) -> None:
            assert await store.get_session_summary("s", "u") is None
            await store.delete_session_summary("s", "u")
            await store.save_session_summary(SessionSummary("s", "u", "x"))
            await store.delete_session_summary("s", "u")
            await store.delete_session_summary("s", "u")
            assert await store.get_session_summary("s", "u") is None

        harness.with_store(body)

    @requirement("MS-16", "MS-2", "G-10")
    def test_update_session_summary(self, harness: H) -> None:
        """MS-16, MS-2, G-10: updating a missing summary raises NotFound and creates nothing;
        updating an existing one replaces it as a save does."""

        async def body(store: Store) -> None:
            with pytest.raises(NotFound):
                await store.update_session_summary(SessionSummary("s", "u", "x"))
            assert await store.get_session_summary("s", "u") is None
            harness.clock.set(10)
            await store.save_session_summary(SessionSummary("s", "u", "one"))
            harness.clock.set(30)
            updated = await store.update_session_summary(SessionSummary("s", "u", "two", 5, 5))
            assert_same(updated, SessionSummary("s", "u", "two", 10, 30), "the update's result")
            assert_same(await store.get_session_summary("s", "u"), updated, "the stored summary")
            with pytest.raises(NotFound):
                await store.update_session_summary(SessionSummary("s", "v", "other user"))

        harness.with_store(body)

    # --- messages ------------------------------------------------------------------------

    @requirement("MS-17", "MS-2", "G-14")
    def test_save_message_returns_the_stored_record(self, harness: H) -> None:
        """MS-17, MS-2, G-14: save_message assigns a valid id and created_at = now, and stores
        the message exactly (its own id, time and metadata untouched)."""
        harness.clock.set(500)
        message = Message(
            "assistant",
            ({"type": "text", "text": "hi"}, {"type": "image", "url": "x", "size": -0.0}),
            created_at=3,
            id="mine",
            metadata={"user_visible": False, "n": 2**70},
        )

        async def body(store: Store) -> None:
            record = await store.save_message("s", "u", message)
            check_id(record.id, what="the assigned message id")
            assert (record.session_id, record.user_id, record.created_at) == ("s", "u", 500)
            assert_same(record.message, message, "the stored message")
            assert_same(await store.get_messages("s", "u"), [record], "the conversation")

        harness.with_store(body)

    @requirement("MS-17")
    def test_message_ids_are_distinct(self, harness: H) -> None:
        """MS-17: every saved message gets an id no other message in the store has."""

        async def body(store: Store) -> None:
            ids = []
            for session, user in [("s", "u"), ("s", "u"), ("t", "u"), ("s", "v"), ("s", "u")]:
                record = await store.save_message(
                    session, user, Message.text("user", "x", id="same")
                )
                ids.append(record.id)
            assert len(set(ids)) == len(ids), f"message ids repeat: {ids}"

        harness.with_store(body)

    @requirement("MS-18", "G-9")
    def test_conversation_order_is_save_order(self, harness: H) -> None:
        """MS-18, G-9: messages come back in save order even when the clock went back, times
        tie, or the messages' own times disagree."""

        async def body(store: Store) -> None:
            harness.clock.set(100)
            await store.save_message("s", "u", Message.text("user", "first", created_at=9))
            harness.clock.set(50)
            await store.save_message("s", "u", Message.text("user", "second", created_at=1))
            await store.save_message("s", "u", Message.text("user", "third", created_at=5))
            await store.save_message("s", "u", Message.text("user", "fourth"))
            got = await store.get_messages("s", "u")
            assert texts_of(got) == ["first", "second", "third", "fourth"], texts_of(got)
            assert [r.created_at for r in got] == [100, 50, 50, 50]
            assert texts_of(await store.get_messages("s", "u", 2)) == ["third", "fourth"]

        harness.with_store(body)

    @requirement("MS-19", "G-8")
    def test_get_messages_returns_the_newest_oldest_first(self, harness: H) -> None:
        """MS-19, G-8: limit n gives the newest n, oldest of them first; 0 and large limits
        give all; a negative limit raises InvalidArgument; no messages gives []."""

        async def body(store: Store) -> None:
            texts = [f"m{i}" for i in range(5)]
            for text in texts:
                harness.clock.advance(1)
                await store.save_message("s", "u", Message.text("user", text))
            for limit, expected in ((1, texts[4:]), (2, texts[3:]), (0, texts), (50, texts)):
                got = texts_of(await store.get_messages("s", "u", limit))
                assert got == expected, f"limit {limit}: got {got}, expected {expected}"
            for bad in (-1, False):
                with pytest.raises(InvalidArgument):
                    await store.get_messages("s", "u", bad)
            assert await store.get_messages("s", "nobody") == []
            assert await store.get_messages("s", "nobody", 3) == []

        harness.with_store(body)

    @requirement("MS-20", "MS-24")
    def test_delete_messages_deletes_one_conversation(self, harness: H) -> None:
        """MS-20, MS-24: delete_messages empties (session, user) and no other conversation."""

        async def body(store: Store) -> None:
            for session, user in [("s", "u"), ("s", "v"), ("u", "s"), ("t", "u")]:
                await store.save_message(session, user, Message.text("user", f"{session}{user}"))
            await store.delete_messages("s", "u")
            await store.delete_messages("s", "u")
            await store.delete_messages("never", "u")
            assert await store.get_messages("s", "u") == []
            assert await store.get_message_count("u", "s") == 0
            for session, user in [("s", "v"), ("u", "s"), ("t", "u")]:
                got = texts_of(await store.get_messages(session, user))
                assert got == [f"{session}{user}"], f"conversation {(session, user)}: {got}"

        harness.with_store(body)

    @requirement("MS-21", "MS-24")
    def test_message_count_takes_user_then_session(self, harness: H) -> None:
        """MS-21, MS-24: get_message_count(user_id, session_id) counts that conversation; the
        swapped pair is another conversation."""

        async def body(store: Store) -> None:
            for _ in range(3):
                await store.save_message("s", "u", Message.text("user", "x"))
            await store.save_message("u", "s", Message.text("user", "y"))
            assert await store.get_message_count("u", "s") == 3
            assert await store.get_message_count(user_id="s", session_id="u") == 1
            assert await store.get_message_count("nobody", "s") == 0

        harness.with_store(body)

    # --- retention -----------------------------------------------------------------------

    @requirement("MS-22", "MS-24")
    def test_cleanup_old_messages_is_strict_and_per_user(self, harness: H) -> None:
        """MS-22, MS-24: deletes the user's messages older than `before` in every session; a
        message stamped exactly `before` stays; other users are untouched."""

        async def body(store: Store) -> None:
            harness.clock.set(100)
            await store.save_message("s1", "u", Message.text("user", "old"))
            await store.save_message("s1", "v", Message.text("user", "v-old"))
            harness.clock.set(200)
            await store.save_message("s1", "u", Message.text("user", "edge"))
            await store.save_message("s2", "u", Message.text("user", "edge2"))
            harness.clock.set(300)
            await store.save_message("s1", "u", Message.text("user", "new"))
            await store.cleanup_old_messages("u", 200)
            assert texts_of(await store.get_messages("s1", "u")) == ["edge", "new"]
            assert texts_of(await store.get_messages("s2", "u")) == ["edge2"]
            assert texts_of(await store.get_messages("s1", "v")) == ["v-old"]
            await store.cleanup_old_messages("u", 10_000)
            assert await store.get_message_count("u", "s1") == 0
            assert await store.get_message_count("u", "s2") == 0
            assert await store.get_message_count("v", "s1") == 1
            for bad in (-1, 1.5, None):
                with pytest.raises(InvalidArgument):
                    await store.cleanup_old_messages("v", bad)  # type: ignore[arg-type]
            assert await store.get_message_count("v", "s1") == 1

        harness.with_store(body)

    @requirement("MS-22", "MS-18")
    def test_cleanup_old_messages_when_the_clock_went_back(self, harness: H) -> None:
        """MS-22, MS-18: retention reads created_at, not position; survivors keep save order."""

        async def body(store: Store) -> None:
            for time, text in ((300, "a"), (100, "b"), (400, "c"), (200, "d")):
                harness.clock.set(time)
                await store.save_message("s", "u", Message.text("user", text))
            await store.cleanup_old_messages("u", 250)
            assert texts_of(await store.get_messages("s", "u")) == ["a", "c"]

        harness.with_store(body)

    @requirement("MS-23", "MS-24")
    def test_cleanup_messages_by_limit(self, harness: H) -> None:
        """MS-23, MS-24: keeps the newest keep_limit messages of one conversation; shorter ones
        are unchanged; other conversations, the same session of another user included, are
        untouched."""

        async def body(store: Store) -> None:
            texts = [f"m{i}" for i in range(5)]
            for text in texts:
                for session, user in [("s", "u"), ("s", "v"), ("t", "u")]:
                    await store.save_message(session, user, Message.text("user", text))
            await store.cleanup_messages_by_limit("u", "s", 2)
            assert texts_of(await store.get_messages("s", "u")) == texts[3:]
            await store.cleanup_messages_by_limit("u", "s", 5)
            assert texts_of(await store.get_messages("s", "u")) == texts[3:]
            await store.cleanup_messages_by_limit("u", "none", 1)
            assert texts_of(await store.get_messages("s", "v")) == texts
            assert texts_of(await store.get_messages("t", "u")) == texts

        harness.with_store(body)

    @requirement("MS-23", "G-8")
    def test_cleanup_by_limit_refuses_non_positive_limits(self, harness: H) -> None:
        """MS-23, G-8: keep_limit 0 or negative raises InvalidArgument and deletes nothing."""

        async def body(store: Store) -> None:
            for index in range(3):
                await store.save_message("s", "u", Message.text("user", str(index)))
            for bad in (0, -1, True):
                with pytest.raises(InvalidArgument):
                    await store.cleanup_messages_by_limit("u", "s", bad)
            assert await store.get_message_count("u", "s") == 3

        harness.with_store(body)
