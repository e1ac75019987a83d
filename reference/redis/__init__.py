"""The Redis reference backend: ``redis.asyncio``, injective hash-tagged keys, compound
operations in one round trip.

``BACKEND`` plugs it into the kit (registered as ``redis``). Its lifespan uses the server named
by ``AGENTSTORES_REDIS_URL`` or else starts a disposable ``redis-server`` on a free loopback
port (see :mod:`agentstores.reference.redis.server`).
"""

from agentstores.conformance.backend import Backend, Capability, Family

from . import server, thread_run

__all__ = ["BACKEND"]

BACKEND = Backend(
    name="redis",
    openers={
        Family.THREAD_RUN: thread_run.open_store,
    },
    capabilities=frozenset({Capability.DURABLE}),
    lifespan=server.kit_lifespan,
    description="Redis reference backend (a key prefix per context)",
)
