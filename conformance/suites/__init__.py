"""The family suites: subclass one in a test module and give it a ``backend`` fixture."""

from .base import SuiteBase
from .memory_storage import MemoryStorageSuite
from .session_service import SessionServiceSuite
from .session_store import SessionStoreSuite
from .state_session import StateSessionSuite
from .thread_run import ThreadRunSuite

__all__ = [
    "MemoryStorageSuite",
    "SessionServiceSuite",
    "SessionStoreSuite",
    "StateSessionSuite",
    "SuiteBase",
    "ThreadRunSuite",
]
