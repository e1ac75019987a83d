"""The engine goes away (``engine_faults``), for every family: one mixin in every family suite.

Each operation of the family's scenario (:mod:`agentstores.conformance.engine_fault_scenarios`)
is one test, run by :func:`~agentstores.conformance.engine_fault_check.check_engine_faults` with
the engine failing at each call it makes, through the backend's ``fault_injection`` hook; the
family's main compound operation is also run with the engine staying down from that call on.
The ``dev`` and ``ci`` profiles fail a bounded number of calls per operation (spread from the
first to the last), ``thorough`` every one.

The tests are parametrised per family by :meth:`EngineFaultTests.pytest_generate_tests`; a
suite subclass that defines its own ``pytest_generate_tests`` should call this one too.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from ..backend import Capability, Family
from ..engine_fault_check import FaultCase, check_engine_faults, fault_cases
from ..harness import Harness
from ..markers import needs, requirement

__all__ = ["EngineFaultTests"]

#: The parameter of the engine-fault test: a :class:`FaultCase` of the suite's family.
CASE = "engine_fault_case"


class EngineFaultTests:
    """The engine failing at each call of each operation (G-11, G-17, G-23)."""

    family: ClassVar[Family]

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if CASE in metafunc.fixturenames:
            cases = fault_cases(self.family)
            metafunc.parametrize(CASE, cases, ids=[case.id for case in cases])

    @needs(Capability.ENGINE_FAULTS)
    @requirement("G-11", "G-17", "G-23")
    def test_engine_failing_at_each_call(
        self, harness: Harness[Any], engine_fault_case: FaultCase
    ) -> None:
        """G-11, G-17, G-23: for each engine call the operation makes, fail that call (``once``)
        or that and every later one (``from-then-on``): the caller gets StorageUnavailable (or
        success, if the store could do without the call), never a driver's exception; the
        state is the one before or after the whole operation; the same store object works
        again once the engine does; and a store opened again agrees (``durable``)."""
        check_engine_faults(harness, engine_fault_case)
