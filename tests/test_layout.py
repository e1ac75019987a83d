"""The kit's shape: every family has its pieces in every layer, and public fronts are honest."""

from __future__ import annotations

import importlib
import importlib.resources
import importlib.util

import pytest

from agentstores.conformance.backend import Family, load_backend
from agentstores.conformance.suites.base import SuiteBase

ENGINES = {"json": "jsonfile", "sqlite": "sqlite", "redis": "redis"}


def has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def specified_families() -> list[Family]:
    return [f for f in Family if has_module(f"agentstores.spec.{f.value}")]


def test_at_least_one_family_is_specified() -> None:
    assert Family.THREAD_RUN in specified_families()


@pytest.mark.parametrize("family", specified_families(), ids=str)
def test_family_has_every_layer(family: Family) -> None:
    """A specified family has its document, model, suite, and a module in every engine."""
    doc = importlib.resources.files("agentstores.spec").joinpath(f"{family.value}.md")
    assert doc.is_file(), f"spec/{family.value}.md is missing"
    assert has_module(f"agentstores.conformance.models.{family.value}")
    suite_module = importlib.import_module(f"agentstores.conformance.suites.{family.value}")
    suites = [
        obj
        for obj in vars(suite_module).values()
        if isinstance(obj, type)
        and issubclass(obj, SuiteBase)
        and obj is not SuiteBase
        and getattr(obj, "family", None) is family
    ]
    assert suites, f"conformance/suites/{family.value}.py defines no suite for {family}"
    for engine_name, package in ENGINES.items():
        assert has_module(f"agentstores.reference.{package}.{family.value}"), (
            f"reference/{package}/{family.value}.py is missing"
        )
        if engine_name == "redis" and not has_module("redis"):
            continue
        assert family in load_backend(engine_name).families, f"{engine_name} does not open {family}"


@pytest.mark.parametrize(
    "module",
    [
        "agentstores.spec",
        "agentstores.spec.errors",
        "agentstores.spec.values",
        "agentstores.spec.messages",
        "agentstores.conformance",
        "agentstores.conformance.strategies",
        "agentstores.conformance.suites",
        *[f"agentstores.spec.{f.value}" for f in specified_families()],
    ],
)
def test_public_front_lists_only_real_names(module: str) -> None:
    """Every name in ``__all__`` exists (ruff's RUF022 keeps the list sorted)."""
    mod = importlib.import_module(module)
    names = list(mod.__all__)
    assert len(names) == len(set(names)), f"{module}.__all__ lists a name twice"
    for name in names:
        assert hasattr(mod, name), f"{module}.__all__ names {name!r}, which does not exist"


def test_reference_import_does_not_pull_in_test_tooling() -> None:
    """Production code imports the sqlite reference without pytest or hypothesis."""
    import subprocess
    import sys

    code = (
        "import sys; import agentstores.reference.sqlite; "
        "bad = [m for m in ('pytest', 'hypothesis') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
