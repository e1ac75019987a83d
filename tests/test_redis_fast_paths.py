"""The Redis references' fast paths give what the slow ones they replace give.

* ``_events.checked_event`` (reference/_events.py, shared with SQLite) makes
  ``rules.check_event``'s checks with the same errors, and the stored text decodes to the
  event ``rules.stored_event`` describes; the stored text shares no container with the
  caller's event (G-7). (tests/test_sqlite_events.py holds the codec to the rules with
  hypothesis.)
* The read scripts return what they read as one framed text: what a store reads from it is
  what was written, for stored texts of any content, with a client that decodes responses or
  not, for data an earlier version stored (the full event form), and damaged stored data is
  StorageUnavailable (G-11).
* ``_records.assemble`` and ``revise`` build records equal to the constructor's and
  ``dataclasses.replace``'s.
* The connections of a client made from a URL pack commands byte for byte as redis-py does.
* An append whose generated event id is taken chooses another (the retry path).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from agentstores.reference import _events
from agentstores.reference import session_service_rules as rules
from agentstores.reference._records import build, revise
from agentstores.reference.redis import server
from agentstores.reference.redis import session_service as redis_service
from agentstores.reference.redis._client import _store_connection_class
from agentstores.spec.errors import InvalidArgument
from agentstores.spec.memory_storage import ConversationMessage
from agentstores.spec.messages import Message
from agentstores.spec.session_service import (
    CreateRequest,
    Event,
    EventActions,
    GetRequest,
    Session,
)
from agentstores.spec.values import dump_json

from .conftest import require_redis


def _message(**changes: Any) -> Message:
    return dataclasses.replace(Message.text("user", "hello", created_at=5), **changes)


#: Events the fast check must accept as rules.check_event does.
VALID: list[Event] = [
    Event(author="user"),
    Event(author="user", content=_message()),
    Event(
        author="agent",
        id="e1",
        timestamp=7,
        invocation_id="i",
        agent_id="a",
        branch="root.child",
        content=_message(
            content=({"type": "text", "text": "x"}, {"type": "data", "items": [1, {"k": None}]}),
            id="m1",
            metadata={"tags": ["a"], "n": 2**70, "f": -0.0},
        ),
        reasoning="because",
        actions=EventActions(
            state_delta={"k": [1], "user:u": {"x": 1}, "app:a": 2, "temp:t": "x"},
            artifact_delta={"file": 3},
            skip_summarization=True,
            transfer_to_agent="other",
            escalate=True,
            custom_actions={"c": {"d": [1.5]}},
        ),
        long_running_tool_ids=("t1", "t2"),
        metadata={"m": "é", "nested": {"a": [True]}},
    ),
    Event(author="user", metadata=dict.fromkeys(["a", "b"], 1)),
    Event(author="user", content=Message.text("user", "grüße ✓", id="m", metadata={"x": 1.5})),
    Event(author="user", content=Message("tool", [{"type": "json", "n": 2**4096 - 1}])),  # type: ignore[arg-type]
]

#: Events the fast check must refuse with rules.check_event's error.
INVALID: list[object] = [
    "not an event",
    Event(author="user", content="not a message"),  # type: ignore[arg-type]
    Event(author="user", content=_message(content="not parts")),
    Event(author=""),
    Event(author="user", id=""),
    Event(author="user", timestamp=-1),
    Event(author="user", content=_message(role="")),
    Event(author="user", content=_message(content=({"text": "no type"},))),
    Event(author="user", content=_message(metadata={"x": float("nan")})),
    Event(author="user", content=_message(metadata={"x": "\ud800"})),
    Event(author="user", reasoning=3),  # type: ignore[arg-type]
    Event(author="user", actions=EventActions(state_delta={"temp:": 1})),
    Event(author="user", actions=EventActions(artifact_delta={"f": -1})),
    Event(author="user", actions=EventActions(custom_actions={1: 2})),  # type: ignore[dict-item]
    Event(author="user", long_running_tool_ids="t1"),  # type: ignore[arg-type]
    Event(author="user", metadata={"deep": (1, 2)}),
    Event(author="user\x00"),
    Event(author="user", content=_message(id="a\x00b")),
    Event(author="user", content=_message(id="x" * 257)),
    Event(author="user", content=_message(created_at=True)),
    Event(author="user", content=_message(created_at=2**63)),
    Event(author="user", content=_message(role=1)),
    Event(author="user", content=_message(content=({"type": "text", "text": 1},))),
    Event(author="user", content=_message(content=({"type": "data", "n": 2**4096},))),
    Event(author="user", content=_message(content=({"type": "data", 1: "x"},))),
    Event(author="user", content=_message(content=({"type": ""},))),
    Event(author="user", content=_message(content=[{"type": "x", "\udc00": 1}])),
    Event(author="user", content=_message(metadata={"a": float("inf")})),
]


@pytest.mark.parametrize("event", VALID)
def test_checked_event_accepts_what_check_event_accepts(event: Event) -> None:
    # The checked event keeps the caller's containers (a list of parts stays a list): what
    # must equal the rules' copy is the event stored from it.
    checked = _events.checked_event(event)
    body = _events.encode_stored(checked, event_id="e", now=1)
    assert _events.decode_stored(body) == rules.stored_event(
        rules.check_event(event), event_id="e", now=1
    )


@pytest.mark.parametrize("event", INVALID)
def test_checked_event_refuses_as_check_event(event: object) -> None:
    with pytest.raises(InvalidArgument) as expected:
        rules.check_event(event)
    with pytest.raises(InvalidArgument) as got:
        _events.checked_event(event)
    assert str(got.value) == str(expected.value)


@pytest.mark.parametrize("event", VALID)
def test_the_stored_text_is_the_rules_stored_event(event: Event) -> None:
    chosen = event.id if event.id is not None else "generated"
    body = _events.encode_stored(_events.checked_event(event), event_id=chosen, now=99)
    theirs = rules.stored_event(rules.check_event(event), event_id=chosen, now=99)
    assert _events.decode_stored(body) == theirs
    assert _events.decode_stored(dump_json(rules.event_to_json(theirs))) == theirs


def test_checked_event_shares_nothing_with_the_callers() -> None:
    part: dict[str, Any] = {"type": "data", "items": [1]}
    flat: dict[str, Any] = {"type": "text", "text": "x"}
    metadata: dict[str, Any] = {"tags": ["a"]}
    delta: dict[str, Any] = {"k": [1], "user:u": 2}
    custom: dict[str, Any] = {"c": 1}
    given = Event(
        author="user",
        content=Message("user", (part, flat), metadata=metadata),
        actions=EventActions(state_delta=delta, custom_actions=custom),
        metadata={"m": [1]},
    )
    body = _events.encode_stored(_events.checked_event(given), event_id="e", now=1)
    expected = rules.stored_event(rules.check_event(given), event_id="e", now=1)
    part["items"].append(2)
    flat["text"] = "changed"
    metadata["tags"].append("b")
    delta["k"].append(2)
    delta["new"] = 1
    custom["c"] = 2
    given.metadata["m"].append(2)
    assert _events.decode_stored(body) == expected


def _fields(record: Any) -> dict[str, Any]:
    return {field.name: getattr(record, field.name) for field in dataclasses.fields(record)}


#: A record of each class the stores assemble, and one field change for revise.
_RECORDS: list[tuple[Any, dict[str, Any]]] = [
    (Message.text("user", "x", created_at=1), {"role": "assistant"}),
    (EventActions(), {"state_delta": {"k": 1}}),
    (Event("a", content=Message.text("user", "x")), {"author": "b", "id": "e"}),
    (Session("s", "a", "u", state={"k": 1}), {"version": 3}),
    (ConversationMessage("i", "s", "u", Message.text("user", "x"), 3), {"id": "j"}),
]


@pytest.mark.parametrize(("record", "changes"), _RECORDS)
def test_assemble_and_revise_are_construct_and_replace(
    record: Any, changes: dict[str, Any]
) -> None:
    cls = type(record)
    built = build(cls, **_fields(record))
    assert built == record
    assert repr(built) == repr(record)
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.id = "x"
    revised = revise(built, **changes)
    assert revised == dataclasses.replace(record, **changes)
    assert built == record  # revise made a new record


def test_assemble_constructs_other_classes() -> None:
    @dataclasses.dataclass(frozen=True)
    class Checked:
        value: int

        def __post_init__(self) -> None:
            if self.value < 0:
                raise ValueError("negative")

    with pytest.raises(ValueError):
        build(Checked, value=-1)
    assert revise(build(Checked, value=1), value=2) == Checked(2)


@pytest.mark.parametrize(
    "command",
    [
        ("EVALSHA", "abc", 2, "k1", "k2", "é\x00x", -5, 10**30),
        ("CONFIG GET", "maxmemory"),
        (b"GET", b"key"),
        ("SET", "k", "v" * 70_000),
        ("RPUSH", "k", 1.5),
        ("HSET", "k", "f", ""),
        ("X", True),
    ],
)
def test_commands_are_packed_as_redis_py_packs_them(command: tuple[Any, ...]) -> None:
    from redis.asyncio.connection import Connection

    ours = _store_connection_class(Connection)(host="localhost", socket_timeout=1.0)
    theirs = Connection(host="localhost")

    def packed(pack: Callable[..., list[bytes]]) -> bytes | str:
        try:
            return b"".join(pack(*command))
        except Exception as exc:  # the same refusal counts as the same packing
            return repr(exc)

    assert packed(ours.pack_command) == packed(theirs.pack_command)


def test_an_append_whose_generated_id_is_taken_chooses_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    require_redis()

    async def scenario(url: str) -> None:
        async with redis_service.RedisSessionService(url, prefix="fast-paths:") as store:
            session = await store.create(CreateRequest("app", "user", session_id="s"))
            session = await store.append_event(session, Event(author="user", id="taken"))
            ids = iter(["taken", "fresh"])
            monkeypatch.setattr(redis_service, "_new_id", lambda: next(ids))
            after = await store.append_event(session, Event(author="user"))
            assert after.events[-1].id == "fresh"
            read = await store.get(GetRequest("app", "user", "s"))
            assert read is not None
            assert [event.id for event in read.events] == ["taken", "fresh"]
            assert read.version == after.version == 2

    with server.disposable_server() as url:
        asyncio.run(scenario(url))
