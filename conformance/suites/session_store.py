"""The session-store conformance suite (``spec/session_store.md``): subclass
:class:`SessionStoreSuite` in a test module and give it a ``backend`` fixture.

The suite is assembled from mixins, one module each (``session_store_*.py``):

* ``session_store_sessions``: records, creation, ids, reading, listing, deleting, insights
  (SS-1 .. SS-7, SS-16);
* ``session_store_conversation``: appending, replacing, truncating, the updates and their
  stamps and errors (SS-8 .. SS-15);
* ``session_store_transfer``: export documents, import and copy (SS-17 .. SS-19);
* ``session_store_search``: chat-history search, with a property against the model
  (SS-20 .. SS-22);
* ``session_store_robust``: isolation, bad input, durability and concurrency (SS-23, SS-24,
  G-2, G-3, G-5, G-16 .. G-19);
* ``session_store_machine``: the state machine over all 18 operations against the model.

Store contexts: the suite uses no ``StoreContext.options``.
"""

from __future__ import annotations

from typing import ClassVar

from ..backend import Family
from .base import SuiteBase
from .engine_faults import EngineFaultTests
from .session_store_conversation import ConversationTests
from .session_store_faults import SessionStoreFaultTests
from .session_store_machine import MachineTests
from .session_store_robust import RobustnessTests
from .session_store_search import SearchTests
from .session_store_sessions import SessionTests
from .session_store_transfer import TransferTests

__all__ = ["SessionStoreSuite"]


class SessionStoreSuite(
    SessionStoreFaultTests,
    EngineFaultTests,
    MachineTests,
    RobustnessTests,
    SearchTests,
    TransferTests,
    ConversationTests,
    SessionTests,
    SuiteBase,
):
    """Every test of the session-store family; needs only the ``backend`` fixture.

    pytest runs inherited tests in reverse MRO order, so the mixins are listed last-run
    first: the readable examples run first and the state machine, the slowest, last (a
    failing state machine also spends time shrinking its example).
    """

    family: ClassVar[Family] = Family.SESSION_STORE
