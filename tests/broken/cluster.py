"""Broken Redis stores that only a cluster catches: the keys of one session (or thread) spread
over several hash slots, so their compound operations are multi-slot.

On one server such a store passes every test: all keys live in one keyspace and a script may
touch any of them. On a Redis Cluster each of those scripts is refused (the client sees keys
of several slots, the server answers ``CROSSSLOT``), the store raises StorageUnavailable, and
the suite must fail. :data:`BROKEN` maps each to its family and to a requirement the cluster
run must report as failed; ``tests/test_redis_cluster.py`` checks it, and also that the same
store passes that requirement on one server (so the failure is the cluster's doing).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from agentstores.conformance.backend import Backend, Capability, Family, StoreContext
from agentstores.reference.redis import cluster, server
from agentstores.reference.redis.session_store import RedisSessionStore
from agentstores.reference.redis.state_session import RedisStateSessionStore
from agentstores.reference.redis.thread_run import RedisThreadRunStore

__all__ = ["BROKEN", "on_one_server"]


class StateTaggedPerSession(RedisStateSessionStore):
    """Tags a session's state hash by (user, session) while the user's session index keeps the
    user's tag: saving and deleting touch two slots."""

    def state_key(self, session_id: str, user_id: str) -> str:
        return self._keys.key("st.state", session_id, tag=(user_id, session_id))


class MessagesInTheirOwnSlot(RedisSessionStore):
    """Keeps a session's messages and their times under tags of their own, apart from the
    session's hash: every conversation write touches three slots."""

    def session_keys(self, session_id: str) -> list[str]:
        keys = super().session_keys(session_id)
        keys[2] = self._keys.key("ss.messages", tag=(session_id, "messages"))
        keys[3] = self._keys.key("ss.times", tag=(session_id, "times"))
        return keys


class ThreadMessagesPerThread(RedisThreadRunStore):
    """Gives a thread's message list the thread's own tag while its hash and the run indexes
    keep the store's: a checkpoint touches two slots."""

    def _messages_key(self, thread_id: str) -> str:
        return self._keys.key("tr.messages", tag=(thread_id,))


def _opener(
    cls: type[Any], on_cluster: bool
) -> Callable[[StoreContext], AbstractAsyncContextManager[Any]]:
    @asynccontextmanager
    async def opened(context: StoreContext) -> AsyncIterator[Any]:
        options: dict[str, Any] = {"prefix": context.namespace + ":"}
        if not issubclass(cls, RedisStateSessionStore):  # the only one without a clock
            options["clock"] = context.clock
        async with cls(cluster.kit_url(cluster=on_cluster), cluster=on_cluster, **options) as store:
            yield store

    return opened


def _backend(name: str, family: Family, cls: type[Any], *, on_cluster: bool) -> Backend:
    capabilities = {Capability.DURABLE}
    if on_cluster:
        capabilities.add(Capability.CLUSTER)
    return Backend(
        name=name if on_cluster else name + "-one-server",
        openers={family: _opener(cls, on_cluster)},
        capabilities=frozenset(capabilities),
        lifespan=cluster.kit_lifespan if on_cluster else server.kit_lifespan,
        description=(cls.__doc__ or "").split("\n", 1)[0],
    )


_CASES: dict[str, tuple[Family, type[Any], str]] = {
    "state-tagged-per-session": (Family.STATE_SESSION, StateTaggedPerSession, "ST-2"),
    "messages-in-their-own-slot": (Family.SESSION_STORE, MessagesInTheirOwnSlot, "SS-8"),
    "thread-messages-per-thread": (Family.THREAD_RUN, ThreadMessagesPerThread, "TR-19"),
}

#: name -> (backend on a cluster, its family, a requirement the cluster run must fail).
BROKEN: dict[str, tuple[Backend, Family, str]] = {
    name: (_backend(name, family, cls, on_cluster=True), family, requirement)
    for name, (family, cls, requirement) in _CASES.items()
}


def on_one_server(name: str) -> Backend:
    """The store of ``BROKEN[name]`` on one Redis server, where its layout is harmless."""
    family, cls, _ = _CASES[name]
    return _backend(name, family, cls, on_cluster=False)
