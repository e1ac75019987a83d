"""The fault checks fail every broken backend of ``tests/broken/faults.py``, naming G-20 or G-21.

The crash checks run under the ``thorough`` profile: it allows hundreds of kills, and a broken
backend fails at the first kill that lands in its window (usually within a few), so the test
stays quick while a miss becomes practically impossible.
"""

from __future__ import annotations

import pytest

from agentstores.conformance.runner import run_suites

from .broken.faults import BROKEN


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_fault_checks_fail_broken_backend(name: str) -> None:
    """Each bug makes its family's fault check fail with the requirement it breaks."""
    backend, family, expected = BROKEN[name]
    report = run_suites(
        backend,
        families=[family],
        requirements=sorted(expected),
        profile="thorough" if "G-20" in expected else None,
        pytest_args=["-x"],
    )
    assert not report.passed, f"the fault checks passed the broken backend {name!r}"
    failed = report.failed_requirements()
    assert failed & expected, f"{name}: expected one of {sorted(expected)} to fail, got {failed}"
