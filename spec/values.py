"""Value rules shared by every family: identifiers, JSON values, time (G-1 .. G-9).

These functions are the executable form of the rules in ``general.md``. Reference backends
call them before writing anything, so that bad input raises :class:`InvalidArgument` and
leaves storage untouched; third-party backends are free to use them too.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

from .errors import InvalidArgument

__all__ = [
    "MAX_ID_LENGTH",
    "MAX_INT_BITS",
    "MAX_JSON_DEPTH",
    "MAX_U64",
    "Clock",
    "JSONObject",
    "JSONValue",
    "check_id",
    "check_json_object",
    "check_json_value",
    "check_limit_offset",
    "check_non_negative_int",
    "check_timestamp",
    "dump_json",
    "load_json",
    "system_clock",
]

#: A JSON value as Python holds it: None, bool, int, float, str, list, dict with str keys.
JSONValue: TypeAlias = Any
#: A JSON object (str keys, JSON values).
JSONObject: TypeAlias = dict[str, Any]

#: G-1: an identifier has 1 to MAX_ID_LENGTH code points.
MAX_ID_LENGTH = 256
#: G-4: integers in stored values have at most this many bits (sign aside).
MAX_INT_BITS = 4096
#: G-4: stored values nest at most this deep (a scalar has depth 0).
MAX_JSON_DEPTH = 64
#: Counters and revisions are unsigned 64-bit, as in the seeds.
MAX_U64 = 2**64 - 1

#: G-6: a clock returns integer milliseconds since the Unix epoch, UTC.
Clock: TypeAlias = Callable[[], int]


def system_clock() -> int:
    """The wall clock in integer milliseconds since the Unix epoch (G-6)."""
    return time.time_ns() // 1_000_000


def _is_valid_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates cannot be stored by any engine
        return False
    return True


def check_id(value: object, *, what: str = "id") -> str:
    """Return ``value`` if it is in the identifier domain (G-1), else raise InvalidArgument.

    The domain: a ``str`` of 1 to :data:`MAX_ID_LENGTH` code points, without NUL and
    without lone surrogates. Everything else (``/``, ``..``, ``:``, spaces, any script) is
    allowed and must be stored faithfully and in isolation (G-2).
    """
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be a str, not {type(value).__name__}")
    if not value:
        raise InvalidArgument(f"{what} must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidArgument(f"{what} is longer than {MAX_ID_LENGTH} code points")
    if "\x00" in value:
        raise InvalidArgument(f"{what} must not contain NUL")
    if not _is_valid_text(value):
        raise InvalidArgument(f"{what} contains a lone surrogate")
    return value


def check_json_value(value: object, *, what: str = "value") -> JSONValue:
    """Return ``value`` if it is in the JSON value domain (G-4, G-5), else raise InvalidArgument.

    Allowed: None, bool, int (at most :data:`MAX_INT_BITS` bits), finite float, str (valid
    Unicode), list, and dict with str keys, nested at most :data:`MAX_JSON_DEPTH` deep. Tuples,
    sets, bytes, NaN, infinities and other objects are rejected: they would not come back as
    they went in.
    """
    _check_json(value, what, 0)
    return value


def _check_json(value: object, what: str, depth: int) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if value.bit_length() > MAX_INT_BITS:
            raise InvalidArgument(f"{what}: integer wider than {MAX_INT_BITS} bits")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidArgument(f"{what}: {value!r} is not a JSON number")
        return
    if isinstance(value, str):
        if not _is_valid_text(value):
            raise InvalidArgument(f"{what}: string contains a lone surrogate")
        return
    if depth >= MAX_JSON_DEPTH:
        raise InvalidArgument(f"{what}: nested deeper than {MAX_JSON_DEPTH}")
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check_json(item, f"{what}[{index}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidArgument(f"{what}: object key {key!r} is not a str")
            if not _is_valid_text(key):
                raise InvalidArgument(f"{what}: object key contains a lone surrogate")
            _check_json(item, f"{what}[{key!r}]", depth + 1)
        return
    raise InvalidArgument(f"{what}: {type(value).__name__} is not a JSON value")


def check_json_object(value: object, *, what: str = "value") -> JSONObject:
    """Return ``value`` if it is a JSON object (a dict) in the JSON value domain."""
    if not isinstance(value, Mapping) or not isinstance(value, dict):
        raise InvalidArgument(f"{what} must be a dict, not {type(value).__name__}")
    check_json_value(value, what=what)
    return value


def check_non_negative_int(value: object, *, what: str, maximum: int = MAX_U64) -> int:
    """Return ``value`` if it is an int (not a bool) in ``0 .. maximum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{what} must be an int, not {type(value).__name__}")
    if value < 0 or value > maximum:
        raise InvalidArgument(f"{what} must be between 0 and {maximum}")
    return value


def check_timestamp(value: object, *, what: str = "timestamp") -> int:
    """Return ``value`` if it is a time in the spec's convention (G-6): ms since the epoch."""
    return check_non_negative_int(value, what=what, maximum=2**63 - 1)


def check_limit_offset(limit: object, offset: object) -> tuple[int, int]:
    """Validate a page request: both non-negative ints (G-8)."""
    return (
        check_non_negative_int(limit, what="limit", maximum=2**63 - 1),
        check_non_negative_int(offset, what="offset", maximum=2**63 - 1),
    )


def dump_json(value: JSONValue) -> str:
    """Serialise a checked JSON value compactly and exactly (``-0.0`` and big ints survive)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def load_json(text: str | bytes) -> JSONValue:
    """Parse what :func:`dump_json` wrote."""
    return json.loads(text)
