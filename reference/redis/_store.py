"""What the five Redis stores share around their operations: the client, closing, the openers.

* :class:`RedisStore` is the base of every store class: it holds the store's
  :class:`~agentstores.reference.redis._client.KeySpace` (``_keys``) and
  :class:`~agentstores.reference.redis._client.ClientHandle` (``_handle``), and closes the
  handle in :meth:`~RedisStore.close` and on leaving ``async with``.
* :func:`kit_openers` makes a family module's ``open_store`` and ``open_cluster_store``, the
  kit's openers: a store under the key prefix ``namespace:`` on the server, or the cluster, of
  the backend's lifespan.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TypedDict, TypeVar

import redis.asyncio as aioredis

from agentstores.conformance.backend import StoreContext

from .._lifecycle import ClosedOnExit
from . import cluster as _cluster
from ._client import ClientHandle, KeySpace, RedisClient

__all__ = ["KitConnection", "RedisStore", "kit_openers"]


class RedisStore(ClosedOnExit):
    """The part every Redis store shares: its keys, its client, and closing that client.

    A subclass keeps its own ``__init__`` (its documented signature and defaults) and passes
    the connection arguments on to this one; see the subclasses for their meaning.
    """

    def __init__(
        self,
        *,
        url: str | None,
        client: RedisClient | None,
        connection_pool: aioredis.ConnectionPool | None,
        cluster: bool,
        prefix: str,
        socket_connect_timeout: float,
        socket_timeout: float,
        max_connections: int,
        pool_timeout: float,
    ) -> None:
        self._keys = KeySpace(prefix)
        self._handle = ClientHandle(
            url=url,
            client=client,
            connection_pool=connection_pool,
            cluster=cluster,
            socket_connect_timeout=socket_connect_timeout,
            socket_timeout=socket_timeout,
            max_connections=max_connections,
            pool_timeout=pool_timeout,
        )

    async def close(self) -> None:
        """Close the client if this store made it; idempotent (G-16)."""
        await self._handle.close()


class KitConnection(TypedDict):
    """Where the kit's openers put a store: the keyword arguments every store class takes."""

    url: str
    cluster: bool
    prefix: str


StoreT = TypeVar("StoreT", bound=RedisStore)


def kit_openers(
    make: Callable[[StoreContext, KitConnection], StoreT],
    *,
    note: str = "",
) -> tuple[
    Callable[[StoreContext], AbstractAsyncContextManager[StoreT]],
    Callable[[StoreContext], AbstractAsyncContextManager[StoreT]],
]:
    """The kit's ``(open_store, open_cluster_store)`` for a family module.

    Each opener, when entered, makes the store with ``make(context, connection)``, where
    ``connection`` names the server (or, for ``open_cluster_store``, the cluster) of the
    backend's lifespan and the key prefix ``namespace:``; ``make`` adds the family's own
    arguments (a clock, options of the context). The store is entered, and so closed on exit.

    Assign the pair to module attributes named ``open_store`` and ``open_cluster_store`` in the
    module that defines ``make``: the openers take those names, so that they pickle. ``note``
    ends the docstring of ``open_store`` (what it reads from ``context.options``).
    """

    @asynccontextmanager
    async def opened(context: StoreContext, cluster: bool) -> AsyncIterator[StoreT]:
        connection = KitConnection(
            url=_cluster.kit_url(cluster=cluster),
            cluster=cluster,
            prefix=context.namespace + ":",
        )
        async with make(context, connection) as store:
            yield store

    def open_store(context: StoreContext) -> AbstractAsyncContextManager[StoreT]:
        return opened(context, False)

    def open_cluster_store(context: StoreContext) -> AbstractAsyncContextManager[StoreT]:
        return opened(context, True)

    open_store.__doc__ = (
        "The kit's opener: key prefix ``namespace:`` on the server of the backend's lifespan."
        + (f"\n\n{note}" if note else "")
    )
    open_cluster_store.__doc__ = (
        "As :func:`open_store`, on the cluster of the ``redis-cluster`` backend's lifespan."
    )
    # The fault checks send the backend, openers included, to child processes by pickle, which
    # finds a function by its module and qualified name: those of the module attributes.
    for opener in (open_store, open_cluster_store):
        opener.__module__ = make.__module__
        opener.__qualname__ = opener.__name__
    return open_store, open_cluster_store
