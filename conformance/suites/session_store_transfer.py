"""Requirement tests of export, import and copy (SS-17 .. SS-19; G-4, G-15).

The export format is checked against a document written out here by hand from the spec, so a
store cannot pass by merely agreeing with its own export.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from agentstores.spec.errors import InvalidArgument, NotFound
from agentstores.spec.messages import Message, message_to_json
from agentstores.spec.session_store import (
    EXPORT_FORMAT,
    EXPORT_VERSION,
    Session,
    SessionStore,
    SessionType,
    TokenStatsUpdate,
)
from agentstores.spec.values import MAX_U64, dump_json

from ..harness import Harness
from ..markers import requirement
from .session_store_support import (
    ALL_TYPES,
    assert_exact,
    canonical,
    parsed,
    rich_json_object,
    said,
    store_snapshot,
)

__all__ = ["TransferTests"]

Store = SessionStore
H = Harness[SessionStore]

#: SS-17's keys of the ``session`` object, as the spec lists them.
SESSION_KEYS = (
    "id",
    "working_dir",
    "name",
    "session_type",
    "user_set_name",
    "created_at",
    "updated_at",
    "extension_data",
    "total_tokens",
    "input_tokens",
    "output_tokens",
    "accumulated_total_tokens",
    "accumulated_input_tokens",
    "accumulated_output_tokens",
    "schedule_id",
    "recipe",
    "user_recipe_values",
    "provider_name",
    "model_config",
)

CONVERSATION = (
    said("hello", 5),
    Message(
        role="assistant",
        content=(
            {"type": "text", "text": "hi ✓"},
            {"type": "tool_request", "id": "t1", "args": {"n": 2**64, "f": -0.0}},
        ),
        created_at=None,
        id="m-2",
        metadata={"user_visible": False},
    ),
)


def _document_session(**overrides: Any) -> dict[str, Any]:
    """The ``session`` object of a valid hand-written document."""
    session: dict[str, Any] = {
        "id": "20240101_7",
        "working_dir": "/from/elsewhere",
        "name": "imported ✓",
        "session_type": "scheduled",
        "user_set_name": True,
        "created_at": 1,
        "updated_at": 2,
        "extension_data": {"todo.v0": {"items": [1, 1.0, True, -0.0, 2**70]}},
        "total_tokens": 10,
        "input_tokens": None,
        "output_tokens": MAX_U64,
        "accumulated_total_tokens": 30,
        "accumulated_input_tokens": 0,
        "accumulated_output_tokens": None,
        "schedule_id": "nightly",
        "recipe": {"title": "r", "deep": {"a": [{}]}},
        "user_recipe_values": {"k": "v"},
        "provider_name": "prov",
        "model_config": {"model": "m", "temperature": 0.25},
    }
    session.update(overrides)
    return session


def _document(**overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "session": _document_session(),
        "conversation": [message_to_json(m) for m in CONVERSATION],
    }
    document.update(overrides)
    return document


def _malformed_documents() -> list[Any]:
    """Documents SS-18 rejects, one fault each."""
    good = _document()
    session = _document_session()
    without_name = {k: v for k, v in session.items() if k != "name"}
    bad_message = {**message_to_json(said("x")), "role": ""}
    text = dump_json(good)
    return [
        "",
        "not json",
        text[:-1],
        text + "x",
        "[]",
        "null",
        dump_json({**good, "format": "goose.session"}),
        dump_json({**good, "version": 2}),
        dump_json({**good, "version": 1.0}),
        dump_json({**good, "version": True}),
        dump_json({**good, "version": "1"}),
        dump_json({k: v for k, v in good.items() if k != "version"}),
        dump_json({k: v for k, v in good.items() if k != "conversation"}),
        dump_json({**good, "extra": 1}),
        dump_json({**good, "session": without_name}),
        dump_json({**good, "session": {**session, "unknown_field": 1}}),
        dump_json({**good, "session": {**session, "session_type": "admin"}}),
        dump_json({**good, "session": {**session, "session_type": None}}),
        dump_json({**good, "session": {**session, "working_dir": ""}}),
        dump_json({**good, "session": {**session, "name": 5}}),
        dump_json({**good, "session": {**session, "name": "a\x00"}}),
        dump_json({**good, "session": {**session, "user_set_name": "yes"}}),
        dump_json({**good, "session": {**session, "total_tokens": -1}}),
        dump_json({**good, "session": {**session, "total_tokens": 2**64}}),
        dump_json({**good, "session": {**session, "input_tokens": 1.0}}),
        dump_json({**good, "session": {**session, "extension_data": []}}),
        dump_json({**good, "session": {**session, "recipe": "r"}}),
        dump_json({**good, "session": {**session, "user_recipe_values": {"k": 1}}}),
        dump_json({**good, "session": {**session, "model_config": [1]}}),
        dump_json({**good, "session": {**session, "schedule_id": ""}}),
        dump_json({**good, "session": {**session, "id": ""}}),
        dump_json({**good, "session": {**session, "created_at": -5}}),
        dump_json({**good, "session": {**session, "updated_at": "2"}}),
        dump_json({**good, "session": []}),
        dump_json({**good, "conversation": {}}),
        dump_json({**good, "conversation": [bad_message]}),
        dump_json({**good, "conversation": [{**message_to_json(said("x")), "extra": 1}]}),
        text.replace('"temperature":0.25', '"temperature":NaN'),
        text.replace('"temperature":0.25', '"temperature":Infinity'),
        '{"format": "agentstores.session", "version": 1, "session": ' + "[" * 5000,
        5,
        None,
        text.encode(),
    ]


class TransferTests:
    """Export documents, import, copy."""

    @requirement("SS-17", "G-15")
    def test_export_writes_the_documented_format(self, harness: H) -> None:
        """SS-17, G-15: format, version, the session object with exactly the listed keys and
        its values, and the conversation in order in the JSON form of messages."""

        async def scenario(store: Store) -> None:
            harness.clock.set(1_000)
            session = await store.create_session("/w", "exported", SessionType.SUB_AGENT)
            harness.clock.set(2_000)
            await store.update_token_stats(
                session.id, TokenStatsUpdate(schedule_id="s", total_tokens=2**64 - 1)
            )
            await store.update_extension_data(session.id, {**rich_json_object(), "x": 1})
            await store.replace_conversation(session.id, list(CONVERSATION))
            document = await store.export_session(session.id)
            assert isinstance(document, str)
            data = parsed(document)
            assert set(data) == {"format", "version", "session", "conversation"}
            assert (data["format"], data["version"]) == ("agentstores.session", 1)
            assert set(data["session"]) == set(SESSION_KEYS)
            expected_session = {
                **dict.fromkeys(SESSION_KEYS),
                "id": session.id,
                "working_dir": "/w",
                "name": "exported",
                "session_type": "sub_agent",
                "user_set_name": False,
                "created_at": 1_000,
                "updated_at": 2_000,
                "extension_data": {**rich_json_object(), "x": 1},
                "schedule_id": "s",
                "total_tokens": 2**64 - 1,
            }
            assert_exact(data["session"], expected_session, "exported session")
            assert_exact(
                data["conversation"], [message_to_json(m) for m in CONVERSATION], "conversation"
            )

        harness.with_store(scenario)

    @requirement("SS-17")
    def test_export_of_a_missing_session_raises_not_found(self, harness: H) -> None:
        """SS-17: NotFound."""

        async def scenario(store: Store) -> None:
            with pytest.raises(NotFound):
                await store.export_session("missing")

        harness.with_store(scenario)

    @requirement("SS-18", "SS-4")
    def test_import_creates_a_new_session_with_the_document_content(self, harness: H) -> None:
        """SS-18, SS-4: a hand-written document imports as a new session: a fresh id, created
        and updated now, every other field and the whole conversation as in the document.
        Importing it again makes another session."""
        document = dump_json(_document())

        async def scenario(store: Store) -> None:
            harness.clock.set(9_000)
            first = await store.import_session(document)
            second = await store.import_session(document)
            assert first.id != second.id and "20240101_7" not in (first.id, second.id)
            fields = {**_document_session()}
            for key in ("id", "created_at", "updated_at"):
                fields.pop(key)
            fields["session_type"] = SessionType.SCHEDULED
            expected = Session(
                id=first.id, created_at=9_000, updated_at=9_000, message_count=2, **fields
            )
            assert_exact(first, expected, "import_session")
            got = await store.get_session(first.id, True)
            assert_exact(got, replace(expected, conversation=CONVERSATION), "imported session")
            assert len(await store.list_sessions()) == 2

        harness.with_store(scenario)

    @requirement("SS-17", "SS-18", "G-4")
    def test_export_then_import_keeps_the_content(self, harness: H) -> None:
        """SS-17, SS-18, G-4: importing a store's own export gives the same session apart from
        id and times, exactly; the source is unchanged."""

        async def scenario(store: Store) -> None:
            source = await store.create_session("/w ✓", "src", SessionType.TERMINAL)
            await store.update_recipe(source.id, {**rich_json_object(), "r": 1}, {"a": "b"})
            await store.update_provider_config(source.id, "p", {"m": -0.0})
            await store.update_token_stats(source.id, TokenStatsUpdate(accumulated_total_tokens=3))
            await store.update_session_name(source.id, "named", True)
            await store.replace_conversation(source.id, list(CONVERSATION))
            before = await store.get_session(source.id, True)
            harness.clock.advance(500)
            copy = await store.import_session(await store.export_session(source.id))
            got = await store.get_session(copy.id, True)
            now = harness.clock()
            expected = replace(before, id=copy.id, created_at=now, updated_at=now)
            assert_exact(got, expected, "re-imported session")
            assert_exact(await store.get_session(source.id, True), before, "source")

        harness.with_store(scenario)

    @requirement("SS-18", "G-10")
    def test_malformed_documents_create_nothing(self, harness: H) -> None:
        """SS-18, G-10: invalid JSON, NaN, another format or version, missing, unknown or
        ill-typed fields and malformed messages raise InvalidArgument; nothing is created."""

        async def scenario(store: Store) -> None:
            kept = await store.create_session("/w", "kept")
            before = await store_snapshot(store)
            for number, bad in enumerate(_malformed_documents()):
                with pytest.raises(InvalidArgument):
                    await store.import_session(bad)
                    pytest.fail(f"malformed document #{number} was imported")
            assert_exact(await store_snapshot(store), before, "store after rejected imports")
            fresh = await store.create_session("/w", "after")
            assert fresh.id != kept.id

        harness.with_store(scenario)

    @requirement("SS-19", "SS-4")
    def test_copy_carries_what_the_spec_lists_and_no_more(self, harness: H) -> None:
        """SS-19, SS-4: a new id, the new name with user_set_name true, now as both times;
        working_dir, type, extension data, schedule, recipe, recipe values and conversation
        carried; token counters, provider and model config None; the source unchanged."""

        async def scenario(store: Store) -> None:
            source = await store.create_session("/src", "src", SessionType.SCHEDULED)
            await store.update_extension_data(source.id, {"todo": [1, -0.0]})
            await store.update_token_stats(
                source.id,
                TokenStatsUpdate(
                    schedule_id="nightly",
                    total_tokens=1,
                    input_tokens=2,
                    output_tokens=3,
                    accumulated_total_tokens=4,
                    accumulated_input_tokens=5,
                    accumulated_output_tokens=6,
                ),
            )
            await store.update_recipe(source.id, {"title": "r"}, {"k": "v"})
            await store.update_provider_config(source.id, "prov", {"model": "m"})
            await store.replace_conversation(source.id, list(CONVERSATION))
            before = await store.get_session(source.id, True)
            harness.clock.advance(1_000)
            copied = await store.copy_session(source.id, "the copy")
            now = harness.clock()
            expected = Session(
                id=copied.id,
                working_dir="/src",
                name="the copy",
                created_at=now,
                updated_at=now,
                session_type=SessionType.SCHEDULED,
                user_set_name=True,
                extension_data={"todo": [1, -0.0]},
                schedule_id="nightly",
                recipe={"title": "r"},
                user_recipe_values={"k": "v"},
                message_count=2,
            )
            assert copied.id != source.id
            assert_exact(copied, expected, "copy_session")
            full = replace(expected, conversation=CONVERSATION)
            assert_exact(await store.get_session(copied.id, True), full, "copied session")
            assert_exact(await store.get_session(source.id, True), before, "source")
            await store.add_message(copied.id, said("only in the copy"))
            assert (await store.get_session(source.id)).message_count == 2

        harness.with_store(scenario)

    @requirement("SS-19")
    def test_copy_of_a_missing_session_raises_not_found(self, harness: H) -> None:
        """SS-19: NotFound, nothing created; a bad new name is InvalidArgument first."""

        async def scenario(store: Store) -> None:
            source = await store.create_session("/w", "s")
            with pytest.raises(NotFound):
                await store.copy_session("missing", "copy")
            for bad in ("a\x00", None, 5):
                with pytest.raises(InvalidArgument):
                    await store.copy_session(source.id, bad)  # type: ignore[arg-type]
                with pytest.raises(InvalidArgument):
                    await store.copy_session("missing", bad)  # type: ignore[arg-type]
            assert [s.id for s in await store.list_sessions_by_types(list(ALL_TYPES))] == [
                source.id
            ]

        harness.with_store(scenario)

    @requirement("SS-17", "SS-18")
    def test_export_text_is_plain_json(self, harness: H) -> None:
        """SS-17, SS-18: the document is strict JSON (no NaN or Infinity literals) that a
        strict parser reads to the same values."""

        async def scenario(store: Store) -> None:
            session = await store.create_session("/w", "s")
            await store.update_extension_data(session.id, {"f": 1e308, "g": -0.0, "big": 2**80})
            document = await store.export_session(session.id)

            def refuse(name: str) -> Any:
                raise AssertionError(f"{name} in an export")

            strict = json.loads(document, parse_constant=refuse)
            assert canonical(strict) == canonical(parsed(document))

        harness.with_store(scenario)
