"""The ``engine_faults`` suite fails every broken backend of ``tests/broken/engine_faults.py``,
naming the requirement it breaks (G-11, G-17 or G-23) and what went wrong."""

from __future__ import annotations

import pytest

from agentstores.conformance.runner import run_suites

from .broken.engine_faults import BROKEN


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_engine_fault_suite_fails_broken_backend(name: str) -> None:
    """Each bug makes the family's engine-fault test fail, with a message that says why."""
    backend, family, expected, fragments = BROKEN[name]
    # G-23 is cited by the engine-fault tests alone: it selects them and nothing else.
    report = run_suites(backend, families=[family], requirements=["G-23"], pytest_args=["-x"])
    assert not report.passed, f"the engine-fault suite passed the broken backend {name!r}"
    assert expected in report.failed_requirements(), report.failed_requirements()
    messages = "\n".join(failure.message for failure in report.failures())
    for fragment in fragments:
        assert fragment in messages, f"{name}: {fragment!r} not in the failure:\n{messages}"
