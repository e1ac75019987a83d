"""Requirement IDs read from the spec documents (``spec/general.md``, ``spec/<family>.md``).

A requirement is a Markdown bullet that starts with its bold ID (``- **TR-3** ...``); its
indented continuation lines belong to it. Reports list each family's requirements from here,
and the kit's traceability tests check the suites against the same lists.
"""

from __future__ import annotations

import importlib.resources
import re

from .backend import Family

__all__ = [
    "all_requirements",
    "general_requirements",
    "parse_requirements",
    "requirement_sort_key",
    "spec_requirements",
]

_BULLET = re.compile(r"^- \*\*([A-Z]{1,3}-\d+)\*\*\s*(.*)$")
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")
_ABBREVIATIONS = ("e.g", "i.e", "etc", "cf", "vs")


def _first_sentence(text: str) -> str:
    for match in _SENTENCE_END.finditer(text):
        before = text[: match.start()]
        if before.count("`") % 2:  # inside a code span
            continue
        if before.rstrip().lower().endswith(_ABBREVIATIONS):
            continue
        return text[: match.end()]
    return text


def parse_requirements(markdown: str) -> dict[str, str]:
    """Requirement IDs of a spec document (bullets ``- **XX-n** text``) and their first sentence.

    A bullet's continuation lines are the indented lines that follow it.
    """
    found: dict[str, str] = {}
    current: str | None = None
    parts: list[str] = []

    def flush() -> None:
        if current is not None:
            found[current] = _first_sentence(" ".join(parts).strip())

    for line in markdown.splitlines():
        match = _BULLET.match(line)
        if match:
            flush()
            current, parts = match.group(1), [match.group(2)]
        elif current is not None and line[:1].isspace() and line.strip():
            parts.append(line.strip())
        else:
            flush()
            current, parts = None, []
    flush()
    return found


def _spec_document(name: str) -> str:
    resource = importlib.resources.files("agentstores.spec").joinpath(f"{name}.md")
    if not resource.is_file():
        raise FileNotFoundError(f"agentstores.spec has no document {name}.md (spec/{name}.md)")
    return resource.read_text(encoding="utf-8")


def spec_requirements(family: Family | str) -> dict[str, str]:
    """The requirement IDs of ``spec/<family>.md`` in document order, each with its first sentence.

    Raises FileNotFoundError if the family has no spec document yet.
    """
    return parse_requirements(_spec_document(Family(family).value))


def general_requirements() -> dict[str, str]:
    """The ``G-`` requirement IDs of ``spec/general.md``, each with its first sentence."""
    return parse_requirements(_spec_document("general"))


def all_requirements() -> dict[str, str]:
    """Every requirement ID of ``general.md`` and of the family documents that exist."""
    found = general_requirements()
    for family in Family:
        try:
            found.update(spec_requirements(family))
        except FileNotFoundError:
            continue
    return found


def requirement_sort_key(requirement_id: str) -> tuple[str, int]:
    """Sort key of a requirement ID: its prefix, then its number (``TR-2`` before ``TR-10``)."""
    prefix, _, number = requirement_id.partition("-")
    return (prefix, int(number)) if number.isdigit() else (requirement_id, 0)
