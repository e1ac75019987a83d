"""Requirement tests of conversations and updates (SS-8 .. SS-15; G-5, G-12 .. G-15).

Readable examples, one behaviour each; the state machine covers the same rules at random.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import strategies as st

from agentstores.spec.errors import InvalidArgument, NotFound
from agentstores.spec.messages import Message, message_from_json, message_to_json
from agentstores.spec.session_store import SessionStore, SessionType, TokenStatsUpdate

from ..harness import Harness
from ..markers import requirement
from ..strategies import messages
from .session_store_support import (
    ALL_TYPES,
    assert_exact,
    nested_lists,
    opened,
    rich_json_object,
    said,
    store_snapshot,
)

__all__ = ["ConversationTests"]

Store = SessionStore
H = Harness[SessionStore]

#: Messages that break one rule each of G-12 .. G-14.
MALFORMED: tuple[Any, ...] = (
    Message(role=""),
    Message(role=5),  # type: ignore[arg-type]
    Message(role="user", content=({"text": "no type"},)),
    Message(role="user", content=({"type": "text"},)),
    Message(role="user", content=({"type": "text", "text": 5},)),
    Message(role="user", content=({"type": "x", "v": float("nan")},)),
    Message(role="user", created_at=-1),
    Message(role="user", created_at=1.5),  # type: ignore[arg-type]
    Message(role="user", id=""),
    Message(role="user", metadata={"n": float("inf")}),
    Message(role="user", metadata={"deep": nested_lists(64)}),
    {"role": "user", "content": []},
    "user: hi",
)


def _update_calls(store: Store, session_id: str) -> dict[str, Callable[[], Awaitable[None]]]:
    """One valid call of every update (SS-8 .. SS-13) on ``session_id``."""
    return {
        "add_message": lambda: store.add_message(session_id, said("hi", 5)),
        "replace_conversation": lambda: store.replace_conversation(session_id, [said("r", 6)]),
        "truncate_conversation": lambda: store.truncate_conversation(session_id, 1000),
        "update_session_name": lambda: store.update_session_name(session_id, "n", True),
        "update_extension_data": lambda: store.update_extension_data(session_id, {"e": 1}),
        "update_token_stats": lambda: store.update_token_stats(
            session_id, TokenStatsUpdate(total_tokens=3)
        ),
        "update_provider_config": lambda: store.update_provider_config(session_id, "p", {"m": 1}),
        "update_recipe": lambda: store.update_recipe(session_id, {"r": 1}, {"k": "v"}),
    }


def _invalid_update_calls(store: Store, session_id: str) -> list[Callable[[], Awaitable[None]]]:
    """Update calls with one argument outside its domain each (SS-15, G-5)."""
    nan: Any = float("nan")
    calls: list[Callable[[], Awaitable[None]]] = [
        lambda: store.add_message(session_id, MALFORMED[2]),
        lambda: store.replace_conversation(session_id, [said("ok"), MALFORMED[4]]),
        lambda: store.replace_conversation(session_id, "not a list"),  # type: ignore[arg-type]
        lambda: store.truncate_conversation(session_id, -1),
        lambda: store.truncate_conversation(session_id, 1.5),  # type: ignore[arg-type]
        lambda: store.truncate_conversation(session_id, None),  # type: ignore[arg-type]
        lambda: store.update_session_name(session_id, "a\x00b", True),
        lambda: store.update_session_name(session_id, None, True),  # type: ignore[arg-type]
        lambda: store.update_session_name(session_id, "n", 1),  # type: ignore[arg-type]
        lambda: store.update_session_name(session_id, "n", None),  # type: ignore[arg-type]
        lambda: store.update_extension_data(session_id, {"x": nan}),
        lambda: store.update_extension_data(session_id, [1]),  # type: ignore[arg-type]
        lambda: store.update_extension_data(session_id, None),  # type: ignore[arg-type]
        lambda: store.update_token_stats(session_id, TokenStatsUpdate(total_tokens=-1)),
        lambda: store.update_token_stats(session_id, TokenStatsUpdate(input_tokens=2**64)),
        lambda: store.update_token_stats(session_id, TokenStatsUpdate(output_tokens=True)),
        lambda: store.update_token_stats(session_id, TokenStatsUpdate(schedule_id="")),
        lambda: store.update_token_stats(session_id, {"total_tokens": 1}),  # type: ignore[arg-type]
        lambda: store.update_provider_config(session_id, "p\x00", None),
        lambda: store.update_provider_config(session_id, 5, None),  # type: ignore[arg-type]
        lambda: store.update_provider_config(session_id, None, {"x": nan}),
        lambda: store.update_provider_config(session_id, None, "cfg"),  # type: ignore[arg-type]
        lambda: store.update_recipe(session_id, {1: "int key"}, None),  # type: ignore[dict-item]
        lambda: store.update_recipe(session_id, None, {"k": 5}),  # type: ignore[dict-item]
        lambda: store.update_recipe(session_id, None, {"k": "v\x00"}),
        lambda: store.update_recipe(session_id, None, ["k"]),  # type: ignore[arg-type]
    ]
    return calls


class ConversationTests:
    """Appending, replacing and truncating conversations; the updates of SS-11 .. SS-13."""

    @requirement("SS-8", "SS-14")
    def test_add_message_appends_and_stamps_updated_at(self, harness: H) -> None:
        """SS-8, SS-14: the message goes at the end; updated_at becomes now, created_at stays."""

        async def scenario(store: Store) -> None:
            session = await store.create_session("/w", "s")
            harness.clock.advance(100)
            await store.add_message(session.id, said("one", 1))
            harness.clock.advance(100)
            await store.add_message(session.id, said("two", 2, role="assistant"))
            got = await store.get_session(session.id, True)
            assert_exact(got.conversation, (said("one", 1), said("two", 2, role="assistant")))
            assert got.message_count == 2
            assert (got.created_at, got.updated_at) == (
                session.created_at,
                session.created_at + 200,
            )

        harness.with_store(scenario)

    @requirement("SS-8")
    def test_conversation_order_is_append_order_not_created_at(self, harness: H) -> None:
        """SS-8: messages load in the order they were added, whatever their created_at."""
        added = [said("late", 30), said("early", 10), said("undated"), said("middle", 20)]

        async def scenario(store: Store) -> None:
            session = await store.create_session("/w", "s")
            for message in added:
                await store.add_message(session.id, message)
            assert_exact((await store.get_session(session.id, True)).conversation, tuple(added))

        harness.with_store(scenario)

    @requirement("SS-8", "SS-9", "G-12", "G-13", "G-14", "G-15")
    def test_messages_round_trip_exactly(self, harness: H) -> None:
        """SS-8, SS-9, G-12 .. G-15: any messages (every role, part type, field, created time,
        id and metadata) come back exactly and in order, added one by one or replaced whole."""
        with opened(harness) as store:
            session = harness.run(store.create_session("/w", "s"))

            def check(saved: list[Message]) -> None:
                harness.run(store.replace_conversation(session.id, saved))
                got = harness.run(store.get_session(session.id, True))
                assert_exact(got.conversation, tuple(saved), "replaced conversation")
                harness.run(store.replace_conversation(session.id, []))
                for message in saved:
                    harness.run(store.add_message(session.id, message))
                got = harness.run(store.get_session(session.id, True))
                assert_exact(got.conversation, tuple(saved), "added conversation")
                assert got.conversation is not None
                as_json = [message_to_json(m) for m in got.conversation]
                assert_exact([message_from_json(j) for j in as_json], saved)

            harness.for_all(check, saved=st.lists(messages(), max_size=4))
            rich = Message(
                role="tool",
                content=(
                    {"type": "text", "text": "𝄞 e\u0301 \x00"},
                    {**rich_json_object(), "type": "tool_response"},
                ),
                created_at=2**63 - 1,
                id="../m:1",
                metadata={"user_visible": False, "n": -0.0},
            )
            check([rich, Message(role="user")])

    @requirement("SS-8", "SS-15", "G-14")
    def test_malformed_messages_are_rejected_and_nothing_written(self, harness: H) -> None:
        """SS-8, SS-15, G-14: a malformed message (alone or inside a conversation) raises
        InvalidArgument, also for a missing session; the conversation and updated_at stay."""

        async def scenario(store: Store) -> None:
            session = await store.create_session("/w", "s")
            await store.add_message(session.id, said("kept", 1))
            before = await store.get_session(session.id, True)
            harness.clock.advance(10)
            for bad in MALFORMED:
                with pytest.raises(InvalidArgument):
                    await store.add_message(session.id, bad)
                with pytest.raises(InvalidArgument):
                    await store.add_message("missing", bad)
                with pytest.raises(InvalidArgument):
                    await store.replace_conversation(session.id, [said("ok"), bad])
            assert_exact(await store.get_session(session.id, True), before)

        harness.with_store(scenario)

    @requirement("SS-9", "SS-14")
    def test_replace_conversation_replaces_it_whole(self, harness: H) -> None:
        """SS-9, SS-14: the new list replaces the old (also with []), updated_at becomes now,
        later appends go after the new messages."""

        async def scenario(store: Store) -> None:
            session = await store.create_session("/w", "s")
            await store.replace_conversation(session.id, [said(str(n), n) for n in range(5)])
            harness.clock.advance(50)
            await store.replace_conversation(session.id, [said("only", 9)])
            await store.add_message(session.id, said("after", 10))
            got = await store.get_session(session.id, True)
            assert_exact(got.conversation, (said("only", 9), said("after", 10)))
            assert got.message_count == 2 and got.updated_at == session.created_at + 50
            await store.replace_conversation(session.id, [])
            got = await store.get_session(session.id, True)
            assert got.conversation == () and got.message_count == 0

        harness.with_store(scenario)

    @requirement("SS-10", "SS-14")
    def test_truncate_is_inclusive_at_the_boundary(self, harness: H) -> None:
        """SS-10, SS-14: messages created at or after the timestamp go (the one exactly at it
        too), those before it and those without created_at stay, in their order; updated_at
        becomes now, even when nothing was removed."""
        conversation = [
            said("t9", 9),
            said("t10", 10),
            said("undated"),
            said("t11", 11),
            said("t10 again", 10),
            said("t0", 0),
        ]

        async def scenario(store: Store) -> None:
            session = await store.create_session("/w", "s")
            await store.replace_conversation(session.id, conversation)
            harness.clock.advance(5)
            await store.truncate_conversation(session.id, 10)
            got = await store.get_session(session.id, True)
            assert_exact(got.conversation, (said("t9", 9), said("undated"), said("t0", 0)))
            assert got.message_count == 3 and got.updated_at == session.created_at + 5
            harness.clock.advance(5)
            await store.truncate_conversation(session.id, 10)  # removes nothing
            got = await store.get_session(session.id, True)
            assert got.message_count == 3 and got.updated_at == session.created_at + 10
            await store.truncate_conversation(session.id, 1)
            got = await store.get_session(session.id, True)
            assert_exact(got.conversation, (said("undated"), said("t0", 0)))
            await store.truncate_conversation(session.id, 0)
            assert_exact(
                (await store.get_session(session.id, True)).conversation, (said("undated"),)
            )

        harness.with_store(scenario)

    @requirement("SS-11")
    def test_update_session_name_sets_name_and_user_set(self, harness: H) -> None:
        """SS-11: name and user_set_name as given (also back to False, also an empty name)."""

        async def scenario(store: Store) -> None:
            session = await store.create_session("/w", "auto")
            await store.update_session_name(session.id, "Mine ✓", True)
            got = await store.get_session(session.id)
            assert (got.name, got.user_set_name) == ("Mine ✓", True)
            await store.update_session_name(session.id, "", False)
            got = await store.get_session(session.id)
            assert (got.name, got.user_set_name) == ("", False)

        harness.with_store(scenario)

    @requirement("SS-11", "G-4")
    def test_update_extension_data_replaces_it_whole(self, harness: H) -> None:
        """SS-11, G-4: the new data replaces the old (no merge) and round-trips exactly."""
        rich = {**rich_json_object(), "other.v1": [1, 1.0, True]}

        async def scenario(store: Store) -> None:
            session = await store.create_session("/w", "s")
            await store.update_extension_data(session.id, {"a": 1, "b": 2})
            await store.update_extension_data(session.id, rich)
            assert_exact((await store.get_session(session.id)).extension_data, rich)
            await store.update_extension_data(session.id, {})
            assert (await store.get_session(session.id)).extension_data == {}

        harness.with_store(scenario)

    @requirement("SS-12")
    def test_token_stats_set_given_fields_and_keep_the_others(self, harness: H) -> None:
        """SS-12: each field of the update that is not None is set; None fields keep their
        value (they never reset to None)."""

        async def scenario(store: Store) -> None:
            session = await store.create_session("/w", "s")
            await store.update_token_stats(
                session.id,
                TokenStatsUpdate(
                    schedule_id="sched",
                    total_tokens=1,
                    input_tokens=2,
                    output_tokens=3,
                    accumulated_total_tokens=4,
                    accumulated_input_tokens=5,
                    accumulated_output_tokens=6,
                ),
            )
            await store.update_token_stats(
                session.id, TokenStatsUpdate(total_tokens=10, accumulated_output_tokens=0)
            )
            await store.update_token_stats(session.id, TokenStatsUpdate())
            got = await store.get_session(session.id)
            counters = (
                got.schedule_id,
                got.total_tokens,
                got.input_tokens,
                got.output_tokens,
                got.accumulated_total_tokens,
                got.accumulated_input_tokens,
                got.accumulated_output_tokens,
            )
            assert counters == ("sched", 10, 2, 3, 4, 5, 0)
            fresh = await store.create_session("/w", "t")
            await store.update_token_stats(fresh.id, TokenStatsUpdate(input_tokens=7))
            got = await store.get_session(fresh.id)
            assert (got.total_tokens, got.input_tokens, got.schedule_id) == (None, 7, None)

        harness.with_store(scenario)

    @requirement("SS-13")
    def test_provider_and_recipe_updates_leave_none_fields_alone(self, harness: H) -> None:
        """SS-13: each argument that is not None is set; a None argument keeps the field."""

        async def scenario(store: Store) -> None:
            session = await store.create_session("/w", "s")
            await store.update_provider_config(session.id, "openai", {"model": "x", "t": 0.5})
            await store.update_provider_config(session.id, None, {"model": "y"})
            await store.update_provider_config(session.id, "anthropic", None)
            await store.update_provider_config(session.id, None, None)
            await store.update_recipe(session.id, {"title": "r1"}, {"k": "v"})
            await store.update_recipe(session.id, None, {"k2": "v2"})
            await store.update_recipe(session.id, {"title": "r2", "n": -0.0}, None)
            await store.update_recipe(session.id, None, None)
            got = await store.get_session(session.id)
            assert (got.provider_name, got.model_config) == ("anthropic", {"model": "y"})
            assert_exact(got.recipe, {"title": "r2", "n": -0.0})
            assert got.user_recipe_values == {"k2": "v2"}
            await store.update_recipe(session.id, {}, {})
            got = await store.get_session(session.id)
            assert (got.recipe, got.user_recipe_values) == ({}, {})

        harness.with_store(scenario)

    @requirement("SS-14")
    def test_every_change_stamps_updated_at_and_nothing_else_does(self, harness: H) -> None:
        """SS-14: each update (SS-8 .. SS-13) sets updated_at to now, even without effect;
        reads, listings, exports, searches and copying leave it alone; created_at never
        changes."""

        async def scenario(store: Store) -> None:
            session = await store.create_session("/w", "s", SessionType.HIDDEN)
            for name, call in _update_calls(store, session.id).items():
                now = harness.clock.advance(1000)
                await call()
                got = await store.get_session(session.id)
                assert got.updated_at == now, f"{name} did not set updated_at to now"
                assert got.created_at == session.created_at, f"{name} changed created_at"
            stamped = (await store.get_session(session.id)).updated_at
            harness.clock.advance(1000)
            await store.get_session(session.id, True)
            await store.list_sessions_by_types(list(ALL_TYPES))
            await store.list_sessions()
            await store.export_session(session.id)
            await store.search_chat_history("r")
            await store.get_insights()
            await store.copy_session(session.id, "copy")
            assert (await store.get_session(session.id)).updated_at == stamped

        harness.with_store(scenario)

    @requirement("SS-15", "G-10")
    def test_updates_of_a_missing_session_raise_not_found(self, harness: H) -> None:
        """SS-15, G-10: every update of a missing (or deleted) session raises NotFound and
        creates nothing."""

        async def scenario(store: Store) -> None:
            gone = await store.create_session("/w", "gone")
            await store.delete_session(gone.id)
            for missing in ("missing", gone.id):
                for name, call in _update_calls(store, missing).items():
                    with pytest.raises(NotFound):
                        await call()
                        pytest.fail(f"{name} of a missing session did not raise")
            assert await store.list_sessions_by_types(list(ALL_TYPES)) == []
            assert (await store.get_insights()).total_sessions == 0

        harness.with_store(scenario)

    @requirement("SS-15", "G-5")
    def test_invalid_update_arguments_write_nothing(self, harness: H) -> None:
        """SS-15, G-5: an argument outside its domain raises InvalidArgument (also when the
        session is missing, since arguments are checked first) and changes nothing."""

        async def scenario(store: Store) -> None:
            session = await store.create_session("/w", "s")
            await store.add_message(session.id, said("kept", 1))
            await store.update_token_stats(session.id, TokenStatsUpdate(total_tokens=1))
            before = await store_snapshot(store)
            harness.clock.advance(10)
            for target in (session.id, "missing"):
                for call in _invalid_update_calls(store, target):
                    with pytest.raises(InvalidArgument):
                        await call()
            assert_exact(await store_snapshot(store), before, "store after rejected updates")

        harness.with_store(scenario)
