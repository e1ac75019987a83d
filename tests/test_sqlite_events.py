"""The event codec the SQLite and Redis session services share (reference/_events.py) and the
message codec of _records.py, against the rules.

``checked_event`` must accept and refuse what ``rules.check_event`` does, with its errors; the
stored text must decode to exactly the event ``rules.stored_event`` describes; text in the full
form that earlier versions of both stores wrote must decode the same; and damaged stored data
must be StorageUnavailable or decode as ``rules.event_from_json`` reads it, never to a
malformed event.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentstores.conformance.markers import requirement
from agentstores.conformance.strategies import invalid_ids, invalid_json_values, messages, plain_ids
from agentstores.conformance.suites._session_service_events import events
from agentstores.reference import _events
from agentstores.reference import session_service_rules as rules
from agentstores.reference._records import decode_message
from agentstores.spec.errors import InvalidArgument, StorageUnavailable
from agentstores.spec.messages import Message, check_message, message_from_json, message_to_json
from agentstores.spec.session_service import Event, EventActions
from agentstores.spec.values import MAX_ID_LENGTH, dump_json, load_json

_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


def _scribble(event: Event) -> None:
    """Change every container of ``event`` in place (its metadata, actions' dicts, message
    metadata and parts), as a careless caller might."""
    event.metadata["changed"] = True  # type: ignore[index]
    event.actions.state_delta["changed"] = True  # type: ignore[index]
    event.actions.custom_actions["changed"] = True  # type: ignore[index]
    if event.content is not None:
        event.content.metadata["changed"] = True  # type: ignore[index]
        for part in event.content.content:
            part["changed"] = True


@requirement("SV-12", "G-7")
@_SETTINGS
@given(event=events(), event_id=plain_ids(), now=st.integers(0, 2**53))
def test_stored_text_decodes_to_the_stored_event(event: Event, event_id: str, now: int) -> None:
    """SV-12, G-7: encode then decode gives ``rules.stored_event`` of the checked event, in
    objects that share nothing with the caller's; the full form decodes the same."""
    expected = rules.stored_event(rules.check_event(event), event_id=event_id, now=now)
    body = _events.encode_stored(_events.checked_event(event), event_id=event_id, now=now)
    decoded = _events.decode_stored(body)
    assert decoded == expected
    assert type(decoded) is Event and type(decoded.actions) is EventActions
    assert decoded.content is None or type(decoded.content) is Message
    assert _events.decode_stored(dump_json(rules.event_to_json(expected))) == expected
    # Fresh containers: changing one decoded event changes no other decoding of the text.
    _scribble(decoded)
    assert _events.decode_stored(body) == expected


def _not_none(value: object) -> bool:
    return value is not None


def _bad_events() -> st.SearchStrategy[Event]:
    """Events with one field out of its domain."""
    base = Event(author="user", content=Message.text("user", "hi"))
    actions = EventActions()
    return st.one_of(
        invalid_ids().map(lambda bad: replace(base, author=bad)),
        invalid_ids().filter(_not_none).map(lambda bad: replace(base, id=bad)),
        invalid_ids().filter(_not_none).map(lambda bad: replace(base, branch=bad)),
        st.sampled_from([-1, 1.5, "1", True]).map(lambda bad: replace(base, timestamp=bad)),
        st.sampled_from([None, 1, b"x", "\ud800"]).map(lambda bad: replace(base, reasoning=bad)),
        invalid_json_values().map(lambda bad: replace(base, metadata={"k": bad})),
        invalid_json_values().map(
            lambda bad: replace(base, actions=replace(actions, state_delta={"k": bad}))
        ),
        invalid_json_values().map(
            lambda bad: replace(base, actions=replace(actions, custom_actions={"k": bad}))
        ),
        st.sampled_from([-1, "1", 2**64]).map(
            lambda bad: replace(base, actions=replace(actions, artifact_delta={"a": bad}))
        ),
        st.sampled_from(["x", 1, None]).map(
            lambda bad: replace(base, actions=replace(actions, escalate=bad))
        ),
        st.sampled_from(["tools", [1], ("",)]).map(
            lambda bad: replace(base, long_running_tool_ids=bad)
        ),
        st.sampled_from([Message("", ()), Message("user", ({"type": ""},))]).map(
            lambda bad: replace(base, content=bad)
        ),
        st.sampled_from([None, {}, "event"]),  # type: ignore[arg-type]
    )


@requirement("SV-12")
@_SETTINGS
@given(event=_bad_events())
def test_checked_event_refuses_what_the_rules_refuse(event: Any) -> None:
    """SV-12: an event the rules refuse is InvalidArgument here too, with the same error."""
    with pytest.raises(InvalidArgument) as expected:
        rules.check_event(event)
    with pytest.raises(InvalidArgument) as got:
        _events.checked_event(event)
    assert str(got.value) == str(expected.value)


@requirement("SV-12")
@_SETTINGS
@given(event=events())
def test_checked_event_accepts_what_the_rules_accept(event: Event) -> None:
    """SV-12: a valid event is accepted, equal to the rules' private copy."""
    assert _events.checked_event(event) == rules.check_event(event)


@requirement("SV-12", "G-7")
@_SETTINGS
@given(event=events(), event_id=plain_ids(), now=st.integers(0, 2**53))
def test_the_stored_text_shares_nothing_with_the_callers_event(
    event: Event, event_id: str, now: int
) -> None:
    """G-7: once encoded, changing the caller's containers changes nothing stored."""
    expected = rules.stored_event(rules.check_event(event), event_id=event_id, now=now)
    body = _events.encode_stored(_events.checked_event(event), event_id=event_id, now=now)
    _scribble(event)
    assert _events.decode_stored(body) == expected


def _present(obj: dict[str, Any], *objects: str) -> dict[str, Any]:
    """``obj`` without its null objects: the stored form reads null as a missing (empty)
    object, where ``rules.event_from_json`` would build a record holding None."""
    return {k: v for k, v in obj.items() if not (k in objects and v is None)}


def _full_form(obj: dict[str, Any]) -> dict[str, Any]:
    """A stored object with every missing key of ``rules.event_to_json``'s form filled with
    its default, as ``rules.event_from_json`` needs (keys of other kinds are kept)."""
    obj = _present(obj, "metadata")
    full: dict[str, Any] = {
        "invocation_id": None,
        "agent_id": None,
        "branch": None,
        "content": None,
        "reasoning": "",
        "long_running_tool_ids": [],
        "metadata": {},
        **obj,
    }
    actions = full.get("actions")
    if actions is None:
        actions = {}
    if isinstance(actions, dict):
        full["actions"] = {
            "state_delta": {},
            "artifact_delta": {},
            "skip_summarization": False,
            "transfer_to_agent": None,
            "escalate": False,
            "custom_actions": {},
            **_present(actions, "state_delta", "artifact_delta", "custom_actions"),
        }
    if isinstance(full["content"], dict):
        full["content"] = {
            "content": [],
            "created_at": None,
            "id": None,
            "metadata": {},
            **_present(full["content"], "metadata"),
        }
    return full


def _well_formed(event: Event) -> None:
    """The containers of a decoded event are of the kinds the spec's records hold."""
    assert type(event) is Event and type(event.actions) is EventActions
    assert type(event.long_running_tool_ids) is tuple and type(event.metadata) is dict
    for container in (
        event.actions.state_delta,
        event.actions.artifact_delta,
        event.actions.custom_actions,
    ):
        assert type(container) is dict
    if event.content is not None:
        assert type(event.content) is Message
        assert type(event.content.content) is tuple and type(event.content.metadata) is dict


#: Values a damaged field may hold instead of its own.
_ODD_VALUES = st.sampled_from([None, 0, -1, 1.5, True, "", "x", [], [1], {}, {"k": 1}])


def _damaged(body: str, draw: st.DrawFn) -> str:
    """``body`` damaged one way: cut, a character changed, or one field of its object (or of
    its message or actions) replaced by an odd value, dropped or added."""
    how = draw(st.sampled_from(["cut", "char", "field"]))
    if how == "cut":
        return body[: draw(st.integers(0, len(body) - 1))]
    if how == "char":
        at = draw(st.integers(0, len(body) - 1))
        return (
            body[:at]
            + draw(st.sampled_from(['"', "{", "]", ",", "1", "\x1e", "é"]))
            + body[at + 1 :]
        )
    obj = load_json(body)
    assert isinstance(obj, dict)
    target = obj
    for name in ("content", "actions"):
        if isinstance(obj.get(name), dict) and draw(st.booleans()):
            target = obj[name]
    keys = [*sorted(target), "role", "extra", "state_delta", "content", "author"]
    key = draw(st.sampled_from(keys))
    if draw(st.booleans()):
        target.pop(key, None)
    else:
        target[key] = draw(_ODD_VALUES)
    return dump_json(obj)


@requirement("SV-12", "G-11")
@_SETTINGS
@given(
    event=events(),
    full=st.booleans(),
    data=st.data(),
)
def test_damaged_stored_events_are_reported_or_read_as_the_rules_read_them(
    event: Event, full: bool, data: st.DataObject
) -> None:
    """G-11: damaged stored text (either form) is StorageUnavailable, never another error
    nor a malformed event; what decodes is what ``rules.event_from_json`` reads."""
    stored = rules.stored_event(rules.check_event(event), event_id="e", now=1)
    if full:
        body = dump_json(rules.event_to_json(stored))
    else:
        body = _events.encode_stored(_events.checked_event(event), event_id="e", now=1)
    damaged = _damaged(body, data.draw)
    try:
        decoded = _events.decode_stored(damaged)
    except StorageUnavailable:
        return
    _well_formed(decoded)
    obj = load_json(damaged)
    assert isinstance(obj, dict)
    try:
        expected = rules.event_from_json(_full_form(obj))
    except (InvalidArgument, TypeError, ValueError):
        return  # the rules check values the shape check leaves alone (they were checked)
    assert decoded == expected


_GOOD = _events.encode_stored(
    _events.checked_event(Event(author="user", content=Message.text("user", "hi"))),
    event_id="e",
    now=1,
)


#: Rows that are not the stored form of an event.
_DAMAGED_ROWS = [
    "",
    "not json",
    _GOOD[:-1],
    _GOOD + " ",
    _GOOD + "{}",
    "[]",
    "null",
    '{"author":"user","id":"e"}',
    _GOOD.replace('"author"', '"writer"'),
    _GOOD.replace('"timestamp":1', '"timestamp":1,"extra":2'),
    _GOOD.replace('"content":[', '"content":"x","parts":['),
    _GOOD.replace('{"role"', '{"colour":1,"role"'),
    _GOOD[:-1] + ',"actions":[]}',
    _GOOD[:-1] + ',"actions":{"state_delta":[]}}',
    _GOOD[:-1] + ',"actions":{"unknown":1}}',
    _GOOD[:-1] + ',"metadata":[]}',
    _GOOD[:-1] + ',"long_running_tool_ids":"ab"}',
    _GOOD.replace('"content":{', '"content":['),
]


@pytest.mark.parametrize("body", _DAMAGED_ROWS)
def test_damaged_rows_are_storage_unavailable(body: str) -> None:
    """A row that is not the stored form of an event is reported, not returned."""
    assert _events.decode_stored(_GOOD).author == "user"
    with pytest.raises(StorageUnavailable):
        _events.decode_stored(body)


@requirement("SV-3", "SV-12", "G-7")
@_SETTINGS
@given(batch=st.lists(st.tuples(events(), plain_ids(), st.integers(0, 2**53)), max_size=6))
def test_a_reads_texts_decode_together_as_each_alone(batch: list[tuple[Event, str, int]]) -> None:
    """decode_stored_all (one scan of a read's texts) gives what decode_stored gives for each
    text, in order, and no two events share a container."""
    bodies = [
        _events.encode_stored(_events.checked_event(event), event_id=event_id, now=now)
        for event, event_id, now in batch
    ]
    alone = [_events.decode_stored(body) for body in bodies]
    together = _events.decode_stored_all(bodies)
    assert type(together) is tuple and list(together) == alone
    if together:
        _scribble(together[0])
        assert list(together[1:]) == alone[1:]


@pytest.mark.parametrize("body", [b for b in _DAMAGED_ROWS if b.strip() != _GOOD])
@pytest.mark.parametrize("position", [0, 1, 2])
def test_a_damaged_row_among_good_ones_is_storage_unavailable(body: str, position: int) -> None:
    """G-11: one damaged row fails the read of several, whichever its place (the one scan
    gives way to decoding each row, which names the damage)."""
    rows = [_GOOD, _GOOD]
    rows.insert(position, body)
    with pytest.raises(StorageUnavailable, match="corrupt stored event"):
        _events.decode_stored_all(rows)


@pytest.mark.parametrize("row", [None, b"{}", 7])
def test_a_row_that_holds_no_text_is_storage_unavailable(row: Any) -> None:
    with pytest.raises(StorageUnavailable):
        _events.decode_stored_all([_GOOD, row])


def test_the_limits_of_one_scan() -> None:
    """What one scan of joined texts cannot tell from intact ones, pinned: white space around
    a text (JSON's own, not damage) reads as the text; rows damaged so that they make up for
    each other (one holding two events, the next two halves of one) read as well-formed
    events, never as a malformed one."""
    assert (
        _events.decode_stored_all([" " + _GOOD + " ", _GOOD]) == (_events.decode_stored(_GOOD),) * 2
    )
    half = _GOOD[:-1] + ',"metadata":{"k":"'
    events = _events.decode_stored_all([_GOOD + "," + _GOOD, half, '"}}'])
    assert len(events) == 3
    for event in events:
        _well_formed(event)
    assert events[2].metadata == {"k": ","}


#: An event in the full form an earlier version of the Redis store wrote
#: (``rules.event_to_json``), and the event it is.
_OLD_REDIS_TEXT = (
    '{"author":"agent","id":"e1","timestamp":7,"invocation_id":"i","agent_id":null,'
    '"branch":null,"content":{"role":"assistant","content":[{"type":"text","text":"hi"}],'
    '"created_at":5,"id":null,"metadata":{}},"reasoning":"","actions":{"state_delta":'
    '{"k":1},"artifact_delta":{},"skip_summarization":false,"transfer_to_agent":null,'
    '"escalate":false,"custom_actions":{}},"long_running_tool_ids":[],"metadata":{"m":2}}'
)


def test_text_an_earlier_version_wrote_reads_the_same() -> None:
    """Stored data of earlier versions (the full form, on either engine) stays readable."""
    expected = Event(
        author="agent",
        id="e1",
        timestamp=7,
        invocation_id="i",
        content=Message.text("assistant", "hi", created_at=5),
        actions=EventActions(state_delta={"k": 1}),
        metadata={"m": 2},
    )
    assert _events.decode_stored(_OLD_REDIS_TEXT) == expected
    assert rules.event_from_json(load_json(_OLD_REDIS_TEXT)) == expected


_ODD_TEXT = st.sampled_from(["", "a", "é", "\ud800", "日本", "x\x00y"])


@requirement("G-12", "G-13")
@_SETTINGS
@given(
    message=st.one_of(
        messages(),
        st.builds(
            Message,
            role=st.one_of(_ODD_TEXT, st.sampled_from([None, 1])),
            content=st.lists(
                st.one_of(
                    st.fixed_dictionaries({"type": st.just("text"), "text": _ODD_TEXT}),
                    st.fixed_dictionaries({"type": _ODD_TEXT, "text": _ODD_TEXT}),
                    st.fixed_dictionaries({"type": st.just("text"), "text": st.just(1)}),
                    st.fixed_dictionaries({"type": st.just("text")}),
                    st.just({"type": "text", "text": "a", "more": "b"}),
                    st.just({"type": "data", "n": 2**4096}),
                    st.just({"type": "data", "n": float("nan"), "x": 1.5}),
                    st.just({"type": "data", "items": [1, {"k": None}]}),
                    st.just({"type": "data", 1: "x"}),
                    st.just({"type": "data", "\udc00": 1}),
                    st.just({"type": "text", "text": "é", "b": False}),
                    st.just("text"),
                ),
                max_size=3,
            ).map(tuple),
            created_at=st.sampled_from([None, 0, -1, 2**63, 2**63 - 1, 1.0, True]),
            id=st.sampled_from(
                [
                    None,
                    "",
                    "m1",
                    "é",
                    "a\x00b",
                    "\udc00",
                    1,
                    "x" * MAX_ID_LENGTH,
                    "y" * (MAX_ID_LENGTH + 1),
                ]
            ),
            metadata=st.sampled_from(
                [
                    {},
                    {"k": "\ud800"},
                    {"k": 1},
                    {"é": 1.5},
                    {"\ud800": 1},
                    {"k": float("nan")},
                    {"k": float("-inf")},
                    {"k": 2**4096},
                    {"k": 2**4096 - 1},
                    {"k": [1]},
                    {"k": (1,)},
                    {1: "x"},
                    {"k": None, "j": True, "i": -0.0},
                ]
            ),
        ),
    )
)
def test_message_shortcut_accepts_what_check_message_accepts(message: Message) -> None:
    """G-12, G-13: the shortcut for the usual messages accepts only what ``check_message``
    accepts, and a refusal is ``check_message``'s own."""
    try:
        check_message(message)
    except InvalidArgument as expected:
        assert not _events._plainly_valid(message)
        with pytest.raises(InvalidArgument) as got:
            _events._check_message(message)
        assert str(got.value) == str(expected)
    else:
        _events._check_message(message)


@requirement("G-14", "G-7")
@_SETTINGS
@given(message=messages())
def test_stored_message_decodes_as_message_from_json(message: Message) -> None:
    """G-14, G-7: a message's stored text decodes to the message, in fresh objects."""
    text = dump_json(message_to_json(message))
    decoded = decode_message(text)
    assert decoded == message_from_json(load_json(text)) == message
    assert type(decoded) is Message
    decoded.metadata["changed"] = True  # type: ignore[index]
    for part in decoded.content:
        part["changed"] = True
    assert decode_message(text) == message


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[]",
        '{"role":"user","content":[]} ',
        '{"content":[]}',
        '{"role":"user","content":{}}',
        '{"role":"user","metadata":[]}',
        '{"role":"user","colour":1}',
    ],
)
def test_damaged_messages_are_storage_unavailable(text: str) -> None:
    """A row that is not the stored form of a message is reported, not returned."""
    assert decode_message('{"role":"user"}') == Message("user")
    with pytest.raises(StorageUnavailable):
        decode_message(text)
