"""Losing requests and replies to Redis, for the kit's ``engine_faults`` check.

The ``redis`` backend's ``fault_injection`` has two ways the server goes away mid-call:

* :func:`lose_requests`: the failing request never reaches the server (the connection broke
  before it was sent);
* :func:`lose_replies`: the server gets the request, runs it and answers, and the connection
  breaks before the caller reads the answer. The caller cannot know whether the command ran,
  which is why G-11 and G-22 allow either outcome but never half of one, and forbid resending.

Either way the connection is closed and ``redis.ConnectionError`` raised, as redis-py does when
a socket breaks. Every request sent on a ``redis.asyncio`` connection while the hook is entered
is counted: the kit's tests make no other Redis calls meanwhile.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Literal

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError

from agentstores.conformance.backend import Family
from agentstores.conformance.engine_faults import FaultSwitch

__all__ = ["RedisFaultMode", "lose_replies", "lose_requests", "redis_faults"]

#: Which half of a call is lost: the request, or the reply to a request the server ran.
RedisFaultMode = Literal["request", "reply"]


@contextmanager
def redis_faults(switch: FaultSwitch, mode: RedisFaultMode) -> Iterator[None]:
    """While entered, every request sent on a ``redis.asyncio`` connection consults ``switch``;
    the one it fails loses its request or its reply (``mode``) with the connection."""
    original_send = AbstractConnection.send_packed_command
    original_read = AbstractConnection.read_response
    losing: weakref.WeakSet[AbstractConnection] = weakref.WeakSet()

    async def send(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        if not switch.hit():
            await original_send(self, command, check_health)
        elif mode == "reply":
            await original_send(self, command, check_health)
            losing.add(self)
        else:
            await self.disconnect(nowait=True)
            raise RedisConnectionError("injected: the connection broke before the request")

    async def read(self: AbstractConnection, *args: Any, **kwargs: Any) -> Any:
        if self not in losing:
            return await original_read(self, *args, **kwargs)
        losing.discard(self)
        try:
            # Wait until the server has answered, so that it certainly ran the request.
            await original_read(self, *args, **kwargs)
        finally:
            await self.disconnect(nowait=True)
        raise RedisConnectionError("injected: the connection broke before the reply")

    AbstractConnection.send_packed_command = send  # type: ignore[method-assign]
    AbstractConnection.read_response = read  # type: ignore[method-assign]
    try:
        yield
    finally:
        AbstractConnection.send_packed_command = original_send  # type: ignore[method-assign]
        AbstractConnection.read_response = original_read  # type: ignore[method-assign]


def lose_requests(family: Family, switch: FaultSwitch) -> AbstractContextManager[None]:
    """The ``request lost`` hook: the failing request never reaches the server."""
    return redis_faults(switch, "request")


def lose_replies(family: Family, switch: FaultSwitch) -> AbstractContextManager[None]:
    """The ``reply lost`` hook: the server runs the failing request, its reply is lost."""
    return redis_faults(switch, "reply")
