"""Session-service events checked, encoded and decoded in one pass each: the fast path that the
SQLite, Redis and JSON-file session services share.

:func:`agentstores.reference.session_service_rules.check_event` returns a private copy of the
event, each of its dicts copied through JSON, and ``rules.event_from_json`` checks every
message again when an event is read back. An append commits in a few hundred microseconds on
either engine and a read of the newest 20 events takes less, so those copies and checks were
the larger part of both. Here:

* :func:`checked_event` makes the checks of ``rules.check_event`` (SV-12, in the same order,
  with the same errors; a shortcut for the usual message, see :func:`_plainly_valid`) and
  copies nothing; :func:`encode_stored` then encodes the stored form once, before the store
  awaits anything, and that text is the copy (G-7): the event the store returns is decoded
  from it.
* :func:`decode_stored` rebuilds an event from the text a store wrote, in fresh objects.
  The text was checked before it was written, so it checks the shape only (an object with
  the required fields and the right kind of containers), enough to report damaged data as
  ``StorageUnavailable`` rather than return a malformed event; :func:`decode_stored_all`
  decodes a read's texts, parsed in one scan.

The stored object is ``rules.event_to_json``'s without its default-valued fields (see below).
Text in the full form, which earlier versions of both stores wrote, decodes the same.
``tests/test_sqlite_events.py`` and ``tests/test_redis_fast_paths.py`` hold these to the rules.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from agentstores.spec.errors import InvalidArgument, StorageUnavailable
from agentstores.spec.messages import Message, check_message
from agentstores.spec.session_service import Event, EventActions, check_state_delta, is_temp_key
from agentstores.spec.values import (
    MAX_ID_LENGTH,
    MAX_INT_BITS,
    JSONObject,
    check_id,
    check_json_object,
    check_timestamp,
)

from ._records import assemble, encode_json, is_plain, scan_all, scan_json
from .session_service_rules import (
    check_artifact_delta,
    check_bool,
    check_text,
    expect_type,
    optional_id,
)

__all__ = [
    "checked_event",
    "decode_stored",
    "decode_stored_all",
    "decode_stored_object",
    "encode_json",
    "encode_stored",
    "new_event_id",
]


def new_event_id() -> str:
    """A fresh event id: 32 random hex digits, as ``rules.new_id`` gives (without building a
    UUID object)."""
    return os.urandom(16).hex()


# --- checks (those of rules.check_event, without the copies) -----------------------------------


def _mapping_object(value: object, *, what: str) -> JSONObject:
    """A JSON object from a dict or any other Mapping (shallow: the encoding is the copy)."""
    if type(value) is dict and not value:  # most metadata: nothing to check
        return value
    if isinstance(value, Mapping) and not isinstance(value, dict):
        value = dict(value)
    return check_json_object(value, what=what)


def _checked_actions(actions: object) -> EventActions:
    expect_type(actions, EventActions, what="event actions")
    assert isinstance(actions, EventActions)
    checked_artifacts = check_artifact_delta(actions.artifact_delta)
    delta = actions.state_delta
    return assemble(
        EventActions,
        {
            # Most events change no state: an empty dict needs no check.
            "state_delta": delta if type(delta) is dict and not delta else check_state_delta(delta),
            "artifact_delta": checked_artifacts,
            "skip_summarization": check_bool(actions.skip_summarization, what="skip_summarization"),
            "transfer_to_agent": optional_id(actions.transfer_to_agent, what="transfer_to_agent"),
            "escalate": check_bool(actions.escalate, what="escalate"),
            "custom_actions": _mapping_object(actions.custom_actions, what="custom_actions"),
        },
    )


def _valid_text(text: str) -> bool:
    """Whether a str is in the JSON value domain (no lone surrogate, G-5)."""
    if text.isascii():  # O(1) in CPython, and most text
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _flat_and_plain(obj: dict[Any, Any]) -> bool:
    """Whether a dict certainly is a valid JSON object (G-4, G-5) whose values are all
    scalars: str keys and values of valid text, bools, None, ints of at most MAX_INT_BITS
    bits, finite floats. False says nothing (nested values get the full check)."""
    for key, value in obj.items():
        if type(key) is not str or not _valid_text(key):
            return False
        kind = type(value)
        if kind is str:
            if not _valid_text(value):
                return False
        elif kind is int:
            if value.bit_length() > MAX_INT_BITS:
                return False
        elif kind is float:
            if not math.isfinite(value):
                return False
        elif kind is not bool and value is not None:
            return False
    return True


def _plainly_valid(message: object) -> bool:
    """Whether ``check_message`` certainly accepts the message, judged at a glance for the
    usual one (exact types, flat parts and metadata); False says nothing, and the message
    gets the full check (which also gives the error)."""
    if type(message) is not Message:
        return False
    role = message.role
    if type(role) is not str or not role or not _valid_text(role):
        return False
    content: Any = message.content  # the caller's: of any type
    if type(content) is not tuple and type(content) is not list:
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
        and "\x00" not in message_id
        and _valid_text(message_id)
    ):
        return False
    return type(metadata) is dict and (not metadata or _flat_and_plain(metadata))


def _check_message(message: object) -> None:
    """``check_message(message)``, with :func:`_plainly_valid` as the shortcut: it accepts
    only messages that ``check_message`` accepts; anything else (and every error) goes
    through ``check_message`` itself."""
    if not _plainly_valid(message):
        check_message(message)


def checked_event(event: object) -> Event:
    """The event if SV-12 accepts it, else InvalidArgument: the checks of
    ``rules.check_event``, but its dicts stay the caller's (encode it before any await)."""
    expect_type(event, Event, what="event")
    assert isinstance(event, Event)
    if event.content is not None:
        _check_message(event.content)
    tool_ids = event.long_running_tool_ids
    if not isinstance(tool_ids, tuple | list):
        raise InvalidArgument("long_running_tool_ids must be a tuple of ids")
    # Checked in the order of rules.check_event, so that the first error is the same.
    return assemble(
        Event,
        {
            "author": check_id(event.author, what="author"),
            "id": optional_id(event.id, what="event id"),
            "timestamp": None if event.timestamp is None else check_timestamp(event.timestamp),
            "invocation_id": optional_id(event.invocation_id, what="invocation_id"),
            "agent_id": optional_id(event.agent_id, what="agent_id"),
            "branch": optional_id(event.branch, what="branch"),
            "content": event.content,
            "reasoning": check_text(event.reasoning, what="reasoning"),
            "actions": _checked_actions(event.actions),
            "long_running_tool_ids": tuple([check_id(t, what="tool id") for t in tool_ids]),
            "metadata": _mapping_object(event.metadata, what="event metadata"),
        },
    )


# --- the stored form ---------------------------------------------------------------------------
#
# ``rules.event_to_json``'s object without the fields that hold their default (None, "", False,
# an empty dict or list): a typical event is half as long, and JSON parsing was most of the cost
# of a read. A missing key means the default; text in the full form (which earlier versions
# wrote) decodes the same.


def encode_stored(event: Event, *, event_id: str, now: int) -> str:
    """The JSON text of the stored form of a checked event (SV-12): ``event_id`` for a missing
    id, ``now`` for a missing timestamp, ``temp:`` keys removed from the delta."""
    stored: JSONObject = {
        "author": event.author,
        "id": event_id,
        "timestamp": now if event.timestamp is None else event.timestamp,
    }
    for name in ("invocation_id", "agent_id", "branch"):
        if (value := getattr(event, name)) is not None:
            stored[name] = value
    message = event.content
    if message is not None:
        content: JSONObject = {"role": message.role, "content": list(message.content)}
        if message.created_at is not None:
            content["created_at"] = message.created_at
        if message.id is not None:
            content["id"] = message.id
        if message.metadata:
            content["metadata"] = message.metadata
        stored["content"] = content
    if event.reasoning:
        stored["reasoning"] = event.reasoning
    actions = _actions_json(event.actions)
    if actions:
        stored["actions"] = actions
    if event.long_running_tool_ids:
        stored["long_running_tool_ids"] = list(event.long_running_tool_ids)
    if event.metadata:
        stored["metadata"] = event.metadata
    return encode_json(stored)


def _actions_json(actions: EventActions) -> JSONObject:
    delta = actions.state_delta
    if any(is_temp_key(key) for key in delta):
        delta = {key: value for key, value in delta.items() if not is_temp_key(key)}
    stored: JSONObject = {}
    if delta:
        stored["state_delta"] = delta
    if actions.artifact_delta:
        stored["artifact_delta"] = actions.artifact_delta
    if actions.skip_summarization:
        stored["skip_summarization"] = True
    if actions.transfer_to_agent is not None:
        stored["transfer_to_agent"] = actions.transfer_to_agent
    if actions.escalate:
        stored["escalate"] = True
    if actions.custom_actions:
        stored["custom_actions"] = actions.custom_actions
    return stored


#: The fields of the records :func:`decode_stored` builds, with the defaults of missing keys
#: (None where the field is filled in afterwards with a fresh object).
_EVENT_FIELDS: JSONObject = {
    "author": None,
    "id": None,
    "timestamp": None,
    "invocation_id": None,
    "agent_id": None,
    "branch": None,
    "content": None,
    "reasoning": "",
    "actions": None,
    "long_running_tool_ids": (),
    "metadata": None,
}
_MESSAGE_FIELDS: JSONObject = {
    "role": None,
    "content": [],  # never handed out: the message gets a tuple of it
    "created_at": None,
    "id": None,
    "metadata": None,
}
_ACTIONS_FIELDS: JSONObject = {
    "state_delta": None,
    "artifact_delta": None,
    "skip_summarization": False,
    "transfer_to_agent": None,
    "escalate": False,
    "custom_actions": None,
}
_EVENT_SIZE = len(_EVENT_FIELDS)
_MESSAGE_SIZE = len(_MESSAGE_FIELDS)
_ACTIONS_SIZE = len(_ACTIONS_FIELDS)

# decode_stored fills each record's __dict__ itself (what _records.assemble does, inlined: a
# read of 20 events builds 60 records, and the calls were a tenth of its cost), which is only
# right for plain frozen dataclasses.
if not is_plain(Event, EventActions, Message):  # pragma: no cover - the spec's records are
    raise ImportError("Event, EventActions and Message must be plain frozen dataclasses")
_new = object.__new__
_fill = object.__setattr__


def decode_stored(body: str) -> Event:
    """The event whose stored form is ``body`` (:func:`encode_stored`, or the full form of
    ``rules.event_to_json``), in fresh objects; StorageUnavailable if the text is not JSON of
    that shape (damaged data).

    Missing keys take their defaults, and null objects are empty ones, each a new object.
    The checks are of the shape only: objects and lists where they belong, no unknown field,
    an author, id and timestamp, a message's role; a scalar of another type in the right
    place is what was stored, and comes back. (The hottest code of a read.)
    """
    try:
        try:
            obj, end = scan_json(body, 0)
        except StopIteration as exc:
            raise ValueError(f"not JSON at {exc.value}") from None
        if end != len(body):
            raise TypeError("not one JSON object")
    except (ValueError, TypeError) as exc:
        raise StorageUnavailable(f"corrupt stored event: {exc}") from exc
    return decode_stored_object(obj)


def decode_stored_all(bodies: Sequence[str]) -> tuple[Event, ...]:
    """:func:`decode_stored` of each body, in order; the texts are parsed in one scan
    (``_records.scan_all``), or one by one if one of them is damaged, to report it."""
    objects = scan_all(bodies)
    if objects is None:
        return tuple([decode_stored(body) for body in bodies])
    return tuple([decode_stored_object(obj) for obj in objects])


def decode_stored_object(obj: object) -> Event:
    """:func:`decode_stored` of text already parsed (``obj``: what ``json.loads`` gives for it),
    for a store that keeps the stored form inside a larger JSON text; the same checks."""
    try:
        if type(obj) is not dict:
            raise TypeError("not one JSON object")
        fields = {**_EVENT_FIELDS, **obj}
        if (
            len(fields) != _EVENT_SIZE
            or "author" not in obj
            or "id" not in obj
            or "timestamp" not in obj
        ):
            raise TypeError("unknown event fields, or author, id or timestamp missing")
        content = fields["content"]
        if content is not None:
            if type(content) is not dict or "role" not in content:
                raise TypeError("the message is not an object with a role")
            message = {**_MESSAGE_FIELDS, **content}
            parts = message["content"]
            metadata = message["metadata"]
            if metadata is None:
                message["metadata"] = {}
            elif type(metadata) is not dict:
                raise TypeError("message metadata is not an object")
            if type(parts) is not list or len(message) != _MESSAGE_SIZE:
                raise TypeError("message parts are not a list, or unknown message fields")
            message["content"] = tuple(parts)
            fields["content"] = record = _new(Message)
            _fill(record, "__dict__", message)
        stored = fields["actions"]
        if stored is None:
            actions: JSONObject = {
                "state_delta": {},
                "artifact_delta": {},
                "skip_summarization": False,
                "transfer_to_agent": None,
                "escalate": False,
                "custom_actions": {},
            }
        else:
            if type(stored) is not dict:
                raise TypeError("actions is not an object")
            actions = {**_ACTIONS_FIELDS, **stored}
            for name in ("state_delta", "artifact_delta", "custom_actions"):
                value = actions[name]
                if value is None:
                    actions[name] = {}
                elif type(value) is not dict:
                    raise TypeError(f"{name} is not an object")
            if len(actions) != _ACTIONS_SIZE:
                raise TypeError("unknown fields in actions")
        fields["actions"] = built = _new(EventActions)
        _fill(built, "__dict__", actions)
        tool_ids = fields["long_running_tool_ids"]
        if tool_ids != ():
            if type(tool_ids) is not list:
                raise TypeError("long_running_tool_ids is not a list")
            fields["long_running_tool_ids"] = tuple(tool_ids)
        metadata = fields["metadata"]
        if metadata is None:
            fields["metadata"] = {}
        elif type(metadata) is not dict:
            raise TypeError("event metadata is not an object")
        event = _new(Event)
        _fill(event, "__dict__", fields)
        return event
    except (ValueError, TypeError) as exc:
        raise StorageUnavailable(f"corrupt stored event: {exc}") from exc
