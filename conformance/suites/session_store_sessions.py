"""Requirement tests of sessions: records, creation, ids, reading, listing, deleting, insights
(SS-1 .. SS-7, SS-16; G-4, G-6, G-7, G-9, G-10).

Readable examples, one behaviour each; the state machine in ``session_store_machine`` covers the
same rules with random operation sequences.
"""

from __future__ import annotations

from typing import Any

import pytest

from agentstores.spec.errors import InvalidArgument, NotFound
from agentstores.spec.messages import Message
from agentstores.spec.session_store import (
    Session,
    SessionInsights,
    SessionStore,
    TokenStatsUpdate,
)
from agentstores.spec.values import MAX_ID_LENGTH, MAX_U64, check_id

from ..harness import Harness
from ..markers import requirement
from .session_store_support import (
    ALL_TYPES,
    assert_exact,
    nested_lists,
    rich_json_object,
    said,
)

__all__ = ["SessionTests"]

Store = SessionStore
H = Harness[SessionStore]

USER, SCHEDULED, SUB_AGENT, HIDDEN, TERMINAL = ALL_TYPES


def _rich_fields() -> dict[str, Any]:
    """A value for every settable field, chosen so that only an exact store round-trips it."""
    return {
        "name": "Näme ✓ 👩‍💻 \t",
        "extension_data": {**rich_json_object(), "todo.v0": [1, 1.0, True, -0.0]},
        "schedule_id": "../sched:1",
        "total_tokens": MAX_U64,
        "input_tokens": 0,
        "output_tokens": 2**63,
        "accumulated_total_tokens": 2**63 - 1,
        "accumulated_input_tokens": 1,
        "accumulated_output_tokens": None,
        "recipe": {"title": "r", "steps": [{"n": 1.5}], "deep": nested_lists(60)},
        "user_recipe_values": {"k": "v", "é": "", "": "empty key"},
        "provider_name": "",
        "model_config": {"model": "m", "temperature": 0.0, "max": 2**70},
    }


async def _set_rich(store: Store, session_id: str, fields: dict[str, Any]) -> None:
    await store.update_session_name(session_id, fields["name"], True)
    await store.update_extension_data(session_id, fields["extension_data"])
    stats = {k: fields[k] for k in ("schedule_id", "total_tokens", "input_tokens")}
    stats |= {k: fields[k] for k in ("output_tokens", "accumulated_total_tokens")}
    stats |= {k: fields[k] for k in ("accumulated_input_tokens", "accumulated_output_tokens")}
    await store.update_token_stats(session_id, TokenStatsUpdate(**stats))
    await store.update_recipe(session_id, fields["recipe"], fields["user_recipe_values"])
    await store.update_provider_config(session_id, fields["provider_name"], fields["model_config"])


class SessionTests:
    """Creating, reading, listing, deleting sessions, and insights."""

    @requirement("SS-1", "SS-3", "G-6")
    def test_create_session_is_empty_and_stamped_by_the_clock(self, harness: H) -> None:
        """SS-1, SS-3, G-6: created_at = updated_at = the store's clock; no messages, empty
        extension data, every optional field None, user_set_name false; the type as given
        (user by default)."""

        async def scenario(store: Store) -> None:
            harness.clock.set(1_234_567)
            made = await store.create_session("/work/dir", "first")
            expected = Session(
                id=made.id,
                working_dir="/work/dir",
                name="first",
                created_at=1_234_567,
                updated_at=1_234_567,
                extension_data={},
            )
            assert_exact(made, expected, "create_session")
            assert_exact(await store.get_session(made.id), expected, "get_session")
            harness.clock.advance(5)
            hidden = await store.create_session("C:\\dir ✓", "", HIDDEN)
            assert (hidden.session_type, hidden.name, hidden.created_at) == (HIDDEN, "", 1_234_572)
            assert hidden.working_dir == "C:\\dir ✓"

        harness.with_store(scenario)

    @requirement("SS-4", "G-1")
    def test_session_ids_are_valid_and_distinct(self, harness: H) -> None:
        """SS-4, G-1: every created, copied and imported session gets a fresh id in the id
        domain, on one day and across days."""

        async def scenario(store: Store) -> None:
            made = [await store.create_session("/w", str(n)) for n in range(12)]
            harness.clock.advance(86_400_000)
            made.append(await store.create_session("/w", "next day"))
            made.append(await store.copy_session(made[0].id, "copy"))
            made.append(await store.import_session(await store.export_session(made[1].id)))
            ids = [s.id for s in made]
            for session_id in ids:
                check_id(session_id)
            assert len(set(ids)) == len(ids), f"ids repeat: {ids}"

        harness.with_store(scenario)

    @requirement("SS-4")
    def test_ids_of_deleted_sessions_are_never_reused(self, harness: H) -> None:
        """SS-4: deleting sessions (the newest included) never frees their ids, whether the
        next session is created, copied or imported."""

        async def scenario(store: Store) -> None:
            keep = await store.create_session("/w", "keep")
            issued = {keep.id}
            for round_ in range(3):
                doomed = [await store.create_session("/w", f"d{round_}{n}") for n in range(3)]
                issued |= {s.id for s in doomed}
                for session in reversed(doomed):
                    await store.delete_session(session.id)
                fresh = [
                    await store.create_session("/w", "new"),
                    await store.copy_session(keep.id, "copy"),
                    await store.import_session(await store.export_session(keep.id)),
                ]
                for session in fresh:
                    assert session.id not in issued, f"id {session.id!r} was used before"
                    issued.add(session.id)

        harness.with_store(scenario)

    @requirement("SS-5", "G-10")
    def test_get_session_with_and_without_messages(self, harness: H) -> None:
        """SS-5, G-10: conversation is None unless asked for; message_count is right either
        way; a missing session raises NotFound (also a KeyError)."""
        messages = [said("one", 1), said("two", None, role="assistant")]

        async def scenario(store: Store) -> None:
            session = await store.create_session("/w", "s")
            for message in messages:
                await store.add_message(session.id, message)
            bare = await store.get_session(session.id)
            assert bare.conversation is None and bare.message_count == 2
            full = await store.get_session(session.id, include_messages=True)
            assert_exact(full.conversation, tuple(messages), "conversation")
            assert full.message_count == 2
            empty = await store.create_session("/w", "empty")
            got = await store.get_session(empty.id, True)
            assert got.conversation == () and got.message_count == 0
            for missing in ("missing", session.id + "x", session.id.upper() + "_"):
                with pytest.raises(NotFound) as raised:
                    await store.get_session(missing, True)
                assert isinstance(raised.value, KeyError)

        harness.with_store(scenario)

    @requirement("SS-1", "SS-2", "G-4")
    def test_every_field_round_trips_exactly(self, harness: H) -> None:
        """SS-1, SS-2, G-4: every field comes back exactly (u64 extremes, big integers, -0.0,
        1 vs 1.0 vs True, Unicode, deep nesting), from get_session and from the listings."""
        fields = _rich_fields()

        async def scenario(store: Store) -> None:
            session = await store.create_session("/ẃork/ディレクトリ", "x", SCHEDULED)
            harness.clock.advance(7)
            await _set_rich(store, session.id, fields)
            expected = Session(
                id=session.id,
                working_dir="/ẃork/ディレクトリ",
                created_at=session.created_at,
                updated_at=session.created_at + 7,
                session_type=SCHEDULED,
                user_set_name=True,
                **fields,
            )
            assert_exact(await store.get_session(session.id), expected, "get_session")
            (listed,) = await store.list_sessions()
            assert_exact(listed, expected, "list_sessions")

        harness.with_store(scenario)

    @requirement("SS-2", "SS-3", "G-5")
    def test_invalid_create_arguments_are_rejected(self, harness: H) -> None:
        """SS-2, SS-3, G-5: an empty working_dir, NUL, lone surrogates, non-str values and a
        plain "user" instead of SessionType.USER raise InvalidArgument; nothing is created."""
        bad: list[tuple[Any, Any, Any]] = [
            ("", "name", USER),
            ("/w\x00", "name", USER),
            ("/w", "na\x00me", USER),
            ("/w\ud800", "name", USER),
            ("/w", "\udc80", USER),
            (None, "name", USER),
            ("/w", None, USER),
            ("/w", 5, USER),
            ("/w", "name", "user"),
            ("/w", "name", None),
            ("/w", "name", 0),
        ]

        async def scenario(store: Store) -> None:
            for working_dir, name, session_type in bad:
                with pytest.raises(InvalidArgument):
                    await store.create_session(working_dir, name, session_type)
            assert await store.list_sessions_by_types(list(ALL_TYPES)) == []
            assert await store.get_insights() == SessionInsights(0, 0)

        harness.with_store(scenario)

    @requirement("SS-6")
    def test_list_sessions_returns_user_and_scheduled_sessions(self, harness: H) -> None:
        """SS-6: list_sessions() is the user and scheduled sessions only."""

        async def scenario(store: Store) -> None:
            made = {t: await store.create_session("/w", t.value, t) for t in ALL_TYPES}
            listed = {s.id for s in await store.list_sessions()}
            assert listed == {made[USER].id, made[SCHEDULED].id}

        harness.with_store(scenario)

    @requirement("SS-6", "G-9")
    def test_listings_order_by_updated_at_then_id(self, harness: H) -> None:
        """SS-6, G-9: most recently updated first (not created first, not insertion order);
        equal updated_at by id ascending."""

        async def scenario(store: Store) -> None:
            first = await store.create_session("/w", "first")
            harness.clock.advance(10)
            second = await store.create_session("/w", "second")
            third = await store.create_session("/w", "third")  # same time as second
            harness.clock.advance(10)
            listed = [s.id for s in await store.list_sessions()]
            tied = sorted([second.id, third.id])
            assert listed == [*tied, first.id]
            await store.add_message(first.id, said("bump"))
            listed = [s.id for s in await store.list_sessions()]
            assert listed == [first.id, *tied], "an update must move a session to the front"
            harness.clock.advance(10)
            await store.update_session_name(tied[1], "renamed", True)
            listed = [s.id for s in await store.list_sessions_by_types([USER])]
            assert listed == [tied[1], first.id, tied[0]]

        harness.with_store(scenario)

    @requirement("SS-6")
    def test_listings_include_empty_sessions_without_conversation(self, harness: H) -> None:
        """SS-6: sessions without messages are listed; listed sessions carry conversation None
        and the right message_count."""

        async def scenario(store: Store) -> None:
            empty = await store.create_session("/w", "empty")
            busy = await store.create_session("/w", "busy")
            await store.replace_conversation(busy.id, [said("a"), said("b"), said("c")])
            listed = {s.id: s for s in await store.list_sessions()}
            assert set(listed) == {empty.id, busy.id}
            assert listed[empty.id].message_count == 0
            assert listed[busy.id].message_count == 3
            assert all(s.conversation is None for s in listed.values())

        harness.with_store(scenario)

    @requirement("SS-6", "G-10")
    def test_list_sessions_by_types_selects_exactly_the_types(self, harness: H) -> None:
        """SS-6, G-10: exactly the given types; [] for no types; repeats change nothing; a str,
        plain strings or other values raise InvalidArgument."""

        async def scenario(store: Store) -> None:
            made = {t: await store.create_session("/w", t.value, t) for t in ALL_TYPES}
            for wanted in ([SUB_AGENT], [HIDDEN, TERMINAL], [TERMINAL, TERMINAL, HIDDEN]):
                got = {s.id for s in await store.list_sessions_by_types(wanted)}
                assert got == {made[t].id for t in wanted}, wanted
            assert await store.list_sessions_by_types([]) == []
            assert len(await store.list_sessions_by_types(list(ALL_TYPES))) == len(ALL_TYPES)
            bad_types: list[Any] = ["user", ["user"], [USER, "hidden"], None, [None], USER]
            for bad in bad_types:
                with pytest.raises(InvalidArgument):
                    await store.list_sessions_by_types(bad)

        harness.with_store(scenario)

    @requirement("SS-7")
    def test_delete_removes_the_session_and_its_messages(self, harness: H) -> None:
        """SS-7: the session and every message of it are gone (get, listings, search,
        insights); other sessions keep theirs."""

        async def scenario(store: Store) -> None:
            doomed = await store.create_session("/w", "doomed")
            other = await store.create_session("/w", "other")
            await store.replace_conversation(doomed.id, [said("needle one", 1), said("x", 2)])
            await store.add_message(doomed.id, said("needle two", 3))
            await store.add_message(other.id, said("needle kept", 4))
            await store.update_token_stats(doomed.id, TokenStatsUpdate(total_tokens=50))
            await store.delete_session(doomed.id)
            with pytest.raises(NotFound):
                await store.get_session(doomed.id, True)
            assert [s.id for s in await store.list_sessions_by_types(list(ALL_TYPES))] == [other.id]
            hits = await store.search_chat_history("needle", limit=100)
            assert [(h.session_id, h.message_content) for h in hits] == [(other.id, "needle kept")]
            assert await store.get_insights() == SessionInsights(1, 0)
            assert (await store.get_session(other.id, True)).message_count == 1

        harness.with_store(scenario)

    @requirement("SS-7", "G-10")
    def test_deleting_a_missing_session_raises_not_found(self, harness: H) -> None:
        """SS-7, G-10: NotFound for a session that never existed or is already deleted; nothing
        else changes."""

        async def scenario(store: Store) -> None:
            kept = await store.create_session("/w", "kept")
            gone = await store.create_session("/w", "gone")
            await store.delete_session(gone.id)
            for missing in ("missing", gone.id, kept.id + " ", "*"):
                with pytest.raises(NotFound):
                    await store.delete_session(missing)
            assert [s.id for s in await store.list_sessions()] == [kept.id]

        harness.with_store(scenario)

    @requirement("SS-16")
    def test_insights_count_every_session_and_sum_tokens(self, harness: H) -> None:
        """SS-16: every type counts; the sum takes accumulated_total_tokens, else total_tokens,
        else 0, and may exceed 64 bits."""
        stats = [
            TokenStatsUpdate(total_tokens=5, accumulated_total_tokens=100),
            TokenStatsUpdate(total_tokens=7),
            TokenStatsUpdate(input_tokens=1000, accumulated_input_tokens=1000),
            TokenStatsUpdate(accumulated_total_tokens=MAX_U64),
            TokenStatsUpdate(accumulated_total_tokens=MAX_U64, total_tokens=1),
        ]

        async def scenario(store: Store) -> None:
            assert await store.get_insights() == SessionInsights(0, 0)
            for update, session_type in zip(stats, ALL_TYPES, strict=True):
                session = await store.create_session("/w", "s", session_type)
                await store.update_token_stats(session.id, update)
            expected = SessionInsights(total_sessions=5, total_tokens=100 + 7 + 2 * MAX_U64)
            assert_exact(await store.get_insights(), expected, "get_insights")

        harness.with_store(scenario)

    @requirement("G-7", "SS-2")
    def test_returned_records_belong_to_the_caller(self, harness: H) -> None:
        """G-7, SS-2: changing the dicts and messages of a returned session changes nothing
        stored; neither does changing an argument after the call."""
        extension: dict[str, Any] = {"k": [1]}
        part: dict[str, Any] = {"type": "text", "text": "hi"}

        async def scenario(store: Store) -> None:
            session = await store.create_session("/w", "s")
            await store.update_extension_data(session.id, extension)
            await store.add_message(session.id, said("keep", 1, metadata={"m": [1]}))
            await store.replace_conversation(
                session.id, [said("keep", 1, metadata={"m": [1]}), Message("user", (part,))]
            )
            extension["k"].append(2)
            part["text"] = "changed"
            got = await store.get_session(session.id, True)
            got.extension_data["k"].append(3)
            assert got.conversation is not None
            got.conversation[0].metadata["m"].append(2)
            got.conversation[1].content[0]["text"] = "scribbled"
            (listed,) = await store.list_sessions()
            listed.extension_data["new"] = 1  # type: ignore[index]
            again = await store.get_session(session.id, True)
            assert again.extension_data == {"k": [1]}
            assert again.conversation is not None
            assert again.conversation[0].metadata == {"m": [1]}
            assert again.conversation[1].content[0]["text"] == "hi"

        harness.with_store(scenario)

    @requirement("G-1", "G-3", "SS-15")
    def test_longest_and_over_long_session_ids(self, harness: H) -> None:
        """G-1, G-3, SS-15: a 256-code-point id is a valid (missing) id, one longer is
        InvalidArgument in every read."""

        async def scenario(store: Store) -> None:
            with pytest.raises(NotFound):
                await store.get_session("é" * MAX_ID_LENGTH)
            for bad in ("x" * (MAX_ID_LENGTH + 1), "", "a\x00"):
                with pytest.raises(InvalidArgument):
                    await store.get_session(bad)
                with pytest.raises(InvalidArgument):
                    await store.export_session(bad)

        harness.with_store(scenario)
