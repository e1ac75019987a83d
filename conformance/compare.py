"""Strict equality for stored values: tells ``-0.0`` from ``0.0``, ``True`` from ``1`` and
``1.0`` from ``1`` (G-4), which ``==`` does not, also inside records (dataclasses)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

__all__ = ["same_json", "same_value"]


def same_json(a: Any, b: Any) -> bool:
    """Whether two JSON values are identical in the sense of G-4."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    return bool(a == b)


def same_value(a: Any, b: Any) -> bool:
    """:func:`same_json`, extended field by field to dataclass records and their containers."""
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        if type(a) is not type(b):
            return False
        return all(
            same_value(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a)
        )
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return (
            type(a) is type(b)
            and len(a) == len(b)
            and all(same_value(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    return same_json(a, b)
