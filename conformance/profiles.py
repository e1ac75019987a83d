"""Hypothesis profiles of the kit: ``dev`` (fast), ``ci`` (derandomised), ``thorough``.

They apply to the kit's own property and state-machine tests only, through
:func:`profile_settings`, so a project that installs agentstores keeps its own hypothesis
profile for everything else.
"""

from __future__ import annotations

import os
from enum import StrEnum

from hypothesis import HealthCheck, settings

__all__ = ["Profile", "default_profile", "profile_settings"]


class Profile(StrEnum):
    """How hard hypothesis tries."""

    DEV = "dev"
    """Few examples, random seeds: quick feedback while developing a backend."""
    CI = "ci"
    """Derandomised (the same examples every run) and printing reproduction blobs."""
    THOROUGH = "thorough"
    """Thousands of examples and longer state-machine runs, for release validation."""


_SUPPRESSED = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]


def profile_settings(profile: Profile) -> settings:
    """The hypothesis settings of ``profile`` (no deadline: storage latency varies)."""
    if profile is Profile.DEV:
        return settings(
            max_examples=25,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=_SUPPRESSED,
            print_blob=True,
            report_multiple_bugs=False,
        )
    if profile is Profile.CI:
        return settings(
            max_examples=40,
            stateful_step_count=30,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=_SUPPRESSED,
            print_blob=True,
            report_multiple_bugs=False,
        )
    return settings(
        max_examples=2000,
        stateful_step_count=100,
        deadline=None,
        suppress_health_check=_SUPPRESSED,
        print_blob=True,
    )


def default_profile() -> Profile:
    """``ci`` when the ``CI`` environment variable is set (as CI services do), else ``dev``."""
    value = os.environ.get("CI", "").strip().lower()
    return Profile.CI if value not in ("", "0", "false", "no") else Profile.DEV
