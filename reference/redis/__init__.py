"""The Redis reference backend: ``redis.asyncio``, injective hash-tagged keys, compound
operations in one round trip.

``BACKEND`` plugs it into the kit (registered as ``redis``). Its lifespan uses the server named
by ``AGENTSTORES_REDIS_URL`` or else starts a disposable ``redis-server`` on a free loopback
port (see :mod:`agentstores.reference.redis.server`).

``CLUSTER_BACKEND`` (registered as ``redis-cluster``) runs the same stores on a Redis Cluster
and claims ``cluster``: its lifespan uses the cluster of which ``AGENTSTORES_REDIS_CLUSTER_URL``
names a node, or else starts a local cluster of three primaries on loopback (see
:mod:`agentstores.reference.redis.cluster`).
"""

from agentstores.conformance.backend import Backend, Capability, Family, FaultInjector

from . import (
    _faults,
    cluster,
    memory_storage,
    server,
    session_service,
    session_store,
    state_session,
    thread_run,
)

__all__ = ["BACKEND", "CLUSTER_BACKEND", "FAULT_INJECTION"]

#: How the kit makes the server go away mid-call (``engine_faults``): a request lost before it
#: reached the server, or the reply to one it ran (see :mod:`._faults`). The same hooks serve
#: a cluster: they break the client's connection to whichever node the request goes to.
FAULT_INJECTION: dict[str, FaultInjector] = {
    "request lost": _faults.lose_requests,
    "reply lost": _faults.lose_replies,
}

BACKEND = Backend(
    name="redis",
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
            Capability.MULTI_PROCESS,
            Capability.ENGINE_FAULTS,
        }
    ),
    lifespan=server.kit_lifespan,
    fault_injection=FAULT_INJECTION,
    description="Redis reference backend (a key prefix per context)",
)

CLUSTER_BACKEND = Backend(
    name="redis-cluster",
    openers={
        Family.THREAD_RUN: thread_run.open_cluster_store,
        Family.SESSION_STORE: session_store.open_cluster_store,
        Family.STATE_SESSION: state_session.open_cluster_store,
        Family.MEMORY_STORAGE: memory_storage.open_cluster_store,
        Family.SESSION_SERVICE: session_service.open_cluster_store,
    },
    capabilities=frozenset(
        {
            Capability.DURABLE,
            Capability.TTL,
            Capability.SEMANTIC_SEARCH,
            Capability.MULTI_PROCESS,
            Capability.CLUSTER,
            Capability.ENGINE_FAULTS,
        }
    ),
    lifespan=cluster.kit_lifespan,
    fault_injection=FAULT_INJECTION,
    description="Redis reference backend on a Redis Cluster (a key prefix per context)",
)
