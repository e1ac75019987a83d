"""Markers that tie suite tests to the spec: requirement IDs and capabilities."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from .backend import Capability

__all__ = [
    "CAPABILITY_MARKER",
    "NOT_CLAIMED_PREFIX",
    "REQUIREMENT_ID",
    "REQUIREMENT_MARKER",
    "needs",
    "requirement",
]

REQUIREMENT_MARKER = "agentstores_requirement"
CAPABILITY_MARKER = "agentstores_capability"
#: Skip reasons of tests whose capability or family a backend does not claim start with this.
NOT_CLAIMED_PREFIX = "not claimed: "
#: The form of a requirement ID: a family prefix, a dash, a number (``G-3``, ``TR-12``).
REQUIREMENT_ID = re.compile(r"^[A-Z]{1,3}-\d+$")

F = TypeVar("F", bound=Callable[..., Any])


def requirement(*ids: str) -> Callable[[F], F]:
    """Tag a test with the requirement IDs it verifies (each must exist in ``spec/*.md``)."""
    for requirement_id in ids:
        if not REQUIREMENT_ID.match(requirement_id):
            raise ValueError(f"{requirement_id!r} is not a requirement ID like 'TR-3'")
    if not ids:
        raise ValueError("requirement() needs at least one ID")
    mark: Callable[[F], F] = getattr(pytest.mark, REQUIREMENT_MARKER)(*ids)
    return mark


def needs(capability: Capability) -> Callable[[F], F]:
    """Run a test only for backends that claim ``capability``; otherwise it is "not claimed"."""
    if not isinstance(capability, Capability):
        raise TypeError(f"needs() takes a Capability, not {capability!r}")
    mark: Callable[[F], F] = getattr(pytest.mark, CAPABILITY_MARKER)(capability)
    return mark
