"""The agentstores conformance kit: plug a backend in, run the suites, read the report.

Names are imported lazily, so that a production import of a reference backend (which needs
only :class:`Backend`) does not pull in pytest and hypothesis.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backend import (
        ENTRY_POINT_GROUP,
        Backend,
        BackendLoadError,
        Capability,
        Family,
        FaultInjector,
        Opener,
        StoreContext,
        load_backend,
        registered_backends,
    )
    from .clock import ManualClock
    from .engine_faults import FaultSwitch
    from .harness import Harness
    from .markers import needs, requirement
    from .profiles import Profile
    from .report import Report
    from .runner import run_suites

_WHERE = {
    "ENTRY_POINT_GROUP": "backend",
    "Backend": "backend",
    "BackendLoadError": "backend",
    "Capability": "backend",
    "Family": "backend",
    "FaultInjector": "backend",
    "FaultSwitch": "engine_faults",
    "Opener": "backend",
    "StoreContext": "backend",
    "load_backend": "backend",
    "registered_backends": "backend",
    "ManualClock": "clock",
    "Harness": "harness",
    "needs": "markers",
    "requirement": "markers",
    "Profile": "profiles",
    "Report": "report",
    "run_suites": "runner",
}

__all__ = [
    "ENTRY_POINT_GROUP",
    "Backend",
    "BackendLoadError",
    "Capability",
    "Family",
    "FaultInjector",
    "FaultSwitch",
    "Harness",
    "ManualClock",
    "Opener",
    "Profile",
    "Report",
    "StoreContext",
    "load_backend",
    "needs",
    "registered_backends",
    "requirement",
    "run_suites",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return __all__
