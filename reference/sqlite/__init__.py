"""The SQLite reference backend: stdlib ``sqlite3`` off the event loop, WAL, one transaction
per operation, a versioned schema per family.

``BACKEND`` plugs it into the kit (registered as ``sqlite``); each family's store class is in
the module of the family's name and can be used directly in production. ``_faults`` holds the
``fault_injection`` hook through which the kit makes the engine fail (``engine_faults``).
"""

from agentstores.conformance.backend import Backend, Capability, Family

from . import _faults, memory_storage, session_service, session_store, state_session, thread_run

__all__ = ["BACKEND"]

BACKEND = Backend(
    name="sqlite",
    openers={
        Family.THREAD_RUN: thread_run.open_store,
        Family.SESSION_STORE: session_store.open_store,
        Family.STATE_SESSION: state_session.open_store,
        Family.MEMORY_STORAGE: memory_storage.open_store,
        Family.SESSION_SERVICE: session_service.open_store,
    },
    capabilities=frozenset(
        {
            Capability.DURABLE,
            Capability.TTL,
            Capability.SEMANTIC_SEARCH,
            Capability.CRASH_SAFE,
            Capability.MULTI_PROCESS,
            Capability.ENGINE_FAULTS,
        }
    ),
    fault_injection=_faults.inject_engine_faults,
    description="SQLite reference backend (one database file per context)",
)
