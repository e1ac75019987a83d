"""The thread/run conformance suite (``spec/thread_run.md``): subclass :class:`ThreadRunSuite`
in a test module and give it a ``backend`` fixture.

The suite is assembled from mixins, one module each (``thread_run_*.py``):

* ``thread_run_threads``: threads and their messages (TR-1 .. TR-10, G-4, G-7, G-8);
* ``thread_run_runs``: run records, latest run, listing and paging (TR-11 .. TR-17);
* ``thread_run_checkpoint``: checkpoints, transitions, atomicity on failure (TR-18 .. TR-21);
* ``thread_run_isolation``: adversarial and invalid ids and values, namespaces, error kinds,
  close (G-1 .. G-3, G-5, G-10, G-16, G-19);
* ``thread_run_machine``: random operation sequences against the executable model
  (:mod:`agentstores.conformance.models.thread_run`);
* ``thread_run_concurrency``: durability (``durable``) and concurrency (TR-19, TR-22, TR-23,
  G-17, G-18);
* ``thread_run_faults``: kills (``crash_safe``) and several processes (``multi_process``)
  (G-20, G-21).
* ``engine_faults`` (shared by every family): the engine failing at each call of an operation
  (``engine_faults``; G-11, G-17, G-23).

``thread_run_support`` holds what they share: strategies, builders, exact comparison and
whole-store snapshots. A backend's test module needs nothing but::

    class TestMine(ThreadRunSuite):
        @pytest.fixture
        def backend(self) -> Backend:
            return MY_BACKEND

The suite keeps no state between tests: each test gets a fresh context (directory,
namespace, manual clock) from the ``harness`` fixture; the state machines open a fresh
context per example.
"""

from __future__ import annotations

from typing import ClassVar

from ..backend import Family
from .base import SuiteBase
from .engine_faults import EngineFaultTests
from .thread_run_checkpoint import CheckpointTests
from .thread_run_concurrency import ConcurrencyTests, DurabilityTests
from .thread_run_faults import ThreadRunFaultTests
from .thread_run_isolation import IsolationTests
from .thread_run_machine import MachineTests
from .thread_run_runs import RunTests
from .thread_run_threads import ThreadTests

__all__ = ["ThreadRunSuite"]


class ThreadRunSuite(
    ThreadTests,
    RunTests,
    CheckpointTests,
    IsolationTests,
    MachineTests,
    DurabilityTests,
    ConcurrencyTests,
    ThreadRunFaultTests,
    EngineFaultTests,
    SuiteBase,
):
    """Every test of the thread/run family; needs only the ``backend`` fixture."""

    family: ClassVar[Family] = Family.THREAD_RUN
