"""The family suites: subclass one in a test module and give it a ``backend`` fixture."""

from .base import SuiteBase

__all__ = ["SuiteBase"]
