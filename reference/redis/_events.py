"""An appended event checked and copied in one pass, and encoded once (the Redis session
service's append).

:func:`agentstores.reference.session_service_rules.check_event` returns a private copy of the
event, each of its dicts copied through JSON, and a store then encodes the stored form once
more. An append on Redis is one short script, so those copies would cost more than the round
trip. :func:`checked_event` makes the same checks (SV-12, in the same order, with the same
errors) and copies only containers, shallowly where they hold only scalars (which are
immutable); :func:`stored_event` fills in the stored form and :func:`encode` encodes it. All
of it happens before the store awaits anything, so nothing the caller changes afterwards
reaches the stored event or the one returned (G-7).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agentstores.spec.errors import InvalidArgument
from agentstores.spec.messages import Message, check_message
from agentstores.spec.session_service import Event, EventActions, check_state_delta, is_temp_key
from agentstores.spec.values import (
    MAX_ID_LENGTH,
    MAX_INT_BITS,
    JSONObject,
    check_id,
    check_json_object,
    check_non_negative_int,
    check_timestamp,
    load_json,
)

from .._records import build, revise
from ..session_service_rules import check_bool, check_text, expect_type, optional_id
from ._client import encode_json

__all__ = ["checked_event", "encode", "stored_event"]


def _mapping_object(value: object, *, what: str) -> JSONObject:
    """A JSON object from a dict or any other Mapping, checked, in a dict of the store's own."""
    if type(value) is dict and not value:  # the usual metadata: nothing to look at
        return {}
    if isinstance(value, Mapping) and not isinstance(value, dict):
        value = dict(value)
    copied: JSONObject = _copy(check_json_object(value, what=what))
    return copied


#: The types of JSON scalars, which are immutable (their subclasses may not be).
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _copy(value: Any) -> Any:
    """A checked JSON value in objects of the store's own: a dict or list of scalars copied
    shallowly (most metadata and message parts), anything deeper through its JSON text."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is dict:
        if all(type(item) in _SCALARS for item in value.values()):
            return dict(value)
    elif kind is list and all(type(item) in _SCALARS for item in value):
        return list(value)
    return load_json(encode_json(value))


def _flat_and_plain(obj: dict[Any, Any]) -> bool:
    """Whether a dict certainly is a valid JSON object (G-4, G-5): ASCII str keys (so no lone
    surrogates), values ASCII strs, bools, None or small ints. False says nothing."""
    for key, value in obj.items():
        if type(key) is not str or not key.isascii():
            return False
        kind = type(value)
        if kind is str:
            if not value.isascii():
                return False
        elif kind is int:
            if value.bit_length() > MAX_INT_BITS:
                return False
        elif kind is not bool and value is not None:
            return False
    return True


def _plainly_valid(message: Message) -> bool:
    """Whether ``check_message`` certainly accepts the message, judged at a glance for the
    usual one (exact types, ASCII text, flat parts and metadata); False says nothing, and the
    message gets the full check."""
    if type(message) is not Message:
        return False
    role = message.role
    if type(role) is not str or not role or not role.isascii():
        return False
    content = message.content
    if not isinstance(content, tuple | list):
        return False
    for part in content:
        if type(part) is not dict or not _flat_and_plain(part):
            return False
        kind = part.get("type")
        if (
            type(kind) is not str
            or not kind
            or (kind == "text" and type(part.get("text")) is not str)
        ):
            return False
    created_at, message_id, metadata = message.created_at, message.id, message.metadata
    if created_at is not None and (type(created_at) is not int or not 0 <= created_at < 2**63):
        return False
    if message_id is not None and not (
        type(message_id) is str
        and 0 < len(message_id) <= MAX_ID_LENGTH
        and message_id.isascii()
        and "\x00" not in message_id
    ):
        return False
    return type(metadata) is dict and _flat_and_plain(metadata)


def _checked_message(message: Message) -> Message:
    if not _plainly_valid(message):
        check_message(message)
    return build(
        Message,
        role=message.role,
        content=tuple(_copy(part) for part in message.content),
        created_at=message.created_at,
        id=message.id,
        metadata=_copy(message.metadata),
    )


def _checked_actions(actions: object) -> EventActions:
    expect_type(actions, EventActions, what="event actions")
    assert isinstance(actions, EventActions)
    artifacts = actions.artifact_delta
    if not isinstance(artifacts, Mapping):
        raise InvalidArgument("artifact_delta must be a mapping")
    checked_artifacts: dict[str, int] = {}
    for name, version in artifacts.items():
        check_id(name, what="artifact name")
        checked_artifacts[name] = check_non_negative_int(version, what=f"artifact {name!r}")
    delta = actions.state_delta
    return build(
        EventActions,
        state_delta={}
        if type(delta) is dict and not delta
        else {key: _copy(value) for key, value in check_state_delta(delta).items()},
        artifact_delta=checked_artifacts,
        skip_summarization=check_bool(actions.skip_summarization, what="skip_summarization"),
        transfer_to_agent=optional_id(actions.transfer_to_agent, what="transfer_to_agent"),
        escalate=check_bool(actions.escalate, what="escalate"),
        custom_actions=_mapping_object(actions.custom_actions, what="custom_actions"),
    )


def checked_event(event: object) -> Event:
    """A copy of the event if SV-12 accepts it, else InvalidArgument: the checks of
    ``rules.check_event``, in its order, and its private copy (G-7) made container by
    container rather than through JSON. Call it before awaiting anything."""
    expect_type(event, Event, what="event")
    assert isinstance(event, Event)
    content = None if event.content is None else _checked_message(event.content)
    tool_ids = event.long_running_tool_ids
    if not isinstance(tool_ids, tuple | list):
        raise InvalidArgument("long_running_tool_ids must be a tuple of ids")
    return build(
        Event,
        author=check_id(event.author, what="author"),
        id=optional_id(event.id, what="event id"),
        timestamp=None if event.timestamp is None else check_timestamp(event.timestamp),
        invocation_id=optional_id(event.invocation_id, what="invocation_id"),
        agent_id=optional_id(event.agent_id, what="agent_id"),
        branch=optional_id(event.branch, what="branch"),
        content=content,
        reasoning=check_text(event.reasoning, what="reasoning"),
        actions=_checked_actions(event.actions),
        long_running_tool_ids=tuple(check_id(t, what="tool id") for t in tool_ids),
        metadata=_mapping_object(event.metadata, what="event metadata"),
    )


def stored_event(event: Event, *, event_id: str, now: int) -> Event:
    """The stored form of a checked event (SV-12): ``event_id`` for a missing id, ``now`` for
    a missing timestamp, ``temp:`` keys removed from the delta (``rules.stored_event``)."""
    actions = event.actions
    delta = actions.state_delta
    if any(is_temp_key(key) for key in delta):
        kept = {key: value for key, value in delta.items() if not is_temp_key(key)}
        actions = revise(actions, state_delta=kept)
    timestamp = now if event.timestamp is None else event.timestamp
    return revise(event, id=event_id, timestamp=timestamp, actions=actions)


def encode(event: Event) -> str:
    """The JSON text of a stored event: ``rules.event_to_json``'s object, built without its
    copies (the encoder copies nothing either)."""
    actions = event.actions
    content = event.content
    return encode_json(
        {
            "author": event.author,
            "id": event.id,
            "timestamp": event.timestamp,
            "invocation_id": event.invocation_id,
            "agent_id": event.agent_id,
            "branch": event.branch,
            "content": None
            if content is None
            else {
                "role": content.role,
                "content": list(content.content),
                "created_at": content.created_at,
                "id": content.id,
                "metadata": content.metadata,
            },
            "reasoning": event.reasoning,
            "actions": {
                "state_delta": actions.state_delta,
                "artifact_delta": actions.artifact_delta,
                "skip_summarization": actions.skip_summarization,
                "transfer_to_agent": actions.transfer_to_agent,
                "escalate": actions.escalate,
                "custom_actions": actions.custom_actions,
            },
            "long_running_tool_ids": list(event.long_running_tool_ids),
            "metadata": event.metadata,
        }
    )
