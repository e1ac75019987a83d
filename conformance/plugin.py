"""The pytest plugin (entry point ``pytest11: agentstores``).

It registers the kit's options and markers, tags each suite test with its family and
requirement IDs (as ``user_properties``, so they reach reports, also under xdist), and writes a
report when asked. It imports no backend until a test needs one.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING

import hypothesis
import pytest

from .backend import Backend, BackendLoadError, Family, load_backend
from .harness import LifespanRegistry, iter_markers_args
from .markers import CAPABILITY_MARKER, REQUIREMENT_MARKER
from .profiles import Profile, default_profile, profile_settings

if TYPE_CHECKING:
    from .collector import ReportCollector

__all__ = [
    "backend_from_config",
    "configured_backend",
    "lifespans",
    "settings_from_config",
    "use_backend",
]

FAMILY_PROPERTY = "agentstores_family"
REQUIREMENTS_PROPERTY = "agentstores_requirements"
CAPABILITIES_PROPERTY = "agentstores_capabilities"
#: JSON ``{"name", "description", "families", "capabilities"}`` of the backend a test ran on.
BACKEND_PROPERTY = "agentstores_backend"

_backend_key = pytest.StashKey[Backend]()
_lifespans_key = pytest.StashKey[LifespanRegistry]()
_collector_key: pytest.StashKey[ReportCollector] = pytest.StashKey()


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    # Suite assertions compare a store's results with the model: let pytest explain a failing
    # one. Marked here, not at import, since the runner imports this module before pytest runs.
    pluginmanager.rewrite_hook.mark_rewrite("agentstores.conformance.suites")
    group = parser.getgroup("agentstores", "agentstores conformance kit")
    group.addoption(
        "--agentstores-backend",
        metavar="NAME|module:attr",
        help="backend for suites whose test module defines no 'backend' fixture",
    )
    group.addoption(
        "--agentstores-profile",
        choices=[p.value for p in Profile],
        help="hypothesis profile of the kit's tests (default: ci if $CI is set, else dev)",
    )
    group.addoption("--agentstores-report", metavar="PATH.json", help="write a JSON report")
    group.addoption("--agentstores-markdown", metavar="PATH.md", help="write a Markdown report")
    group.addoption(
        "--agentstores-requirement",
        action="append",
        default=[],
        metavar="ID",
        help="run only the suite tests that cite this requirement ID (repeatable)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{REQUIREMENT_MARKER}(*ids): requirement IDs of spec/*.md a test verifies"
    )
    config.addinivalue_line(
        "markers", f"{CAPABILITY_MARKER}(capability): run only if the backend claims it"
    )
    registry = LifespanRegistry()
    config.stash[_lifespans_key] = registry
    config.add_cleanup(registry.close)
    json_path = config.getoption("--agentstores-report", None)
    markdown_path = config.getoption("--agentstores-markdown", None)
    if (json_path or markdown_path) and not hasattr(config, "workerinput"):
        from .collector import ReportCollector

        collector = ReportCollector(
            json_path=Path(json_path) if json_path else None,
            markdown_path=Path(markdown_path) if markdown_path else None,
            profile=chosen_profile(config),
        )
        config.stash[_collector_key] = collector
        config.pluginmanager.register(collector, "agentstores-report")


def pytest_itemcollected(item: pytest.Item) -> None:
    family = getattr(getattr(item, "cls", None), "family", None)
    if not isinstance(family, Family):
        return
    item.user_properties.append((FAMILY_PROPERTY, family.value))
    ids = list(iter_markers_args(item, REQUIREMENT_MARKER))
    item.user_properties.append((REQUIREMENTS_PROPERTY, ",".join(ids)))
    capabilities = [str(c) for c in iter_markers_args(item, CAPABILITY_MARKER)]
    item.user_properties.append((CAPABILITIES_PROPERTY, ",".join(capabilities)))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = set(config.getoption("--agentstores-requirement", None) or ())
    if not wanted:
        return
    kept: list[pytest.Item] = []
    deselected: list[pytest.Item] = []
    for item in items:
        properties = dict(item.user_properties)
        if FAMILY_PROPERTY not in properties:
            kept.append(item)  # not a suite test: the filter is not about it
            continue
        cited = str(properties.get(REQUIREMENTS_PROPERTY, "")).split(",")
        (kept if wanted.intersection(cited) else deselected).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    # Record which backend the test ran on (the 'backend' fixture is resolved by now, even when
    # the test is then skipped), so that reports name it, also under xdist.
    try:
        return (yield)
    finally:
        funcargs = getattr(item, "funcargs", {})
        backend = funcargs.get("backend")
        if isinstance(backend, Backend) and FAMILY_PROPERTY in dict(item.user_properties):
            info = {
                "name": backend.name,
                "description": backend.description,
                "families": sorted(f.value for f in backend.families),
                "capabilities": sorted(c.value for c in backend.capabilities),
            }
            item.user_properties.append((BACKEND_PROPERTY, json.dumps(info)))


def chosen_profile(config: pytest.Config) -> Profile:
    """The profile named by ``--agentstores-profile``, else :func:`default_profile`."""
    name = config.getoption("--agentstores-profile", None)
    return Profile(name) if name else default_profile()


def settings_from_config(config: pytest.Config) -> hypothesis.settings:
    """The hypothesis settings of this run's profile."""
    return profile_settings(chosen_profile(config))


def backend_from_config(config: pytest.Config) -> Backend:
    """The backend named by ``--agentstores-backend``, loaded once per run."""
    if _backend_key in config.stash:
        return config.stash[_backend_key]
    spec = config.getoption("--agentstores-backend", None)
    if not spec:
        pytest.fail(
            "no backend to test: define a 'backend' fixture in your suite subclass, "
            "or run pytest with --agentstores-backend NAME (or module:attr)",
            pytrace=False,
        )
    try:
        backend = load_backend(spec)
    except BackendLoadError as exc:
        raise pytest.UsageError(str(exc)) from exc
    config.stash[_backend_key] = backend
    return backend


def use_backend(config: pytest.Config, backend: Backend) -> None:
    """Make ``backend`` the one :func:`backend_from_config` returns (the runner's way in)."""
    config.stash[_backend_key] = backend


def configured_backend(config: pytest.Config) -> Backend | None:
    """The backend of ``--agentstores-backend`` or :func:`use_backend`, if one was loaded."""
    return config.stash.get(_backend_key, None)


def lifespans(config: pytest.Config) -> LifespanRegistry:
    """The registry that keeps backends' lifespans entered for the whole run."""
    return config.stash[_lifespans_key]
