"""The state-session suite fails every broken backend, naming the violated requirement."""

from __future__ import annotations

import pytest

from agentstores.conformance.backend import Family
from agentstores.conformance.runner import run_suites

from .broken.state_session import BROKEN
from .conftest import require_redis

pytestmark = pytest.mark.usefixtures("no_shrinking")


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_suite_fails_broken_backend(name: str) -> None:
    """Each bug makes the suite fail, and its requirement is among the failed ones."""
    backend, requirement_id = BROKEN[name]
    if backend.lifespan is not None:
        require_redis()
    report = run_suites(
        backend,
        families=[Family.STATE_SESSION],
        requirements=[requirement_id],
        pytest_args=["-x"],
    )
    assert not report.passed, f"the suite passed the broken backend {name!r}"
    failed = report.failed_requirements()
    assert requirement_id in failed, f"{name}: expected {requirement_id} to fail, got {failed}"
