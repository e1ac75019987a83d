"""The thread/run suite fails every broken backend, naming a violated requirement."""

from __future__ import annotations

import pytest

from agentstores.conformance.backend import Family
from agentstores.conformance.runner import run_suites

from .broken.thread_run import BROKEN

pytestmark = pytest.mark.usefixtures("no_shrinking")


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_suite_fails_broken_backend(name: str) -> None:
    """Each bug makes the suite fail, and one of its requirements is among the failed ones."""
    backend, expected = BROKEN[name]
    report = run_suites(
        backend, families=[Family.THREAD_RUN], requirements=sorted(expected), pytest_args=["-x"]
    )
    assert not report.passed, f"the suite passed the broken backend {name!r}"
    failed = report.failed_requirements()
    assert failed & expected, f"{name}: expected one of {sorted(expected)} to fail, got {failed}"
