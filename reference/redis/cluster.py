"""A Redis Cluster for the kit and for tests: a local one on loopback, or one named by the user.

* :func:`local_cluster` starts ``redis-server --cluster-enabled yes`` processes on free loopback
  ports (``masters`` primaries, each with ``replicas`` replicas), joins them with
  ``redis-cli --cluster create``, waits until every node reports ``cluster_state:ok``, and stops
  them all on exit. Nothing is kept on disk (``--save ""``, ``--appendonly no``); the node
  configuration files live in a temporary directory.
* :class:`LocalCluster` is what it yields: the URL, the nodes, and the few administrative
  operations the failover and migration tests need (who serves a slot, kill a node, wait until
  the cluster is healthy again).
* :func:`kit_lifespan` is the ``lifespan`` of the ``redis-cluster`` backend: it uses the cluster
  named by :data:`CLUSTER_URL_VARIABLE` if set, else a local one of three primaries, and makes
  its URL available to the openers through :func:`current_url`.

A cluster named by :data:`CLUSTER_URL_VARIABLE` belongs to the user: the kit never flushes or
scans it; every store it opens writes under its own unique key prefix.

Every wait here is bounded: a node that does not answer, a ``cluster create`` that hangs or a
cluster that does not settle raises :class:`ClusterError` with the tail of the logs.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field

import redis

from . import server
from .server import RedisServerError, SharedLifespan, _launch, _ready, _stop

__all__ = [
    "CLUSTER_URL_VARIABLE",
    "ClusterError",
    "ClusterNode",
    "LocalCluster",
    "NodeInfo",
    "current_url",
    "kit_lifespan",
    "kit_url",
    "local_cluster",
]

#: The environment variable that names a node of an existing cluster (``redis://host:port``).
CLUSTER_URL_VARIABLE = "AGENTSTORES_REDIS_CLUSTER_URL"

#: Bounds of the waits, in seconds.
_NODE_START_TIMEOUT = 10.0
_CREATE_TIMEOUT = 60.0
_SETTLE_TIMEOUT = 30.0
#: The cluster bus listens on the client port + 10000: both must be free.
_BUS_OFFSET = 10_000
_PORT_ATTEMPTS = 50
#: Start a node on another port pair when its port was taken meanwhile.
_START_ATTEMPTS = 5


def _port_range() -> tuple[int, int]:
    """Ports whose bus port (+10000) is free of the kernel's ephemeral range too, so that no
    outgoing connection takes one between our probe and the server's bind."""
    low, high = 32_768, 60_999  # Linux's default ephemeral range
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as handle:
            low, high = (int(part) for part in handle.read().split())
    except (OSError, ValueError):
        pass
    if low - _BUS_OFFSET > 2_000:
        return 1_024 + 1_000, low - _BUS_OFFSET  # both ports below the ephemeral range
    return high + 1, 65_535 - _BUS_OFFSET  # both ports above it


#: Node timeout of a local cluster (ms): how long a silent primary takes to be failed over.
DEFAULT_NODE_TIMEOUT_MS = 2_000


class ClusterError(RedisServerError):
    """A local cluster could not be started or did not settle; the message says why."""


@dataclass
class ClusterNode:
    """One ``redis-server`` process of a :class:`LocalCluster`."""

    port: int
    process: subprocess.Popen[bytes]
    log: str

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the process is still alive."""
        return self.process.poll() is None


@dataclass(frozen=True)
class NodeInfo:
    """One line of ``CLUSTER NODES`` as a node sees it."""

    node_id: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    link_connected: bool
    slots: tuple[tuple[int, int], ...] = field(default=())

    @property
    def is_master(self) -> bool:
        """Whether the node is a primary (and not marked failed)."""
        return "master" in self.flags and "fail" not in self.flags


def _parse_nodes(text: str) -> list[NodeInfo]:
    nodes = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        address = parts[1].split("@", 1)[0]
        slots = []
        for item in parts[8:]:
            if item.startswith("["):  # a slot being migrated or imported
                continue
            first, _, last = item.partition("-")
            slots.append((int(first), int(last or first)))
        nodes.append(
            NodeInfo(
                node_id=parts[0],
                port=int(address.rsplit(":", 1)[1]),
                flags=frozenset(parts[2].split(",")),
                master_id=None if parts[3] == "-" else parts[3],
                link_connected=parts[7] == "connected",
                slots=tuple(slots),
            )
        )
    return nodes


def _ports_free(port: int) -> bool:
    for candidate in (port, port + _BUS_OFFSET):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", candidate))
            except OSError:
                return False
    return True


def _free_ports(count: int, taken: set[int]) -> list[int]:
    """``count`` ports whose bus ports (+10000) are free too."""
    chosen: list[int] = []
    for _ in range(_PORT_ATTEMPTS * count):
        port = random.randrange(*_port_range())
        if port in taken or port in chosen or not _ports_free(port):
            continue
        chosen.append(port)
        if len(chosen) == count:
            return chosen
    raise ClusterError(f"found no {count} free loopback port pairs for a cluster")


def _tail(path: str, size: int = 600) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()[-size:]
    except OSError:
        return ""


class LocalCluster:
    """A running local cluster (made by :func:`local_cluster`); administrative helpers.

    Attributes:
        nodes: every node started, by port, in start order (killed ones stay listed).
    """

    def __init__(self, nodes: Sequence[ClusterNode]) -> None:
        self.nodes = {node.port: node for node in nodes}

    @property
    def url(self) -> str:
        """The URL of the first node still running (a client discovers the rest from it)."""
        for node in self.nodes.values():
            if node.running:
                return f"redis://{node.address}"
        raise ClusterError("no node of the cluster is running")

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """(host, port) of every running node: startup nodes for a client."""
        return [("127.0.0.1", node.port) for node in self.nodes.values() if node.running]

    def admin(self, port: int) -> redis.Redis:
        """A synchronous client of one node, for administrative commands (close it)."""
        return redis.Redis(
            host="127.0.0.1",
            port=port,
            decode_responses=True,
            socket_timeout=5.0,
            socket_connect_timeout=2.0,
        )

    def command(self, port: int, *args: str | int) -> object:
        """Run one command on the node at ``port`` and return its reply."""
        with self.admin(port) as client:
            return client.execute_command(*args)

    def topology(self, port: int | None = None) -> list[NodeInfo]:
        """``CLUSTER NODES`` as seen by ``port`` (default: the first running node)."""
        if port is None:
            port = int(self.url.rsplit(":", 1)[1])
        reply = self.command(port, "CLUSTER", "NODES")
        return _parse_nodes(reply.decode() if isinstance(reply, bytes) else str(reply))

    def master_of_slot(self, slot: int) -> NodeInfo:
        """The primary that serves ``slot`` now."""
        for node in self.topology():
            if node.is_master and any(first <= slot <= last for first, last in node.slots):
                return node
        raise ClusterError(f"no primary serves slot {slot}")

    def replicas_of(self, master: NodeInfo) -> list[NodeInfo]:
        """The healthy replicas of ``master``."""
        return [
            node
            for node in self.topology()
            if node.master_id == master.node_id and "fail" not in node.flags
        ]

    def failover(self, replica_port: int, *, timeout: float = _SETTLE_TIMEOUT) -> None:
        """A planned failover: ``CLUSTER FAILOVER`` on a replica, which waits until it has all
        its primary's writes, then takes over; returns once it serves as primary.

        Raises:
            ClusterError: the replica is not a primary within ``timeout`` seconds.
        """
        self.command(replica_port, "CLUSTER", "FAILOVER")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            role = self.command(replica_port, "ROLE")
            if isinstance(role, list) and role and role[0] == "master":
                return
            time.sleep(0.02)
        raise ClusterError(f"replica {replica_port} did not take over within {timeout:.0f} s")

    def migrate_slot(
        self, slot: int, to_port: int, *, keys_per_step: int = 1, pause: float = 0.0
    ) -> None:
        """Move ``slot`` to the primary at ``to_port`` as ``redis-cli --cluster reshard`` does:
        mark it importing and migrating, ``MIGRATE`` its keys ``keys_per_step`` at a time
        (sleeping ``pause`` seconds between steps, so that clients run in between and meet
        ``ASK`` and ``TRYAGAIN``), then give the slot to the target on every primary."""
        source = self.master_of_slot(slot)
        masters = [node for node in self.topology() if node.is_master]
        target = next(node for node in masters if node.port == to_port)
        if target.node_id == source.node_id:
            return
        self.command(to_port, "CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id)
        self.command(source.port, "CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id)
        while True:
            keys = self.command(source.port, "CLUSTER", "GETKEYSINSLOT", slot, keys_per_step)
            if not isinstance(keys, list) or not keys:
                break
            self.command(source.port, "MIGRATE", "127.0.0.1", to_port, "", 0, 5000, "KEYS", *keys)
            if pause:
                time.sleep(pause)
        # The target first, then the source, then the others (the order the Redis manual gives).
        others = [node for node in masters if node.port not in (to_port, source.port)]
        for node in [target, source, *others]:
            self.command(node.port, "CLUSTER", "SETSLOT", slot, "NODE", target.node_id)

    def kill(self, port: int) -> None:
        """SIGKILL the node at ``port`` (a crash: no shutdown, nothing flushed)."""
        _stop(self.nodes[port].process, sig=signal.SIGKILL)

    def _problem(self, expect_replicas: int) -> str | None:
        """Why the cluster is not healthy yet, or None when it is."""
        running = [node for node in self.nodes.values() if node.running]
        for node in running:
            try:
                info = str(self.command(node.port, "CLUSTER", "INFO"))
            except redis.RedisError as exc:
                return f"{node.address} does not answer: {exc}"
            if "cluster_state:ok" not in info:
                return f"{node.address} does not report cluster_state:ok"
        views = {}
        for node in running:
            try:
                topology = self.topology(node.port)
            except redis.RedisError as exc:
                return f"{node.address} does not answer: {exc}"
            views[node.port] = sorted(
                (n.slots, n.port) for n in topology if n.is_master and n.slots
            )
            masters = [n for n in topology if n.is_master and n.slots]
            if any(not self.nodes[n.port].running for n in masters):
                return f"{node.address} still names a stopped node as a primary"
            for master in masters:
                healthy = [
                    n
                    for n in topology
                    if n.master_id == master.node_id and "fail" not in n.flags and n.link_connected
                ]
                if len(healthy) < expect_replicas:
                    return f"primary {master.port} has {len(healthy)} of {expect_replicas} replicas"
        if len({repr(view) for view in views.values()}) > 1:
            return "the nodes disagree about who serves which slots"
        for node in running:
            role = self.command(node.port, "ROLE")
            if isinstance(role, list) and role and role[0] == "slave" and role[3] != "connected":
                return f"replica {node.address} is not in sync with its primary yet"
        return None

    def wait_until_healthy(
        self, *, expect_replicas: int = 0, timeout: float = _SETTLE_TIMEOUT
    ) -> None:
        """Wait until every running node says ``cluster_state:ok``, all agree on the slots, no
        stopped node is named a primary, and each primary has ``expect_replicas`` replicas in
        sync.

        Raises:
            ClusterError: not within ``timeout`` seconds (the message says what was missing).
        """
        deadline = time.monotonic() + timeout
        problem: str | None = "not checked yet"
        while time.monotonic() < deadline:
            problem = self._problem(expect_replicas)
            if problem is None:
                return
            time.sleep(0.05)
        raise ClusterError(f"the cluster did not settle within {timeout:.0f} s: {problem}")

    def stop(self) -> None:
        """Stop every node (terminate, then kill what does not stop in time)."""
        for node in self.nodes.values():
            _stop(node.process)


def _start_node(binary: str, port: int, directory: str, node_timeout_ms: int) -> ClusterNode:
    log = os.path.join(directory, f"redis-{port}.log")
    process = _launch(
        binary,
        port,
        directory,
        log,
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        os.path.join(directory, f"nodes-{port}.conf"),
        "--cluster-node-timeout",
        str(node_timeout_ms),
        # A replica's first sync would otherwise wait 5 s for more replicas to join it.
        "--repl-diskless-sync-delay",
        "0",
    )
    timed_out = ClusterError(
        f"redis-server on port {port} did not answer within {_NODE_START_TIMEOUT} s"
    )
    if not _ready(process, port, timeout=_NODE_START_TIMEOUT, timed_out=timed_out):
        raise ClusterError(f"redis-server on port {port} exited; its log ends:\n{_tail(log)}")
    return ClusterNode(port, process, log)


def _start_on_a_free_port(
    binary: str, directory: str, node_timeout_ms: int, started: Sequence[ClusterNode]
) -> ClusterNode:
    """Start one node on a free port pair; another pair if the port was taken meanwhile."""
    taken = {node.port for node in started}
    failure: ClusterError | None = None
    for _ in range(_START_ATTEMPTS):
        (port,) = _free_ports(1, taken)
        try:
            return _start_node(binary, port, directory, node_timeout_ms)
        except ClusterError as exc:
            if "Address already in use" not in str(exc):
                raise
            failure = exc
            taken.add(port)
    assert failure is not None
    raise failure


@contextmanager
def local_cluster(
    *,
    masters: int = 3,
    replicas: int = 0,
    node_timeout_ms: int = DEFAULT_NODE_TIMEOUT_MS,
    binary: str = "redis-server",
    cli: str = "redis-cli",
) -> Iterator[LocalCluster]:
    """Run a private Redis Cluster on loopback and yield it; stop every node on exit.

    Args:
        masters: primaries (at least 3, as ``redis-cli --cluster create`` requires).
        replicas: replicas per primary (1 for failover tests).
        node_timeout_ms: ``cluster-node-timeout``; a crashed primary is failed over after
            about this long.

    Raises:
        ClusterError: a binary is missing, a node would not start or the cluster did not form.
    """
    if masters < 3:
        raise ValueError("a Redis Cluster needs at least 3 primaries")
    server_path = shutil.which(binary)
    cli_path = shutil.which(cli)
    if server_path is None or cli_path is None:
        missing = binary if server_path is None else cli
        raise ClusterError(
            f"cannot start a local Redis Cluster: {missing!r} not found on PATH. Install "
            f"redis-server (it brings redis-cli) or point {CLUSTER_URL_VARIABLE} at a node of "
            "a running cluster (e.g. redis://localhost:7000)"
        )
    with tempfile.TemporaryDirectory(prefix="agentstores-cluster-") as directory:
        started: list[ClusterNode] = []
        try:
            for _ in range(masters * (1 + replicas)):
                started.append(
                    _start_on_a_free_port(server_path, directory, node_timeout_ms, started)
                )
            cluster = LocalCluster(started)
            command = [
                cli_path,
                "--cluster",
                "create",
                *(node.address for node in started),
                "--cluster-replicas",
                str(replicas),
                "--cluster-yes",
            ]
            try:
                created = subprocess.run(
                    command,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    timeout=_CREATE_TIMEOUT,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise ClusterError(
                    f"redis-cli --cluster create took over {_CREATE_TIMEOUT} s"
                ) from exc
            if created.returncode != 0:
                output = (created.stdout + created.stderr).decode(errors="replace")[-800:]
                raise ClusterError(f"redis-cli --cluster create failed:\n{output}")
            cluster.wait_until_healthy(expect_replicas=replicas)
            yield cluster
        finally:
            for node in started:
                _stop(node.process)


# --- the kit's lifespan ---------------------------------------------------------------------


@contextmanager
def _local_cluster_url() -> Iterator[str]:
    with local_cluster() as cluster:
        yield cluster.url


_LIFESPAN = SharedLifespan(
    CLUSTER_URL_VARIABLE,
    _local_cluster_url,
    not_entered=(
        "the Redis Cluster backend's lifespan is not entered: run the stores inside "
        "'with agentstores.reference.redis.cluster.kit_lifespan():' (the kit does this "
        "through Backend.lifespan), or pass a cluster URL or client to the store yourself"
    ),
)


def current_url() -> str:
    """The URL of a node of the cluster of the entered :func:`kit_lifespan`.

    Raises:
        LifespanNotEntered: no cluster lifespan is entered (the kit enters ``Backend.lifespan``
            before opening stores; code that opens stores itself wraps them in
            ``with kit_lifespan():`` or gives the store a cluster URL or client).
    """
    return _LIFESPAN.current_url()


def kit_lifespan() -> AbstractContextManager[None]:
    """Provide a Redis Cluster for the kit while entered; nested entries share one cluster.

    Uses the cluster named by ``$AGENTSTORES_REDIS_CLUSTER_URL`` if set (never flushed or
    scanned: each store keeps to its own key prefix), otherwise starts a :func:`local_cluster`
    of three primaries when the outermost ``with`` is entered and stops it when the last one is
    left. While a local cluster runs, a node's URL is in ``$AGENTSTORES_REDIS_CLUSTER_URL``, so
    that child processes of the kit (its multi-process checks) reach the same cluster.
    """
    return _LIFESPAN.entered()


def kit_url(*, cluster: bool) -> str:
    """The URL the kit's openers use: the cluster's (:func:`current_url`) or the single
    server's (:func:`agentstores.reference.redis.server.current_url`)."""
    return current_url() if cluster else server.current_url()
