"""The Redis server the reference backend talks to: a disposable one, or one named by the user.

* :func:`disposable_server` starts a private ``redis-server`` on a free loopback port, without
  persistence, in a temporary directory, and stops it on exit. Tests use it; so can anyone who
  wants a throw-away Redis.
* :func:`kit_lifespan` is the backend's ``lifespan`` (see
  :class:`agentstores.conformance.backend.Backend`): it uses the server named by the
  environment variable :data:`URL_VARIABLE` if set, else a disposable one, and makes its URL
  available to the openers through :func:`current_url`.
* :class:`SharedLifespan` is the reference count behind it, shared with the cluster backend's
  lifespan (:mod:`agentstores.reference.redis.cluster`).

A server named by :data:`URL_VARIABLE` belongs to the user: the kit never flushes or scans it;
every store it opens writes under its own unique key prefix.

This module needs no Redis driver: it checks readiness with a raw ``PING`` over a socket.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager

__all__ = [
    "URL_VARIABLE",
    "LifespanNotEntered",
    "RedisServerError",
    "SharedLifespan",
    "current_url",
    "disposable_server",
    "kit_lifespan",
]

#: The environment variable that names an existing server (``redis://host:port/db``).
URL_VARIABLE = "AGENTSTORES_REDIS_URL"

#: How long a fresh server may take to answer PING, and to stop, in seconds.
_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 5.0
#: A free port can be taken by someone else between our probe and the server's bind; retry.
_PORT_ATTEMPTS = 5


class RedisServerError(RuntimeError):
    """A disposable ``redis-server`` could not be started; the message says how to fix it."""


class LifespanNotEntered(RuntimeError):
    """A Redis store was opened by the kit outside the backend's lifespan."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _answers_ping(port: int) -> bool:
    """Whether a Redis server on the loopback ``port`` answers PING with PONG right now."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes], *, sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` (default: terminate); kill the process if it has not stopped in time."""
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _launch(
    binary: str, port: int, directory: str, log: str, *options: str
) -> subprocess.Popen[bytes]:
    """Start ``redis-server`` on the loopback ``port`` with ``options``, keeping nothing on
    disk, working in ``directory`` and logging to ``log``; it is not ready yet."""
    command = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        *options,
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        directory,
        "--daemonize",
        "no",
        "--logfile",
        log,
    ]
    return subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _ready(
    process: subprocess.Popen[bytes], port: int, *, timeout: float, timed_out: RedisServerError
) -> bool:
    """Wait until the server answers PING on ``port`` (True) or its process exits (False);
    after ``timeout`` seconds, stop it and raise ``timed_out``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if _answers_ping(port):
            return True
        time.sleep(0.02)
    _stop(process)
    raise timed_out


def _start(binary: str, port: int, directory: str) -> subprocess.Popen[bytes] | None:
    """Start the server on ``port``; the process once it answers PING, None if it exited."""
    process = _launch(binary, port, directory, os.path.join(directory, "redis.log"))
    timed_out = RedisServerError(f"redis-server did not answer PING within {_START_TIMEOUT:.0f} s")
    if _ready(process, port, timeout=_START_TIMEOUT, timed_out=timed_out):
        return process
    return None  # most likely the port was taken meanwhile; the caller retries


@contextmanager
def disposable_server(*, binary: str = "redis-server") -> Iterator[str]:
    """Run a private ``redis-server`` and yield its URL (``redis://127.0.0.1:PORT/0``).

    The server listens on a free loopback port, keeps nothing on disk (``--save ""``,
    ``--appendonly no``), works in a temporary directory, and is stopped on exit (terminated,
    then killed if it does not stop within a few seconds).

    Raises:
        RedisServerError: the binary is missing or the server would not start.
    """
    path = shutil.which(binary)
    if path is None:
        raise RedisServerError(
            f"cannot start a disposable Redis: {binary!r} not found on PATH. Install it "
            f"(apt-get install redis-server) or point {URL_VARIABLE} at a running server "
            "(e.g. redis://localhost:6379/0)"
        )
    with tempfile.TemporaryDirectory(prefix="agentstores-redis-") as directory:
        process = None
        for _ in range(_PORT_ATTEMPTS):
            port = _free_port()
            process = _start(path, port, directory)
            if process is not None:
                break
        if process is None:
            log = os.path.join(directory, "redis.log")
            tail = ""
            if os.path.exists(log):
                with open(log, encoding="utf-8", errors="replace") as handle:
                    tail = handle.read()[-500:]
            raise RedisServerError(f"redis-server exited at start-up; its log ends:\n{tail}")
        try:
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            _stop(process)


# --- the kit's lifespan ---------------------------------------------------------------------


class SharedLifespan:
    """A server (or cluster) the kit shares while entered: the outermost entry uses the one
    named by the environment variable ``variable``, or else starts one with ``start`` (a
    context manager yielding its URL) and puts its URL in ``variable`` for child processes;
    the last exit stops it.

    One lock guards the counter, the URL and the start/stop, so that a nested or concurrent
    entry never sees a half-started server.

    Args:
        variable: the environment variable that names an existing server.
        start: starts a disposable server and yields its URL; stops it on exit.
        not_entered: the message of :class:`LifespanNotEntered` when no entry is open.
    """

    def __init__(
        self,
        variable: str,
        start: Callable[[], AbstractContextManager[str]],
        *,
        not_entered: str,
    ) -> None:
        self._variable = variable
        self._start = start
        self._not_entered = not_entered
        self._lock = threading.RLock()
        self._depth = 0
        self._url: str | None = None
        self._server = ExitStack()

    def current_url(self) -> str:
        """The URL of the shared server; LifespanNotEntered if no entry is open."""
        with self._lock:
            if self._url is None:
                raise LifespanNotEntered(self._not_entered)
            return self._url

    @contextmanager
    def entered(self) -> Iterator[None]:
        """Hold the shared server while entered; nested entries share it."""
        with self._lock:
            if self._depth == 0:
                given = os.environ.get(self._variable, "").strip()
                self._url = given or self._server.enter_context(self._start())
                if not given:
                    os.environ[self._variable] = self._url
                    self._server.callback(os.environ.pop, self._variable, None)
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    self._url = None
                    self._server.close()


_LIFESPAN = SharedLifespan(
    URL_VARIABLE,
    disposable_server,
    not_entered=(
        "the Redis backend's lifespan is not entered: run the stores inside "
        "'with agentstores.reference.redis.server.kit_lifespan():' (the kit does this "
        "through Backend.lifespan), or pass a URL to the store yourself"
    ),
)


def current_url() -> str:
    """The URL of the server of the entered :func:`kit_lifespan`.

    Raises:
        LifespanNotEntered: no lifespan is entered. The kit enters ``Backend.lifespan`` before
            opening stores; code that opens stores itself wraps them in ``with kit_lifespan():``
            or constructs the store with an explicit URL.
    """
    return _LIFESPAN.current_url()


def kit_lifespan() -> AbstractContextManager[None]:
    """Provide a Redis server for the kit while entered; nested entries share one server.

    Uses the server named by ``$AGENTSTORES_REDIS_URL`` if set (never flushed or scanned: each
    store keeps to its own key prefix), otherwise starts a :func:`disposable_server` when the
    outermost ``with`` is entered and stops it when the last one is left. While a disposable
    server runs, its URL is in ``$AGENTSTORES_REDIS_URL``, so that the child processes of the
    kit's fault checks (which enter this lifespan too) reach the same server.
    """
    return _LIFESPAN.entered()
