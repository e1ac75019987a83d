"""The SQLite engine under every family's store: one connection, one worker thread, a schema.

Each store object owns one :class:`Database`. The database owns one stdlib ``sqlite3``
connection that lives in, and is only ever used from, one dedicated worker thread (named
``agentstores-sqlite-N``). That keeps blocking I/O off the event loop and runs the operations
of one store object one after the other, in submission order. Several stores (other families,
other prefixes, other processes) may share one database file: each has its own connection, and
SQLite's locking serialises their writes.

The worker takes jobs from a queue and hands each result back with
``loop.call_soon_threadsafe``: one queue put and one wake-up of the loop per operation, about
half the overhead of ``run_in_executor`` (no ``concurrent.futures.Future`` to chain). A job
whose caller was cancelled before it started is skipped, as an executor would skip it.

A store calls :meth:`Database.read` or :meth:`Database.write` with a plain function of the
connection; the function runs inside one transaction in the worker thread (a read of exactly
one statement may use :meth:`Database.query`, which spares the BEGIN and COMMIT, and
:meth:`Database.start_write` lets the loop's side work while the worker commits)::

    def insert(conn: sqlite3.Connection) -> None:
        conn.execute(f"INSERT INTO {db.table('things')} VALUES (?)", (value,))

    await db.write(insert)

Errors: a :class:`~agentstores.spec.errors.StoreError` raised by the function (``NotFound``,
``Conflict``...) rolls the transaction back and reaches the caller unchanged; ``sqlite3.Error``
and ``OSError`` roll back and become ``StorageUnavailable`` with the engine error as its cause
(G-11). Anything else is a bug and propagates as is (after the rollback).

Schema: each family gives its migrations, a list of SQL scripts (or functions) applied in order
the first time the database is used. The version reached is kept per (prefix, family) in the
table ``{prefix}schema_version``, so several families and namespaces can share one file.

Settings, and why:

* ``journal_mode=WAL``: readers never block the writer and see a consistent snapshot, so a
  compound write (a checkpoint) is never seen half done (G-17).
* ``synchronous=FULL`` by default: in WAL mode FULL syncs the log at every commit, so an
  acknowledged write survives a power cut as well as a killed process, matching the JSON
  backend, which fsyncs every write. ``NORMAL`` (pass ``synchronous="NORMAL"``) syncs only at
  checkpoints: still consistent and safe against a killed process, but an OS crash may lose the
  last commits. Choose it for throughput when that is acceptable.
* ``busy_timeout``: how long a connection waits for another connection's lock (another store
  on the file, another process) before giving up with ``StorageUnavailable``.
* writes start with ``BEGIN IMMEDIATE``: the write lock is taken up front, so two processes
  never both read a row and then both write it (no lost updates across processes), and a
  write transaction never fails half-way on a lock upgrade.
* ``foreign_keys=ON``, so families may declare ``REFERENCES ... ON DELETE CASCADE``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import os
import queue
import re
import sqlite3
import threading
import weakref
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Literal, TypeAlias, TypeVar, cast

from agentstores.conformance.backend import StoreContext
from agentstores.spec.errors import InvalidArgument, StorageUnavailable, StoreError

__all__ = [
    "DATABASE_FILE",
    "DEFAULT_BUSY_TIMEOUT",
    "WORKER_PREFIX",
    "Database",
    "Migration",
    "Synchronous",
    "check_prefix",
    "context_location",
    "quote_table",
    "split_script",
]

T = TypeVar("T")

#: A schema step: an SQL script in which every ``{prefix}`` is replaced by the table prefix
#: (write identifiers quoted: ``"{prefix}threads"``), or a function ``(connection, prefix)``
#: for steps that SQL alone cannot express. Steps run inside the migration transaction: never
#: issue BEGIN or COMMIT in them.
Migration: TypeAlias = str | Callable[[sqlite3.Connection, str], None]

#: The ``PRAGMA synchronous`` levels a :class:`Database` accepts (see the module docstring).
Synchronous: TypeAlias = Literal["NORMAL", "FULL"]

#: Seconds a write waits for another connection's lock (another store, another process) before
#: it fails with StorageUnavailable; readers never wait for a writer (WAL).
DEFAULT_BUSY_TIMEOUT = 10.0

#: The database file of a kit context, in ``StoreContext.root``; every family shares it.
DATABASE_FILE = "agentstores.sqlite3"

#: Table prefixes are at most this long (table names stay readable and well under limits).
MAX_PREFIX_LENGTH = 64

_PREFIX = re.compile(r"[A-Za-z0-9_]*")

#: The worker threads' names start with this (the engine-fault injector of ``_faults.py``
#: counts only the statements run in such threads).
WORKER_PREFIX = "agentstores-sqlite"
_worker_numbers = itertools.count(1)

#: A unit of work for the worker thread; None stops the thread.
_Job: TypeAlias = Callable[[], None]


def check_prefix(prefix: object) -> str:
    """Return ``prefix`` if it is a valid table prefix, else raise InvalidArgument.

    Valid: ASCII letters, digits and underscores, at most :data:`MAX_PREFIX_LENGTH` of them
    (the empty prefix too), not starting with ``sqlite_``, which SQLite reserves. Because the
    alphabet has no quote characters, a prefixed name is safe inside double quotes.
    """
    if not isinstance(prefix, str):
        raise InvalidArgument(f"table prefix must be a str, not {type(prefix).__name__}")
    if len(prefix) > MAX_PREFIX_LENGTH or not _PREFIX.fullmatch(prefix):
        raise InvalidArgument(
            f"table prefix {prefix!r} must be at most {MAX_PREFIX_LENGTH} ASCII letters, "
            "digits or underscores"
        )
    if prefix.lower().startswith("sqlite_"):
        raise InvalidArgument("table prefix must not start with 'sqlite_' (reserved by SQLite)")
    return prefix


def quote_table(prefix: str, name: str) -> str:
    """The quoted identifier of table (or index) ``name`` under ``prefix``: ``"{prefix}{name}"``."""
    check_prefix(prefix)
    if not _PREFIX.fullmatch(name) or not name:
        raise InvalidArgument(f"table name {name!r} must be ASCII letters, digits or underscores")
    return f'"{prefix}{name}"'


def context_location(context: StoreContext) -> tuple[Path, str]:
    """Where the kit's context ``context`` lives: the database file and the table prefix.

    Every family of a context uses ``context.root / DATABASE_FILE`` and the prefix
    ``context.namespace + "_"``; two contexts on one root share the file, not the tables.
    """
    return context.root / DATABASE_FILE, check_prefix(context.namespace + "_")


def split_script(script: str) -> list[str]:
    """Split an SQL script into complete statements (CREATE TRIGGER bodies stay whole).

    ``sqlite3``'s ``executescript`` commits any open transaction first, so migrations run
    their statements one at a time through ``execute`` instead, inside one transaction.
    """
    statements: list[str] = []
    current = ""
    for piece in script.split(";"):
        current += piece + ";"
        if sqlite3.complete_statement(current):
            if current.strip(" \t\r\n;"):
                statements.append(current.strip())
            current = ""
    if current.strip(" \t\r\n;"):
        raise ValueError(f"incomplete SQL statement in migration: {current.strip()!r}")
    return statements


class Database:
    """One SQLite connection, driven from one worker thread, for one store object.

    Args:
        path: the database file (created if missing; its directory must exist), or
            ``":memory:"`` for a private in-memory database.
        prefix: the table prefix of this store (see :func:`check_prefix`).
        family: the name the schema version is kept under (e.g. ``"thread_run"``).
        migrations: the family's schema steps in order; step ``i`` brings the schema from
            version ``i`` to ``i + 1``. Append new steps, never edit shipped ones.
        synchronous: ``"FULL"`` (default) or ``"NORMAL"``; see the module docstring.
        busy_timeout: seconds to wait for another connection's lock.

    Nothing touches the file until :meth:`open` or the first :meth:`read`/:meth:`write`,
    which connect, set the pragmas and migrate. Raises InvalidArgument for a bad prefix.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        prefix: str,
        family: str,
        migrations: Sequence[Migration],
        synchronous: Synchronous = "FULL",
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    ) -> None:
        self.prefix = check_prefix(prefix)
        if synchronous not in ("NORMAL", "FULL"):
            raise InvalidArgument(f"synchronous must be 'NORMAL' or 'FULL', not {synchronous!r}")
        if busy_timeout < 0:
            raise InvalidArgument("busy_timeout must not be negative")
        self.path = os.fspath(path)
        self.family = family
        self._migrations = tuple(migrations)
        self._synchronous = synchronous
        self._busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None  # only touched in the worker thread
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None  # started by the first operation
        self._worker_lock = threading.Lock()
        self._close_future: concurrent.futures.Future[None] | None = None
        # A store dropped without close() still stops its thread (the thread only holds the
        # queue, never the database).
        weakref.finalize(self, self._jobs.put, None)

    # --- public API ------------------------------------------------------------------------

    def table(self, name: str) -> str:
        """The quoted name of this store's table (or index) ``name``: ``"{prefix}{name}"``."""
        return quote_table(self.prefix, name)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._close_future is not None

    async def open(self) -> None:
        """Connect and migrate now rather than on first use (surfaces errors early)."""
        await self._finish(self._enqueue(lambda: None))

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` in one read transaction (one snapshot) and return its value.

        ``fn`` runs in the worker thread: it must not touch the event loop or await.
        """
        return await self._finish(self._enqueue(lambda: self._transaction("BEGIN", fn)))

    async def query(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)``, which issues exactly one statement (a SELECT), and return its
        value.

        Outside BEGIN and COMMIT a statement is its own read transaction: it sees one snapshot,
        as :meth:`read` does, for two statements less. ``fn`` runs in the worker thread.
        """
        return await self._finish(self._enqueue(lambda: fn(self._connect())))

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` in one ``BEGIN IMMEDIATE`` transaction, committed if it returns.

        Any exception rolls everything back. ``fn`` runs in the worker thread.
        """
        return await self._finish(self._enqueue(lambda: self._transaction("BEGIN IMMEDIATE", fn)))

    def start_write(self, fn: Callable[[sqlite3.Connection], T]) -> Awaitable[T]:
        """Queue :meth:`write` of ``fn`` now and return what to await for its result.

        The caller may do other work on the loop's side (it must not depend on ``fn``) while
        the worker runs the transaction and waits for the disk: the two overlap. Await the
        result exactly once, also when that other work fails.
        """
        return self._finish(self._enqueue(lambda: self._transaction("BEGIN IMMEDIATE", fn)))

    async def close(self) -> None:
        """Finish queued operations, close the connection and stop the worker; idempotent."""
        if self._close_future is None:
            closed: concurrent.futures.Future[None] = concurrent.futures.Future()
            self._close_future = closed
            with self._worker_lock:
                started = self._worker is not None
            if started:

                def disconnect() -> None:
                    try:
                        self._disconnect()
                    except BaseException as exc:
                        closed.set_exception(exc)
                    else:
                        closed.set_result(None)

                self._jobs.put(disconnect)  # after every queued operation
                self._jobs.put(None)
            else:
                closed.set_result(None)  # never connected
        try:
            await asyncio.wrap_future(self._close_future)
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"sqlite: closing {self.path}: {exc}") from exc

    # --- worker side -----------------------------------------------------------------------

    async def _finish(self, future: asyncio.Future[T]) -> T:
        try:
            return await future
        except StoreError:
            raise
        except (sqlite3.Error, OSError) as exc:
            raise StorageUnavailable(f"sqlite: {self.path}: {exc}") from exc

    def _enqueue(self, job: Callable[[], T]) -> asyncio.Future[T]:
        """Queue ``job`` for the worker thread; the future gets its result in this loop."""
        if self._close_future is not None:
            raise StorageUnavailable("the store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def run() -> None:
            # Reading the state of a future of another thread is safe; skipping a job whose
            # caller has gone is what an executor does with a cancelled, not started job.
            if future.cancelled():
                return
            try:
                self._connect()
                result = job()
            except BaseException as exc:
                _hand_back(loop, future, None, exc)
            else:
                _hand_back(loop, future, result, None)

        if self._worker is None:
            self._start_worker()
        self._jobs.put(run)
        return future

    def _start_worker(self) -> None:
        with self._worker_lock:
            if self._worker is None:
                # A daemon: the interpreter's exit never waits for a store nobody closed (an
                # exit during a transaction is a crash, which the write-ahead log survives).
                worker = threading.Thread(
                    target=_serve,
                    args=(self._jobs,),
                    name=f"{WORKER_PREFIX}-{next(_worker_numbers)}",
                    daemon=True,
                )
                worker.start()
                self._worker = worker

    def _transaction(self, begin: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._connect()
        conn.execute(begin)
        try:
            result = fn(conn)
            conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            if conn.in_transaction:
                # The rollback failed too (the disk is gone): never reuse a connection stuck
                # in a transaction; closing it rolls back, and the next operation reconnects.
                with contextlib.suppress(sqlite3.Error):
                    self._disconnect()
            raise
        return result

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            # SQLite may already have rolled back (e.g. after an I/O error); the original
            # exception is the one worth reporting.
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        # Only now: a failed first open is retried on the next operation.
        self._conn = conn
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        versions = quote_table(self.prefix, "schema_version")
        target = len(self._migrations)
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {versions} "
                "(family TEXT PRIMARY KEY NOT NULL, version INTEGER NOT NULL)"
            )
            row = conn.execute(
                f"SELECT version FROM {versions} WHERE family = ?", (self.family,)
            ).fetchone()
            current = 0 if row is None else int(row[0])
            if current > target:
                raise StorageUnavailable(
                    f"{self.path}: the {self.family} schema of prefix {self.prefix!r} is at "
                    f"version {current}, newer than this code knows ({target})"
                )
            for step in self._migrations[current:]:
                if isinstance(step, str):
                    for statement in split_script(step.replace("{prefix}", self.prefix)):
                        conn.execute(statement)
                else:
                    step(conn, self.prefix)
            if current != target:
                conn.execute(
                    f"INSERT INTO {versions} (family, version) VALUES (?, ?) "
                    "ON CONFLICT (family) DO UPDATE SET version = excluded.version",
                    (self.family, target),
                )
            conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            raise

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def _serve(jobs: queue.SimpleQueue[_Job | None]) -> None:
    """The worker thread: run jobs in order until None.

    A job hands its own outcome back and raises nothing; should one raise all the same, the
    thread goes on, or every later operation of the store would wait for ever (G-22).
    """
    while (job := jobs.get()) is not None:
        with contextlib.suppress(BaseException):
            job()
        del job  # drop the job (and what it holds) before waiting for the next one


def _hand_back(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[T],
    result: T | None,
    exc: BaseException | None,
) -> None:
    """From the worker thread: settle ``future`` in its loop's thread."""

    def settle() -> None:
        if future.cancelled():
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(cast(T, result))  # a T whenever exc is None

    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        loop.call_soon_threadsafe(settle)
