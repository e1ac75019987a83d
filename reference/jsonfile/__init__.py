"""The JSON-file reference backend: one directory per store, injective file names, atomic
writes (temp file, fsync, rename), append-only logs, inter-process file locks.

``BACKEND`` plugs it into the kit (registered as ``json``); each family's store class is in the
module of the family's name and can be used directly in production. ``_faults`` holds the
``fault_injection`` hook through which the kit makes the engine fail (``engine_faults``), and
``_layout`` the layout versions of the session store and session service directories (a
directory of the layout before the record logs is migrated in place, or refused).
"""

from agentstores.conformance.backend import Backend, Capability, Family

from . import _faults, memory_storage, session_service, session_store, state_session, thread_run

__all__ = ["BACKEND"]

BACKEND = Backend(
    name="json",
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
    description="JSON-file reference backend (one directory per context)",
)
