"""The state-session conformance suite (``spec/state_session.md``): subclass
:class:`StateSessionSuite` in a test module and give it a ``backend`` fixture.

The suite is assembled from mixins, one module each (``state_session_*.py``):

* ``state_session_modules``: ids, module names, saving and loading (ST-1 .. ST-5);
* ``state_session_lists``: bad input, deleting, listing and paging (ST-6, ST-8 .. ST-10);
* ``state_session_isolation``: random operation sequences against the executable model
  (:mod:`agentstores.conformance.models.state_session`), colliding and hostile ids, paths
  that try to escape, namespaces (ST-11, ST-12);
* ``state_session_concurrency``: concurrency on one and two store objects, durability and
  closing (ST-7, ST-13, ST-14);
* ``state_session_ttl``: time to live (capability ``ttl``; ST-15 .. ST-18).

``state_session_support`` holds what they share: recording modules, save and load helpers,
the collision pairs and the state machine.

What the suite asks of a backend's state-session opener, beyond ``SuiteBase``:

* ``StoreContext.options["ttl_seconds"]`` (tests of the ``ttl`` capability only): the store's
  time to live in whole seconds (ST-15 .. ST-18). Contexts without the key open stores
  without TTL. A backend that claims ``ttl`` must raise InvalidArgument from the opener (or
  the store's first call) for a value that is not a positive int.
* Opening a copy of a context that differs only in ``options`` (``dataclasses.replace``)
  reaches the same storage as the original: that is how two handles, one with and one
  without TTL, meet on one session (ST-17).

A backend's test module needs nothing but::

    class TestMine(StateSessionSuite):
        @pytest.fixture
        def backend(self) -> Backend:
            return MY_BACKEND
"""

from __future__ import annotations

from typing import ClassVar

from ..backend import Family
from .base import SuiteBase
from .engine_faults import EngineFaultTests
from .state_session_concurrency import ConcurrencyTests, DurabilityTests
from .state_session_faults import StateSessionFaultTests
from .state_session_isolation import IsolationTests, MachineTests
from .state_session_lists import BadInputTests, ListingTests
from .state_session_modules import ModuleTests
from .state_session_ttl import TTL_OPTION, TtlTests

__all__ = ["TTL_OPTION", "StateSessionSuite"]


class StateSessionSuite(
    ModuleTests,
    BadInputTests,
    ListingTests,
    MachineTests,
    IsolationTests,
    ConcurrencyTests,
    DurabilityTests,
    TtlTests,
    StateSessionFaultTests,
    EngineFaultTests,
    SuiteBase,
):
    """Every test of the state-session family; needs only the ``backend`` fixture."""

    family: ClassVar[Family] = Family.STATE_SESSION
