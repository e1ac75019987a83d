"""The pytest plugin (entry point ``pytest11: agentstores``).

It registers the kit's options and markers, tags each suite test with its family and
requirement IDs (as ``user_properties``, so they reach reports, also under xdist), and writes a
report when asked. It imports no backend until a test needs one.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import hypothesis
import pytest

from .backend import Backend, BackendLoadError, Family, load_backend
from .harness import LifespanRegistry, iter_markers_args
from .markers import CAPABILITY_MARKER, REQUIREMENT_MARKER
from .profiles import Profile, default_profile, profile_settings

if TYPE_CHECKING:
    from .report import ReportCollector

__all__ = ["backend_from_config", "lifespans", "settings_from_config"]

FAMILY_PROPERTY = "agentstores_family"
REQUIREMENTS_PROPERTY = "agentstores_requirements"
CAPABILITIES_PROPERTY = "agentstores_capabilities"

_backend_key = pytest.StashKey[Backend]()
_lifespans_key = pytest.StashKey[LifespanRegistry]()
_collector_key = pytest.StashKey["ReportCollector"]()


def pytest_addoption(parser: pytest.Parser) -> None:
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
        from .report import ReportCollector

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


def lifespans(config: pytest.Config) -> LifespanRegistry:
    """The registry that keeps backends' lifespans entered for the whole run."""
    return config.stash[_lifespans_key]
