"""What every Redis store of the reference backend shares: the client, errors, keys, scripts.

* :class:`ClientHandle` makes a ``redis.asyncio.Redis`` from a URL (with timeouts, so that no
  call hangs) or adopts a caller's client or connection pool, and closes only what it made.
* :func:`translate_errors` turns engine failures (``redis.RedisError``, ``OSError``,
  ``asyncio`` time-outs) into :class:`~agentstores.spec.errors.StorageUnavailable`, with the
  cause chained (G-11).
* :class:`KeySpace` builds keys injectively from a prefix, a hash tag and escaped components,
  so that no two distinct id tuples share a key whatever the ids contain (G-2), and so that the
  slot of each key is chosen by the store, never by an id.
* :class:`Script` runs a Lua script by EVALSHA, falling back to EVAL when the server does not
  have it cached yet, so that compound operations take one round trip and are atomic.
* :func:`text` and :func:`load_record` decode replies whatever ``decode_responses`` says.

Key layout::

    <prefix>{<tag>}<kind>[:<part>]...

``<prefix>`` is the caller's (e.g. ``"myapp:"``); it may not contain ``{`` or ``}``, so the
first ``{`` of every key opens our hash tag, and so keys of distinct prefixes never meet.
``<tag>`` is ``@<escaped prefix>`` for store-wide keys (one slot per store, distinct stores
spread over a cluster) or ``#`` followed by ``:<escaped component>`` per component for keys
grouped by an entity (a session, a thread). ``<kind>`` is a fixed family-qualified word such as
``tr.thread``, so families may share a prefix. Components are escaped by percent-encoding
``%``, ``:``, ``{`` and ``}`` (nothing else): an escaped component contains no separator and no
brace, so each key decodes to exactly one (prefix, tag, kind, parts) and an id can never end
the hash tag early or start one of its own.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from agentstores.spec.errors import InvalidArgument, StorageUnavailable, StoreError
from agentstores.spec.values import JSONValue, load_json

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_POOL_TIMEOUT",
    "DEFAULT_SOCKET_TIMEOUT",
    "ClientHandle",
    "KeySpace",
    "Script",
    "escape",
    "load_record",
    "text",
    "translate_errors",
]

#: Seconds to wait for a TCP (or TLS) connection to the server before giving up.
DEFAULT_CONNECT_TIMEOUT = 5.0
#: Seconds to wait for any one reply. Scripts here are short; a slower reply means trouble.
DEFAULT_SOCKET_TIMEOUT = 10.0
#: Connections a client made from a URL opens at most; further tasks wait for a free one.
DEFAULT_MAX_CONNECTIONS = 32
#: Seconds a task waits for a free connection before the call fails.
DEFAULT_POOL_TIMEOUT = 30.0

_KIND = re.compile(r"^[A-Za-z0-9_.-]+$")
_ESCAPES = str.maketrans({"%": "%25", ":": "%3A", "{": "%7B", "}": "%7D"})


def escape(component: str) -> str:
    """``component`` with ``%``, ``:``, ``{`` and ``}`` percent-encoded (injective)."""
    return component.translate(_ESCAPES)


def text(value: bytes | str) -> str:
    """A reply as ``str``, whether the client decodes responses or not."""
    return value.decode("utf-8") if isinstance(value, bytes) else value


def load_record(raw: bytes | str, *, what: str) -> JSONValue:
    """Parse a stored JSON document; unparsable data is a storage failure, not bad input."""
    try:
        return load_json(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StorageUnavailable(f"stored {what} is not valid JSON") from exc


@asynccontextmanager
async def translate_errors(what: str) -> AsyncIterator[None]:
    """Run the body, re-raising engine failures as StorageUnavailable (G-11).

    ``what`` names the operation for the message. Errors of the store's own contract
    (:class:`StoreError`) and cancellation pass through untouched.
    """
    try:
        yield
    except StoreError:
        raise
    except (TimeoutError, RedisError, OSError) as exc:
        # asyncio.TimeoutError is TimeoutError, an OSError, on 3.11; named for clarity.
        raise StorageUnavailable(f"redis: {what} failed: {exc}") from exc


class ClientHandle:
    """The ``redis.asyncio`` client of one store, and whether the store must close it.

    Give exactly one of:

    * ``url``: a new client is made (``redis://``, ``rediss://`` or ``unix://``) on a pool of
      at most ``max_connections`` connections, in which a task waits up to ``pool_timeout``
      seconds for a free one; with ``socket_connect_timeout`` and ``socket_timeout`` (seconds,
      defaults :data:`DEFAULT_CONNECT_TIMEOUT` and :data:`DEFAULT_SOCKET_TIMEOUT`), so no call
      hangs; and with no automatic retry: a command is sent at most once, so a write that
      timed out is never applied twice behind the caller's back (the caller sees
      StorageUnavailable and decides). :meth:`close` closes this client and its pool.
    * ``client``: the caller's client is used as is and never closed here.
    * ``connection_pool``: a client is made on the caller's pool; :meth:`close` releases that
      client but leaves the pool open.

    Responses may be decoded or not (``decode_responses``); the stores accept both.
    """

    def __init__(
        self,
        *,
        url: str | None = None,
        client: aioredis.Redis | None = None,
        connection_pool: aioredis.ConnectionPool | None = None,
        socket_connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        pool_timeout: float = DEFAULT_POOL_TIMEOUT,
    ) -> None:
        given = [x is not None for x in (url, client, connection_pool)]
        if sum(given) != 1:
            raise InvalidArgument("give exactly one of url, client or connection_pool")
        self._owned = client is None
        if client is not None:
            self._client = client
        elif connection_pool is not None:
            self._client = aioredis.Redis(connection_pool=connection_pool)
        else:
            assert url is not None
            try:
                # A blocking pool makes a burst of tasks queue for a connection instead of
                # failing with "Too many connections" (G-18).
                pool = aioredis.BlockingConnectionPool.from_url(
                    url,
                    max_connections=max_connections,
                    timeout=pool_timeout,
                    socket_connect_timeout=socket_connect_timeout,
                    socket_timeout=socket_timeout,
                    retry=Retry(NoBackoff(), 0),
                )
            except ValueError as exc:  # a malformed URL
                raise InvalidArgument(f"bad Redis URL: {exc}") from exc
            self._client = aioredis.Redis.from_pool(pool)
        self._closed = False

    @property
    def client(self) -> aioredis.Redis:
        """The client; StorageUnavailable once the handle is closed."""
        if self._closed:
            raise StorageUnavailable("the store is closed")
        return self._client

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    async def close(self) -> None:
        """Close what this handle made (see the class docstring); safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._owned:
            async with translate_errors("close"):
                await self._client.aclose()


class KeySpace:
    """Builds the keys of one store under ``prefix`` (see the module docstring for the layout).

    Args:
        prefix: prepended to every key, e.g. ``"myapp:"``; any text without ``{`` and ``}``
            (braces would choose the cluster slot and blur the boundary between prefixes).
    """

    def __init__(self, prefix: str) -> None:
        if not isinstance(prefix, str):
            raise InvalidArgument(f"key prefix must be a str, not {type(prefix).__name__}")
        if "{" in prefix or "}" in prefix:
            raise InvalidArgument("key prefix must not contain '{' or '}'")
        self.prefix = prefix
        self._store_tag = "@" + escape(prefix)

    def key(self, kind: str, *parts: str, tag: Sequence[str] | None = None) -> str:
        """The key of ``kind`` for ``parts``.

        Args:
            kind: a fixed word of letters, digits, ``_``, ``.`` and ``-``, qualified by the
                family (``tr.thread``); never data.
            parts: components (ids...), escaped; any str.
            tag: None for the store-wide slot, or the components (e.g. ``(session_id,)``)
                whose slot groups this key with the other keys of that entity.
        """
        if not _KIND.match(kind):
            raise ValueError(f"key kind {kind!r} must be a plain word")
        if tag is None:
            tag_text = self._store_tag
        else:
            tag_text = "#" + "".join(":" + escape(component) for component in tag)
        return self.prefix + "{" + tag_text + "}" + kind + "".join(":" + escape(p) for p in parts)


class Script:
    """A Lua script run atomically by EVALSHA, with EVAL as the fallback on NOSCRIPT.

    Create one per script at import time (it only hashes the source); call it with the client,
    the keys (every key the script touches, so that a cluster can route it) and the arguments.
    EVAL also caches the script on the server, so the fallback happens about once per server.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode("utf-8")).hexdigest()

    async def __call__(
        self, client: aioredis.Redis, keys: Sequence[str], args: Sequence[str | int | bytes]
    ) -> Any:
        """Run the script and return its raw reply (engine errors are the caller's to wrap)."""
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.eval(self.source, len(keys), *keys, *args)
