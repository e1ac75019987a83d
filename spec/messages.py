"""The one message model that every family reuses (G-12 .. G-15).

A :class:`Message` has a role, a list of typed content parts, a creation time, an optional id
and free metadata. It covers the five seeds: goose/aster messages (role, created, typed parts,
visibility flags in metadata), ADK events' content, eino messages with parts, and plain
``role``/``content`` pairs (one text part).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidArgument
from .values import JSONObject, check_id, check_json_object, check_json_value, check_timestamp

__all__ = [
    "ContentPart",
    "Message",
    "check_message",
    "message_from_json",
    "message_to_json",
    "text_of",
    "text_part",
]

#: A content part: a JSON object with a non-empty ``"type"``; a ``"text"`` part has a str
#: ``"text"``. Other types (``image``, ``tool_request``, ``thinking``...) carry any JSON fields.
ContentPart = dict[str, Any]


def text_part(text: str) -> ContentPart:
    """A ``{"type": "text", "text": text}`` content part."""
    return {"type": "text", "text": text}


@dataclass(frozen=True)
class Message:
    """One message of a conversation (G-12).

    Attributes:
        role: who speaks; an open set of non-empty strings, usually ``user``, ``assistant``,
            ``system`` or ``tool``.
        content: the typed parts, in order.
        created_at: creation time in ms since the epoch (G-6), or None if unknown.
        id: an optional identifier in the id domain (G-1).
        metadata: free JSON metadata (e.g. ``{"user_visible": false}``).
    """

    role: str
    content: tuple[ContentPart, ...] = ()
    created_at: int | None = None
    id: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def text(
        cls,
        role: str,
        text: str,
        *,
        created_at: int | None = None,
        id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Message:
        """A message with one text part."""
        return cls(role, (text_part(text),), created_at, id, dict(metadata or {}))


def check_message(message: object) -> Message:
    """Return ``message`` if it satisfies G-12 .. G-14, else raise InvalidArgument."""
    if not isinstance(message, Message):
        raise InvalidArgument(f"expected a Message, not {type(message).__name__}")
    if not isinstance(message.role, str) or not message.role:
        raise InvalidArgument("message role must be a non-empty str")
    check_json_value(message.role, what="message role")  # no lone surrogates (G-5)
    if not isinstance(message.content, tuple | list):
        raise InvalidArgument("message content must be a sequence of parts")
    for index, part in enumerate(message.content):
        _check_part(part, index)
    if message.created_at is not None:
        check_timestamp(message.created_at, what="message created_at")
    if message.id is not None:
        check_id(message.id, what="message id")
    check_json_object(message.metadata, what="message metadata")
    return message


def _check_part(part: object, index: int) -> None:
    what = f"content part {index}"
    obj = check_json_object(part, what=what)
    kind = obj.get("type")
    if not isinstance(kind, str) or not kind:
        raise InvalidArgument(f"{what} needs a non-empty str 'type'")
    if kind == "text" and not isinstance(obj.get("text"), str):
        raise InvalidArgument(f"{what} of type 'text' needs a str 'text'")


def message_to_json(message: Message) -> JSONObject:
    """The message as a JSON object (G-15); :func:`message_from_json` inverts it exactly."""
    return {
        "role": message.role,
        "content": [dict(part) for part in message.content],
        "created_at": message.created_at,
        "id": message.id,
        "metadata": dict(message.metadata),
    }


def message_from_json(obj: object) -> Message:
    """Rebuild a :class:`Message` from :func:`message_to_json`; InvalidArgument if malformed."""
    if not isinstance(obj, dict):
        raise InvalidArgument("a message must be a JSON object")
    unknown = set(obj) - {"role", "content", "created_at", "id", "metadata"}
    if unknown:
        raise InvalidArgument(f"unknown message fields: {sorted(unknown)}")
    content = obj.get("content", [])
    if not isinstance(content, list):
        raise InvalidArgument("message content must be a list")
    message = Message(
        role=obj.get("role"),  # type: ignore[arg-type]  # checked below
        content=tuple(content),
        created_at=obj.get("created_at"),
        id=obj.get("id"),
        metadata=obj.get("metadata", {}),
    )
    return check_message(message)


def text_of(message: Message, *, kinds: Sequence[str] = ("text",)) -> str:
    """The message's searchable text: its parts of the given types joined by newlines."""
    return "\n".join(
        str(part.get("text", "")) for part in message.content if part.get("type") in kinds
    )
