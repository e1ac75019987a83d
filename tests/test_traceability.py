"""Spec and tests move together: every requirement ID in spec/*.md is cited by a suite test,
every cited ID exists, and each suite test states its IDs in its docstring too."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import agentstores.conformance.suites as suites_package
from agentstores.conformance.backend import Family
from agentstores.conformance.markers import REQUIREMENT_MARKER
from agentstores.conformance.spec_docs import all_requirements, spec_requirements
from agentstores.conformance.suites.base import SuiteBase

_ID_IN_TEXT = re.compile(r"\b([A-Z]{1,3})-(\d+)(?:\s*\.\.\s*\1-(\d+))?\b")
_TESTS_DIR = Path(__file__).parent
_REQUIREMENT_CALL = re.compile(r"@requirement\(([^)]*)\)")
_QUOTED_ID = re.compile(r"[\"']([A-Z]{1,3}-\d+)[\"']")


def ids_in_text(text: str) -> tuple[set[str], set[str]]:
    """IDs named in ``text``: (named one by one, all of them including ``A-1 .. A-5`` ranges)."""
    single: set[str] = set()
    every: set[str] = set()
    for prefix, first, last in _ID_IN_TEXT.findall(text):
        if last:
            every.update(f"{prefix}-{n}" for n in range(int(first), int(last) + 1))
        else:
            single.add(f"{prefix}-{first}")
            every.add(f"{prefix}-{first}")
    return single, every


def suite_classes() -> list[type[SuiteBase]]:
    """Every suite (and suite mixin) class defined in agentstores.conformance.suites."""
    found: dict[str, type[SuiteBase]] = {}
    for info in pkgutil.iter_modules(suites_package.__path__):
        module = importlib.import_module(f"{suites_package.__name__}.{info.name}")
        for obj in vars(module).values():
            if inspect.isclass(obj) and issubclass(obj, SuiteBase) and obj is not SuiteBase:
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return list(found.values())


def suite_tests() -> Iterator[tuple[str, object, list[str]]]:
    """(name, function, cited IDs) of every test method of every suite class."""
    seen: set[int] = set()
    for cls in suite_classes():
        for name, func in inspect.getmembers(cls, inspect.isfunction):
            if not name.startswith("test") or id(func) in seen:
                continue
            seen.add(id(func))
            ids = [
                requirement_id
                for mark in getattr(func, "pytestmark", [])
                if mark.name == REQUIREMENT_MARKER
                for requirement_id in mark.args
            ]
            yield f"{func.__module__}.{func.__qualname__}", func, ids


def kit_test_ids() -> set[str]:
    """IDs cited with @requirement by the kit's own tests (engine-specific fault tests)."""
    found: set[str] = set()
    for path in _TESTS_DIR.rglob("*.py"):
        for call in _REQUIREMENT_CALL.findall(path.read_text(encoding="utf-8")):
            found.update(_QUOTED_ID.findall(call))
    return found


def cited_ids() -> set[str]:
    suites = {requirement_id for _, _, ids in suite_tests() for requirement_id in ids}
    return suites | kit_test_ids()


def test_every_suite_test_cites_requirements() -> None:
    untagged = [name for name, _, ids in suite_tests() if not ids]
    assert not untagged, f"suite tests without @requirement: {untagged}"


def test_docstrings_start_with_the_cited_ids() -> None:
    """A reader of a test sees which requirements it verifies, the same as its marker says."""
    mismatched = []
    for name, func, ids in suite_tests():
        first_line = (inspect.getdoc(func) or "").split("\n", 1)[0]
        head = first_line.split(":", 1)[0]
        single, every = ids_in_text(head)
        if not set(ids) <= every or not single <= set(ids):
            mismatched.append((name, sorted(set(ids) - every), sorted(single - set(ids))))
    assert not mismatched, f"docstring IDs differ from @requirement IDs: {mismatched}"


def test_id_ranges_are_read_from_docstrings() -> None:
    assert ids_in_text("TR-1, TR-4 .. TR-6, G-2") == (
        {"TR-1", "G-2"},
        {"TR-1", "TR-4", "TR-5", "TR-6", "G-2"},
    )


def test_every_cited_id_exists_in_the_spec() -> None:
    unknown = sorted(cited_ids() - set(all_requirements()))
    assert not unknown, f"tests cite IDs that spec/*.md does not define: {unknown}"


@pytest.mark.parametrize("family", list(Family), ids=str)
def test_every_family_requirement_is_cited(family: Family) -> None:
    try:
        documented = set(spec_requirements(family))
    except FileNotFoundError:
        pytest.skip(f"spec/{family.value}.md does not exist yet")
    missing = sorted(documented - cited_ids())
    assert not missing, f"{family.value}: requirements no test cites: {missing}"


def test_every_general_requirement_is_cited() -> None:
    general = {i for i in all_requirements() if i.startswith("G-")}
    missing = sorted(general - cited_ids())
    assert not missing, f"general requirements no test cites: {missing}"
