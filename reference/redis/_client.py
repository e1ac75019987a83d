"""What every Redis store of the reference backend shares: the client, errors, keys, scripts.

* :class:`ClientHandle` makes a ``redis.asyncio.Redis`` from a URL (with timeouts, so that no
  call hangs), or a ``redis.asyncio.cluster.RedisCluster`` from the URL of a cluster node
  (``cluster=True``), or adopts a caller's client (either kind) or connection pool, and closes
  only what it made. A client made from a URL for one server has a lean pool and connections
  (:class:`_QueuedPool`, :class:`_StoreConnection`), and scripts run straight on a pooled
  connection: what redis-py adds to every call (locks, metrics hooks, a task per time-out)
  cost more than a short script's work on the server.
* :func:`translate_errors` turns engine failures (``redis.RedisError``, ``OSError``,
  ``asyncio`` time-outs) into :class:`~agentstores.spec.errors.StorageUnavailable`, with the
  cause chained (G-11).
* :class:`KeySpace` builds keys injectively from a prefix, a hash tag and escaped components,
  so that no two distinct id tuples share a key whatever the ids contain (G-2), and so that the
  slot of each key is chosen by the store, never by an id.
* :class:`Script` runs a Lua script by EVALSHA, falling back to EVAL when the server does not
  have it cached yet, so that compound operations take one round trip and are atomic;
  :meth:`Script.many` runs one read-only script per entity (each in its own slot) in one
  pipeline, which a cluster client splits per node.
* :func:`text` and :func:`load_record` decode replies whatever ``decode_responses`` says;
  :func:`unframe` splits the one text in which a read script returns many stored texts.

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

On a Redis Cluster the hash tag alone chooses a key's slot, so the keys that share a tag share
a slot: every script and transaction of the stores declares keys of one tag only, which keeps
it valid (and atomic) on a cluster. Which tag each family uses, and what its operations that
span tags cost, is in each family module's docstring.

Clusters and failures: a cluster client made here follows ``MOVED`` and ``ASK`` redirections
and waits out ``TRYAGAIN`` (the command was not run, so resending is safe), retries a command
refused with ``CLUSTERDOWN`` or sent to a slot nobody serves yet a few times, and never resends
a command after a lost connection or a time-out, whose effect is unknown: that call raises
StorageUnavailable, as on one server.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import re
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, ClassVar, TypeAlias

import redis.asyncio as aioredis
from redis._parsers import AsyncCommandsParser
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    ClusterDownError,
    NoScriptError,
    RedisClusterException,
    RedisError,
    SlotNotCoveredError,
)
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)

from agentstores.spec.errors import InvalidArgument, StorageUnavailable, StoreError
from agentstores.spec.values import JSONValue, load_json

from .._records import encode_json

__all__ = [
    "CLUSTER_RETRIES",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_POOL_TIMEOUT",
    "DEFAULT_SOCKET_TIMEOUT",
    "ENGINE_ERRORS",
    "FRAME_SEPARATOR",
    "ClientHandle",
    "KeySpace",
    "RedisClient",
    "Script",
    "encode_json",
    "escape",
    "fence_key",
    "load_record",
    "text",
    "translate_errors",
    "unframe",
]

#: Seconds to wait for a TCP (or TLS) connection to the server before giving up.
DEFAULT_CONNECT_TIMEOUT = 5.0
#: Seconds to wait for any one reply. Scripts here are short; a slower reply means trouble.
DEFAULT_SOCKET_TIMEOUT = 10.0
#: Connections a client made from a URL opens at most; further tasks wait for a free one.
DEFAULT_MAX_CONNECTIONS = 32
#: Seconds a task waits for a free connection before the call fails.
DEFAULT_POOL_TIMEOUT = 30.0
#: How often a cluster client made here resends a command the cluster refused unrun
#: (``CLUSTERDOWN``, a slot not served yet), about a quarter of a second apart.
CLUSTER_RETRIES = 3

#: Either client a store can run on: one server, or a Redis Cluster.
RedisClient: TypeAlias = aioredis.Redis | RedisCluster

try:
    from redis.maint_notifications import MaintNotificationsConfig
except ImportError:  # redis-py < 7: no maintenance notifications; the pool always checks
    _STALE_CONNECTION_CHECK: dict[str, Any] = {}
else:
    # With maintenance notifications on (redis-py's "auto" default), the pool skips its check
    # that an idle connection was not closed by the server meanwhile, so the first call after
    # a server restart or idle timeout would fail. They only serve managed-cloud failovers;
    # a pool made here keeps the check instead (G-21). The asyncio connections of redis-py
    # 7.0 have no such notifications yet (nor the argument), so their pool always checks.
    _STALE_CONNECTION_CHECK = (
        {"maint_notifications_config": MaintNotificationsConfig(enabled=False)}
        if "maint_notifications_config" in inspect.signature(AbstractConnection.__init__).parameters
        else {}
    )

_KIND = re.compile(r"^[A-Za-z0-9_.-]+$")
#: Kinds that passed the check (kinds are a few fixed words; the check runs once per kind).
_KINDS_SEEN: set[str] = set()
_ESCAPES = str.maketrans({"%": "%25", ":": "%3A", "{": "%7B", "}": "%7D"})


def escape(component: str) -> str:
    """``component`` with ``%``, ``:``, ``{`` and ``}`` percent-encoded (injective)."""
    # Most ids have none of the four; str.translate with a table is slow per character.
    if "%" in component or ":" in component or "{" in component or "}" in component:
        return component.translate(_ESCAPES)
    return component


def text(value: bytes | str) -> str:
    """A reply as ``str``, whether the client decodes responses or not."""
    return value.decode("utf-8") if isinstance(value, bytes) else value


#: What a read script puts between the pieces of its one text (Lua ``string.char(30)``, the
#: record separator): a control character, which JSON text never holds raw (the encoder
#: escapes it), so no stored JSON text contains it. See :func:`unframe`.
FRAME_SEPARATOR = "\x1e"


def unframe(reply: bytes | str) -> list[str]:
    """The pieces of a read script's framed reply, as str.

    A read script returns the stored texts it read joined by :data:`FRAME_SEPARATOR` in one
    bulk string, rather than an array of them: redis-py's parser (pure Python without
    hiredis) reads one bulk string at once, where an array costs a parse per element, and
    the text is decoded once. The caller checks the number of pieces it expects: stored
    data damaged to hold the separator comes back as one piece too many.
    StorageUnavailable if the text is not UTF-8 (damaged data)."""
    try:
        decoded = reply.decode("utf-8") if isinstance(reply, bytes) else reply
    except UnicodeDecodeError as exc:
        raise StorageUnavailable("stored data is not UTF-8 text") from exc
    return decoded.split(FRAME_SEPARATOR)


def load_record(raw: bytes | str, *, what: str) -> JSONValue:
    """Parse a stored JSON document; unparsable data is a storage failure, not bad input."""
    try:
        return load_json(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StorageUnavailable(f"stored {what} is not valid JSON") from exc


#: What an engine failure looks like from redis-py. asyncio.TimeoutError is TimeoutError, an
#: OSError, on 3.11; named for clarity. RedisClusterException is no RedisError: the cluster
#: client raises it for keys of several slots in one command (a layout bug) and when it cannot
#: reach the cluster.
#: A client made with ``decode_responses=True`` decodes replies itself: stored bytes that are
#: not UTF-8 (damaged data) fail there, as UnicodeDecodeError.
ENGINE_ERRORS = (TimeoutError, RedisError, RedisClusterException, OSError, UnicodeDecodeError)


class _ErrorTranslation:
    """The context manager of :func:`translate_errors` (a class: it runs on every call, and a
    generator-based one costs several times as much)."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        if exc is None or isinstance(exc, StoreError) or not isinstance(exc, ENGINE_ERRORS):
            return False
        raise StorageUnavailable(f"redis: {self.what} failed: {exc}") from exc


def translate_errors(what: str) -> AbstractAsyncContextManager[None]:
    """Run the body, re-raising engine failures as StorageUnavailable (G-11).

    ``what`` names the operation for the message. Errors of the store's own contract
    (:class:`StoreError`) and cancellation pass through untouched.
    """
    return _ErrorTranslation(what)


class _SharedCommandTable(AsyncCommandsParser):
    """redis-py's key finder, reading a node's ``COMMAND`` table once per process.

    A cluster client reads the whole command table (hundreds of kilobytes) each time it
    connects, to find the keys of plain commands; a service that opens a store per request
    would pay that on every open. The table only changes with the server's version, and the
    stores use only long-standing commands, so one reading per node address is kept.
    """

    _tables: ClassVar[dict[str, dict[str, Any]]] = {}

    async def initialize(self, node: Any = None) -> None:
        if node is not None:
            self.node = node
        name = str(getattr(self.node, "name", ""))
        table = self._tables.get(name)
        if table is None:
            await super().initialize()
            self._tables[name] = table = dict(self.commands)
        self.commands = dict(table)


def _torn_down(exc: AttributeError) -> RedisConnectionError:
    """redis-py's cluster client rebuilds its node objects after a node fails, and closes the
    connections of the old ones even while another task is sending or reading on them; that
    task then meets ``None`` where the socket was (``'NoneType' object has no attribute
    'writelines'``). It is a lost connection like any other: the outcome is unknown."""
    return RedisConnectionError(f"connection closed during a cluster topology change ({exc})")


class _BoundedCluster(RedisCluster):
    """A ``RedisCluster`` that resends only commands the cluster refused unrun, and queues
    callers for a connection instead of failing when too many calls are in flight.

    redis-py retries a command after a lost connection or a time-out too, which may apply a
    write twice (an RPUSH, an event append); here such a call fails once and the caller sees
    StorageUnavailable, as with the single-server client. The slot map is refreshed on the
    next call either way. redis-py raises "too many connections" when a node's pool is full;
    a semaphore per kind of call (single commands, read pipelines) keeps the number of
    connections per node within the pool, so a burst of tasks waits (G-18).
    """

    # Narrower than redis-py's tuple on purpose (see the class docstring).
    ERRORS_ALLOW_RETRY = (ClusterDownError, SlotNotCoveredError)  # type: ignore[assignment]

    def __init__(self, *args: Any, max_in_flight: int, pool_timeout: float, **kwargs: Any):
        # Commands and pipelines take permits of their own (a pipeline that meets a
        # redirection resends single commands, which must not wait for its own permit).
        kwargs["max_connections"] = 2 * max_in_flight + 2
        super().__init__(*args, **kwargs)
        self.commands_parser = _SharedCommandTable()
        self._commands = asyncio.Semaphore(max_in_flight)
        self._pipelines = asyncio.Semaphore(max_in_flight)
        self._pool_timeout = pool_timeout
        self._discovery = asyncio.Lock()

    async def _initialized(self) -> None:
        """Discover the cluster (again) in one task while the others wait.

        redis-py lets a burst of first calls on a fresh client race through its discovery;
        some of their connections then break, and each break marks every connection of the
        node for reconnection, so the burst fails in a cascade. Doing it first, under a lock,
        avoids that.
        """
        if self._initialize:
            async with self._discovery:
                if self._initialize:
                    await self.initialize()

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        await self._initialized()
        async with asyncio.timeout(self._pool_timeout):
            await self._commands.acquire()
        try:
            return await super().execute_command(*args, **kwargs)
        except AttributeError as exc:
            raise _torn_down(exc) from exc
        finally:
            self._commands.release()

    async def run_pipeline(self, pipe: ClusterPipeline) -> list[Any]:
        """Execute ``pipe`` holding a pipeline permit; errors come back as results."""
        await self._initialized()
        async with asyncio.timeout(self._pool_timeout):
            await self._pipelines.acquire()
        try:
            return await pipe.execute(raise_on_error=False)
        except AttributeError as exc:
            raise _torn_down(exc) from exc
        finally:
            self._pipelines.release()


class _StoreConnection(AbstractConnection):
    """How the connections of a client made from a URL send and wait, mixed into the
    connection class the URL chose (see :func:`_store_connection_class`).

    * Time-outs: redis-py bounds a send with ``asyncio.wait_for``, which on Python 3.11 starts
      a task for every command (a tenth of a short command's round trip). So the connection
      is made without a socket time-out and each reply, and each send that could wait, is
      bounded by ``asyncio.timeout`` instead (connecting keeps its own
      ``socket_connect_timeout``). A time-out closes the connection (redis-py closes it on
      any interruption) and raises TimeoutError: the outcome of the command is unknown.
    * Packing: redis-py joins its output buffer again for every argument; a command of a few
      kilobytes of ``str``, ``bytes`` and ``int`` (every script call of the stores) is joined
      once.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._reply_timeout: float | None = kwargs.get("socket_timeout")
        if kwargs.get("socket_connect_timeout") is None:
            kwargs["socket_connect_timeout"] = self._reply_timeout  # redis-py's fallback
        kwargs["socket_timeout"] = None
        super().__init__(*args, **kwargs)

    def pack_command(self, *args: Any) -> list[bytes]:
        encoding, errors = self.encoder.encoding, self.encoder.encoding_errors
        pieces = []
        size = 0
        for arg in args:
            kind = type(arg)
            if kind is str:
                data = arg.encode(encoding, errors)
            elif kind is bytes:
                data = arg
            elif kind is int:  # not bool, which redis-py refuses
                data = b"%d" % arg
            else:  # floats, memoryviews...: redis-py's rules
                return list(super().pack_command(*args))
            size += len(data)
            pieces.append(b"$%d\r\n%b\r\n" % (len(data), data))
        # A first argument of several words ("CONFIG GET": its piece splits into more than
        # the length and one word), or values big enough that redis-py sends them without
        # copying: redis-py's way.
        if size > _PACK_AT_ONCE or not args or len(pieces[0].split()) != 2:
            return list(super().pack_command(*args))
        return [b"*%d\r\n%b" % (len(args), b"".join(pieces))]

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if self._cannot_block(command):
            await super().send_packed_command(command, check_health)
            return
        async with asyncio.timeout(self._reply_timeout):
            await super().send_packed_command(command, check_health)

    def _cannot_block(self, command: Any) -> bool:
        """Whether sending ``command`` returns without waiting, so needs no time-out: the
        transport takes any write, and the send waits only while its buffer is above the high
        water mark (until it drains to the low one). A buffer at most at the low mark after
        this command was below it before, so the writer is not paused, and stays at most at
        the high mark, so it will not pause."""
        writer = getattr(self, "_writer", None)  # redis-py's stream, while connected
        if writer is None:
            return False
        transport = writer.transport
        if isinstance(command, bytes):
            size = len(command)
        elif isinstance(command, list) and all(isinstance(p, bytes) for p in command):
            size = sum(len(piece) for piece in command)
        else:
            return False
        low, _ = transport.get_write_buffer_limits()
        return bool(transport.get_write_buffer_size() + size <= low)

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        # An explicit timeout (redis-py's pub/sub polls) keeps redis-py's meaning.
        if kwargs.get("timeout", args[1] if len(args) > 1 else None) is not None:
            return await super().read_response(*args, **kwargs)
        async with asyncio.timeout(self._reply_timeout):
            return await super().read_response(*args, **kwargs)


#: Commands up to this many bytes of arguments are packed in one piece.
_PACK_AT_ONCE = 64 * 1024
_STORE_CONNECTIONS: dict[type[AbstractConnection], type[AbstractConnection]] = {}


def _store_connection_class(base: type[AbstractConnection]) -> type[AbstractConnection]:
    """``base`` with :class:`_StoreConnection` mixed in (one class per base)."""
    made = _STORE_CONNECTIONS.get(base)
    if made is None:
        made = type("Store" + base.__name__, (_StoreConnection, base), {})
        _STORE_CONNECTIONS[base] = made
    return made


class _QueuedPool(aioredis.ConnectionPool):
    """A connection pool in which a task that finds every connection in use waits up to
    ``pool_timeout`` seconds for one (then TimeoutError), as in redis-py's
    ``BlockingConnectionPool``, and in which taking and returning a connection is cheap.

    redis-py's pools take a lock, a condition and a time-out, and report to its metrics hooks,
    on every call: together a fifth of a short command's round trip. Here a semaphore counts
    the free connections; taking one pops it from the idle list and makes sure it is connected
    and clean (redis-py's ``ensure_connection``, which replaces one the server closed);
    returning one puts it back (a connection that broke was closed by redis-py and reconnects
    when next taken). Every step between two awaits runs whole, so no lock is needed.
    """

    def __init__(self, *args: Any, pool_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._free = asyncio.Semaphore(self.max_connections)
        self._pool_timeout = pool_timeout

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        if self._free.locked():
            async with asyncio.timeout(self._pool_timeout):
                await self._free.acquire()
        else:
            await self._free.acquire()
        try:
            # At most max_connections are in use (the semaphore), so this never refuses.
            connection: AbstractConnection = self.get_available_connection()  # type: ignore[no-untyped-call]
        except BaseException:
            self._free.release()
            raise
        try:
            await self.ensure_connection(connection)
        except BaseException:
            await self.release(connection)
            raise
        return connection

    async def release(self, connection: AbstractConnection) -> None:
        if connection not in self._in_use_connections:
            return  # not ours, or returned twice
        self._in_use_connections.remove(connection)
        should_reconnect = getattr(connection, "should_reconnect", None)
        try:
            if should_reconnect is not None and should_reconnect():
                await connection.disconnect()
        finally:
            self._available_connections.append(connection)
            self._free.release()


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
    * ``url`` with ``cluster=True``: the URL names one node of a Redis Cluster
      (``redis://host:7000``); a ``RedisCluster`` client is made that discovers the others,
      with the same time-outs, at most ``max_connections`` calls in flight (further tasks wait
      up to ``pool_timeout``), and the retry rules of the module docstring.
    * ``client``: the caller's client (``redis.asyncio.Redis`` or
      ``redis.asyncio.cluster.RedisCluster``) is used as is and never closed here.
    * ``connection_pool``: a client is made on the caller's pool; :meth:`close` releases that
      client but leaves the pool open (one server only).

    Responses may be decoded or not (``decode_responses``); the stores accept both.
    """

    def __init__(
        self,
        *,
        url: str | None = None,
        client: RedisClient | None = None,
        connection_pool: aioredis.ConnectionPool | None = None,
        cluster: bool = False,
        socket_connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        pool_timeout: float = DEFAULT_POOL_TIMEOUT,
    ) -> None:
        given = [x is not None for x in (url, client, connection_pool)]
        if sum(given) != 1:
            raise InvalidArgument("give exactly one of url, client or connection_pool")
        if cluster and url is None:
            raise InvalidArgument("cluster=True goes with a url (a client says what it is)")
        self._owned = client is None
        self._client: RedisClient
        if client is not None:
            if not isinstance(client, aioredis.Redis | RedisCluster):
                raise InvalidArgument(
                    f"client must be a redis.asyncio Redis or RedisCluster, not "
                    f"{type(client).__name__}"
                )
            self._client = client
        elif connection_pool is not None:
            self._client = aioredis.Redis(connection_pool=connection_pool)
        elif cluster:
            assert url is not None
            try:
                self._client = _BoundedCluster.from_url(
                    url,
                    max_in_flight=max_connections,
                    pool_timeout=pool_timeout,
                    socket_connect_timeout=socket_connect_timeout,
                    socket_timeout=socket_timeout,
                    retry=Retry(NoBackoff(), CLUSTER_RETRIES),
                )
            except (ValueError, RedisClusterException) as exc:  # a malformed URL
                raise InvalidArgument(f"bad Redis Cluster URL: {exc}") from exc
        else:
            assert url is not None
            try:
                # A queued pool makes a burst of tasks wait for a connection instead of
                # failing with "Too many connections" (G-18).
                pool = _QueuedPool.from_url(
                    url,
                    max_connections=max_connections,
                    pool_timeout=pool_timeout,
                    socket_connect_timeout=socket_connect_timeout,
                    socket_timeout=socket_timeout,
                    retry=Retry(NoBackoff(), 0),
                    **_STALE_CONNECTION_CHECK,
                )
            except ValueError as exc:  # a malformed URL
                raise InvalidArgument(f"bad Redis URL: {exc}") from exc
            # The URL's scheme chose the class (TCP, TLS, Unix socket); time it our way.
            pool.connection_class = _store_connection_class(pool.connection_class)
            self._client = aioredis.Redis.from_pool(pool)
        self._closed = False

    @property
    def client(self) -> RedisClient:
        """The client; StorageUnavailable once the handle is closed."""
        if self._closed:
            raise StorageUnavailable("the store is closed")
        return self._client

    @property
    def cluster(self) -> bool:
        """Whether the client talks to a Redis Cluster."""
        return isinstance(self._client, RedisCluster)

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
        if kind not in _KINDS_SEEN:
            if not _KIND.match(kind):
                raise ValueError(f"key kind {kind!r} must be a plain word")
            _KINDS_SEEN.add(kind)
        if tag is None:
            tag_text = self._store_tag
        else:
            tag_text = "#" + "".join(":" + escape(component) for component in tag)
        return self.prefix + "{" + tag_text + "}" + kind + "".join(":" + escape(p) for p in parts)


def fence_key(key: str) -> str | None:
    """A key of ``key``'s hash slot that nothing ever writes (``<prefix>{<tag>}fence``), or
    None for a key without a hash tag. See :class:`Script` for what it is for."""
    opening = key.find("{")
    closing = key.find("}", opening + 1)
    if opening < 0 or closing <= opening + 1:
        return None
    # "fence" is no family-qualified kind (those have a dot), so it names no stored key.
    return key[: closing + 1] + "fence"


class Script:
    """A Lua script run atomically by EVALSHA, with EVAL as the fallback on NOSCRIPT.

    Create one per script at import time (it only hashes the source); call it with the client,
    the keys (every key the script touches, so that a cluster can route it) and the arguments.
    EVAL also caches the script on the server, so the fallback happens about once per server.

    The fence: Redis runs a script whole, but if a command inside it fails the commands before
    stay applied. On a cluster a command fails mid-script when its slot is being migrated away
    and the command's key does not exist on this node (yet, or any more, e.g. a list deleted
    and refilled, a sorted set whose last member was removed and which is added to again): the
    server answers "non local key" and the script stops half-way. So every call also declares
    :func:`fence_key` of its first key, after the script's own keys (so ``KEYS[1..n]`` keep
    their meaning; a script must not use ``#KEYS``). That key never exists, and a cluster
    refuses to start a command with a missing key while its slot is migrating (``ASK`` from
    the source, ``TRYAGAIN`` from the target), so a script runs only while its slot is
    stable, and runs whole. During a migration the client retries for a moment, then the call
    raises StorageUnavailable; single-key reads are redirected and keep working. On one server
    (a ``Redis`` client) no slot ever moves, and no fence is declared.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode("utf-8")).hexdigest()

    @staticmethod
    def _fenced(client: RedisClient, keys: Sequence[str]) -> Sequence[str]:
        if not isinstance(client, RedisCluster):
            return keys
        fence = fence_key(keys[0]) if keys else None
        return [*keys] if fence is None else [*keys, fence]

    async def __call__(
        self, client: RedisClient, keys: Sequence[str], args: Sequence[str | int | bytes]
    ) -> Any:
        """Run the script and return its raw reply (engine errors are the caller's to wrap)."""
        fenced = self._fenced(client, keys)
        try:
            return await _run(client, "EVALSHA", self.sha, len(fenced), *fenced, *args)
        except NoScriptError:
            return await _run(client, "EVAL", self.source, len(fenced), *fenced, *args)

    async def many(
        self,
        client: RedisClient,
        calls: Sequence[tuple[Sequence[str], Sequence[str | int | bytes]]],
    ) -> list[Any]:
        """Run the script once per ``(keys, args)`` in one pipeline; the replies in order.

        For READ-ONLY scripts: each call is atomic on its own (its keys share a slot), the
        calls are not atomic together, and a cluster client splits the pipeline per node
        and may resend it after a lost connection. Calls whose node had no cached copy are
        sent again with EVAL. The first error raises (engine errors are the caller's to wrap).
        """
        if not calls:
            return []
        fenced = [(self._fenced(client, keys), args) for keys, args in calls]
        replies = await _pipeline(client, [(self.sha, keys, args) for keys, args in fenced])
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            again = await _pipeline(
                client, [(None, fenced[i][0], fenced[i][1]) for i in missing], source=self.source
            )
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies


async def _run(client: RedisClient, *command: str | int | bytes) -> Any:
    """``client.execute_command(*command)``; on a client made here from a URL (one server),
    straight on a pooled connection. redis-py's execute_command adds a retry wrapper and its
    metrics hooks to every call, a tenth of a short script's round trip, and our clients have
    no retries. Errors are the same: redis-py's connection closes itself on a lost or timed
    out command, and a reply that is an error raises it."""
    if (
        not isinstance(client, aioredis.Redis)
        or not isinstance(client.connection_pool, _QueuedPool)
        or client.connection is not None  # a single-connection client
    ):
        return await client.execute_command(*command)
    pool = client.connection_pool
    connection = await pool.get_connection()
    try:
        await connection.send_packed_command(connection.pack_command(*command))
        return await connection.read_response()
    finally:
        await pool.release(connection)


async def _pipeline(
    client: RedisClient,
    calls: Sequence[tuple[str | None, Sequence[str], Sequence[str | int | bytes]]],
    *,
    source: str | None = None,
) -> list[Any]:
    """EVALSHA (or, without a sha, EVAL of ``source``) each call in one non-transactional
    pipeline; errors are returned in place of replies."""
    if isinstance(client, RedisCluster):
        pipe = client.pipeline(transaction=False)
    else:
        pipe = client.pipeline(transaction=False)  # type: ignore[assignment]
    for sha, keys, args in calls:
        # By name, not pipe.evalsha: redis-py's cluster pipeline blocks that method (a relic:
        # it routes EVALSHA by its keys like any keyed command, which is all we need).
        if sha is not None:
            pipe.execute_command("EVALSHA", sha, len(keys), *keys, *args)
        else:
            assert source is not None
            pipe.execute_command("EVAL", source, len(keys), *keys, *args)
    if isinstance(client, _BoundedCluster):
        return await client.run_pipeline(pipe)
    return list(await pipe.execute(raise_on_error=False))
