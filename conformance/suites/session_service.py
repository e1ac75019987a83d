"""The session-service suite (``spec/session_service.md``): subclass it and give a backend.

::

    class TestMine(SessionServiceSuite):
        @pytest.fixture
        def backend(self) -> Backend:
            return MY_BACKEND

The tests are spread over a few modules by topic; this class gathers them, in the order
pytest runs them (readable examples first, the state machine last):

* :mod:`._session_service_sessions`: sessions (SV-1 .. SV-6) and scoped state (SV-7 .. SV-11);
* :mod:`._session_service_events`: events, order, filters, optimistic concurrency
  (SV-12 .. SV-18, SV-28);
* :mod:`._session_service_search`: history search (SV-19 .. SV-25);
* :mod:`._session_service_robust`: isolation, bad input, durability (SV-26, SV-27, SV-29);
* here: the state machine against :mod:`agentstores.conformance.models.session_service`
  (:mod:`._session_service_machine`).
"""

from __future__ import annotations

from typing import Any, ClassVar

from hypothesis.stateful import run_state_machine_as_test

from ..backend import Family
from ..harness import Harness
from ..markers import requirement
from ._session_service_events import SessionServiceEventTests
from ._session_service_faults import SessionServiceFaultTests
from ._session_service_machine import machine_for
from ._session_service_robust import SessionServiceRobustnessTests
from ._session_service_search import SessionServiceSearchTests
from ._session_service_sessions import SessionServiceSessionTests
from .base import SuiteBase
from .engine_faults import EngineFaultTests

__all__ = ["SessionServiceSuite"]

H = Harness[Any]


class SessionServiceSuite(
    SessionServiceFaultTests,
    EngineFaultTests,
    SessionServiceRobustnessTests,
    SessionServiceSearchTests,
    SessionServiceEventTests,
    SessionServiceSessionTests,
    SuiteBase,
):
    """Every requirement of ``session_service.md`` (and the G- rules it relies on).

    pytest collects inherited tests base class first (reverse MRO), so the bases are listed
    last-run first: a broken backend fails a short example before the state machine.
    """

    family: ClassVar[Family] = Family.SESSION_SERVICE

    @requirement(
        "SV-1", "SV-3", "SV-4", "SV-5", "SV-6", "SV-8", "SV-9", "SV-10", "SV-11", "SV-13",
        "SV-15", "SV-16", "SV-17", "SV-18", "SV-19", "SV-22", "SV-24", "SV-26", "G-2",
    )  # fmt: skip
    def test_state_machine_matches_the_model(self, harness: H) -> None:
        """SV-1 .. SV-26, G-2: random operation sequences on two store objects agree with the
        model, over tenants whose names collide when joined naively."""
        run_state_machine_as_test(machine_for(harness), settings=harness.settings)
