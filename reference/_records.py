"""Building the spec's frozen records quickly, for the SQLite and Redis stores' hot paths.

A frozen dataclass's generated ``__init__`` sets each field through ``object.__setattr__``, and
``message_from_json`` checks every message again as it builds it. A read of the newest 20 events
or messages builds 60 such records, which cost more than the SQL. Here:

* :func:`assemble` fills an instance's ``__dict__`` at once, which gives an equal object (same
  fields, equality, hash and repr) several times faster; it does so only for classes where
  that is exactly what ``__init__`` would do.
* :func:`decode_message` rebuilds a message from the text a store wrote with
  ``message_to_json`` (checked before it was written), checking its shape only: a damaged row
  is ``StorageUnavailable``, as with ``message_from_json``, but the values are not checked
  again; :func:`message_from_stored` does the same for the object parsed from such text (a
  part of a larger stored record).
* :func:`build` and :func:`revise` are :func:`assemble` with keyword fields, and
  ``dataclasses.replace`` the same way.
* :func:`scan_all` parses the stored texts of a read in one scan.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

from agentstores.spec.errors import StorageUnavailable
from agentstores.spec.messages import Message
from agentstores.spec.values import JSONValue

__all__ = [
    "assemble",
    "build",
    "decode_message",
    "encode_json",
    "is_plain",
    "message_from_stored",
    "record_maker",
    "revise",
    "scan_all",
    "scan_json",
]

T = TypeVar("T")

#: Per class: whether its instances may be filled through ``__dict__``.
_PLAIN: dict[type[Any], bool] = {}


def _plain(cls: type[Any]) -> bool:
    """A frozen dataclass that keeps its fields in ``__dict__`` and whose ``__init__`` does
    nothing else: no ``__slots__``, no ``__post_init__``, every field set by ``__init__``."""
    if not dataclasses.is_dataclass(cls) or not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        return False
    if "__slots__" in vars(cls) or hasattr(cls, "__post_init__"):
        return False
    return all(field.init for field in dataclasses.fields(cls))


def assemble(cls: type[T], fields: dict[str, Any]) -> T:
    """``cls(**fields)`` for a fresh dict of every field of ``cls``: the dict becomes the
    instance's ``__dict__`` when ``cls`` is a plain frozen dataclass (see the module
    docstring); other classes are constructed."""
    plain = _PLAIN.get(cls)
    if plain is None:
        plain = _PLAIN[cls] = _plain(cls)
    if not plain:
        return cls(**fields)
    obj = object.__new__(cls)
    object.__setattr__(obj, "__dict__", fields)
    return obj


def build(cls: type[T], /, **fields: Any) -> T:
    """``cls(**fields)``, given every field of ``cls``: :func:`assemble` with keywords."""
    return assemble(cls, fields)


def revise(record: T, /, **changes: Any) -> T:
    """``dataclasses.replace(record, **changes)``, the same way as :func:`assemble`."""
    cls = type(record)
    plain = _PLAIN.get(cls)
    if plain is None:
        plain = _PLAIN[cls] = _plain(cls)
    if not plain:
        return dataclasses.replace(record, **changes)  # type: ignore[type-var]
    return assemble(cls, {**record.__dict__, **changes})


def is_plain(*classes: type[Any]) -> bool:
    """Whether :func:`assemble` fills instances of every one of ``classes`` through their
    ``__dict__`` (plain frozen dataclasses), for code that does so itself."""
    return all(_plain(cls) for cls in classes)


def record_maker(*classes: type[Any]) -> Callable[[type[T], dict[str, Any]], T]:
    """:func:`assemble`, as fast as it gets when every one of ``classes`` is plain (the check
    is made here, once): for code that builds many records of those classes."""
    if not all(_plain(cls) for cls in classes):
        return assemble
    new, set_dict = object.__new__, object.__setattr__

    def make(cls: type[T], fields: dict[str, Any]) -> T:
        obj = new(cls)
        set_dict(obj, "__dict__", fields)
        return obj

    return make


#: :func:`agentstores.spec.values.dump_json` with its encoder made once: the same text, without
#: building an encoder per call (which costs as much as encoding a small value).
encode_json: Callable[[JSONValue], str] = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":")
).encode

#: JSON's C scanner, without ``json.loads``' whitespace handling (stored text has none):
#: ``scan_json(text, 0)`` is ``(value, end)``; StopIteration if ``text`` is not JSON there.
scan_json: Callable[[str, int], tuple[Any, int]] = cast(Any, json.decoder.JSONDecoder()).scan_once


def scan_all(texts: Sequence[str]) -> list[Any] | None:
    """The JSON values of ``texts``, parsed in one scan of them joined as one array (a read of
    many small stored texts pays the scanner's per-call cost once, not once a text), or None
    if that does not give exactly one value per text: some text is damaged, and the caller
    parses them one by one to say which.

    Texts damaged so that neighbours make up for each other (one holding two values where
    the next two hold the halves of one) could still come to the right count; the caller
    checks the shape of every value, so what it returns is well formed even then.
    """
    if not texts:
        return []
    try:
        joined = "[" + ",".join(texts) + "]"  # TypeError if a row holds no text
        values, end = scan_json(joined, 0)
    except (StopIteration, ValueError, TypeError):
        return None
    if end != len(joined) or len(values) != len(texts):
        return None
    return cast("list[Any]", values)


_MESSAGE_KEYS = frozenset(("role", "content", "created_at", "id", "metadata"))
_make_message = record_maker(Message)


def decode_message(text: str) -> Message:
    """The message whose ``message_to_json`` form is ``text``, in fresh objects;
    StorageUnavailable if ``text`` is not JSON of that shape (a damaged row)."""
    try:
        try:
            obj, end = scan_json(text, 0)
        except StopIteration as exc:
            raise ValueError(f"not JSON at {exc.value}") from None
        if end != len(text):
            raise TypeError("not one JSON object")
        return message_from_stored(obj)
    except (ValueError, TypeError) as exc:
        raise StorageUnavailable(f"corrupt stored message: {exc}") from exc


def message_from_stored(obj: Any) -> Message:
    """The message of a parsed ``message_to_json`` object (parsed afresh: its containers
    become the message's); TypeError if it is not of that shape. The values are not checked
    again: they were checked before they were written."""
    if type(obj) is not dict:
        raise TypeError("a message is not a JSON object")
    parts = obj.get("content", [])
    metadata = obj.get("metadata", {})
    if type(parts) is not list or type(metadata) is not dict:
        raise TypeError("message parts are not a list or its metadata is not an object")
    if not obj.keys() <= _MESSAGE_KEYS or "role" not in obj:
        raise TypeError("unknown or missing message fields")
    return _make_message(
        Message,
        {
            "role": obj["role"],
            "content": tuple(parts),
            "created_at": obj.get("created_at"),
            "id": obj.get("id"),
            "metadata": metadata,
        },
    )
