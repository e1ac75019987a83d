"""The SQLite stores' codecs (reference/sqlite/_events.py, _records.py) against the rules.

``checked_event`` must accept and refuse what ``rules.check_event`` does; the stored text must
decode to exactly the event ``rules.stored_event`` describes; text in the full form that
earlier versions wrote must decode the same; and a damaged row must be StorageUnavailable.
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
from agentstores.reference import session_service_rules as rules
from agentstores.reference._records import decode_message
from agentstores.reference.sqlite import _events
from agentstores.spec.errors import InvalidArgument, StorageUnavailable
from agentstores.spec.messages import Message, check_message, message_from_json, message_to_json
from agentstores.spec.session_service import Event, EventActions
from agentstores.spec.values import dump_json, load_json

_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


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
    decoded.metadata["changed"] = True  # type: ignore[index]
    decoded.actions.state_delta["changed"] = True  # type: ignore[index]
    if decoded.content is not None:
        decoded.content.metadata["changed"] = True  # type: ignore[index]
        for part in decoded.content.content:
            part["changed"] = True
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
    """SV-12: an event the rules refuse is InvalidArgument here too."""
    with pytest.raises(InvalidArgument):
        rules.check_event(event)
    with pytest.raises(InvalidArgument):
        _events.checked_event(event)


_GOOD = _events.encode_stored(
    _events.checked_event(Event(author="user", content=Message.text("user", "hi"))),
    event_id="e",
    now=1,
)


@pytest.mark.parametrize(
    "body",
    [
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
    ],
)
def test_damaged_rows_are_storage_unavailable(body: str) -> None:
    """A row that is not the stored form of an event is reported, not returned."""
    assert _events.decode_stored(_GOOD).author == "user"
    with pytest.raises(StorageUnavailable):
        _events.decode_stored(body)


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
                    st.just("text"),
                ),
                max_size=3,
            ).map(tuple),
            created_at=st.sampled_from([None, 0, -1, 2**63, 2**63 - 1, 1.0, True]),
            id=st.sampled_from([None, "", "m1"]),
            metadata=st.sampled_from([{}, {"k": "\ud800"}, {"k": 1}]),
        ),
    )
)
def test_message_shortcut_accepts_what_check_message_accepts(message: Message) -> None:
    """G-12, G-13: the shortcut for plain text messages refuses exactly what
    ``check_message`` refuses."""
    try:
        check_message(message)
    except InvalidArgument:
        with pytest.raises(InvalidArgument):
            _events._check_message(message)
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
