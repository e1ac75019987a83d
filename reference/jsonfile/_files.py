"""File machinery shared by the JSON-file stores of every family.

A JSON store is one directory. This module gives each family the same small set of tools:

* :func:`name_for`: a bounded, filesystem-safe file name for an id or a tuple of ids that is
  distinct for distinct inputs (G-2). It is the SHA-256 of a length-prefixed encoding of the
  components, in lower-case hex, so separators in ids cannot collide, no id can escape the
  directory, and case-insensitive file systems cannot merge two names. The name cannot be read
  back, so each file keeps its original ids inside: a family lists records from the file
  contents or from an index log, and checks the ids on reading (a mismatch would mean a
  SHA-256 collision or a damaged file).
* :func:`write_atomic`: whole-file replace (temp file in the same directory, fsync,
  ``os.replace``, fsync of the directory). Readers see the old file or the new one, never a
  torn one, and a crash keeps one of them.
* :class:`JsonLinesLog`: an append-only JSON Lines file for O(1) appends and for indexes.
  Every append is fsynced; a torn last line (a crash mid-append) is ignored by readers and cut
  off by the next append, so records written before it survive. A header line carries an
  *epoch* that changes whenever the log is rewritten (compacted), so a reader that caches the
  log's contents can read only the new tail (:class:`LogPosition`).
* :class:`Transaction`: several file changes that become visible together. New contents go to
  fsynced temp files first; then one journal file lists the renames, removals and appends
  (including appends to :mod:`._records` logs, :meth:`Transaction.write_at`); then they are
  applied and the journal is removed. A journal left by a crash is rolled forward before
  anything else touches the directory (:func:`recover`).
* :class:`StoreDirectory`: runs one operation at a time under the directory's lock: an
  ``asyncio.Lock`` for the tasks of one store object and ``fcntl.flock`` on a lock file for
  other store objects and other processes. ``OSError`` (and undecodable files) become
  :class:`~agentstores.spec.errors.StorageUnavailable`. The lock file also holds *change marks*
  (:meth:`StoreDirectory.new_change_mark`): random values a store rewrites before it makes a
  kind of change, so that store objects that cache what they read between operations (the
  session store and session service) know, with one read, whether another object or process
  changed something since. It also keeps the descriptors of the last few files appended to
  open between operations (:meth:`StoreDirectory.open_file`), so that an append costs no
  ``open`` and ``close``; a kept descriptor is used only while its file is still linked.

The append-only, checksummed record logs in which the session store and the session service
keep conversations are in :mod:`._records`.

Why whole operations run in a worker thread instead of awaiting ``aiofiles`` call by call: a
read-modify-write must hold the file lock from its first read to its last write, and must not
be abandoned half-way when the awaiting task is cancelled. :meth:`StoreDirectory.run` hands a
plain function to a worker thread that takes the lock, runs the function and releases the lock;
a cancelled caller stops waiting, but the thread finishes the operation and only then lets the
next one in. The event loop never blocks on disk or on the lock. The worker threads are a pool of
this module's that hands each job to the most recently idle thread and the result back with one
``call_soon_threadsafe`` (:class:`_WorkerPool`): one thread hand-off each way per operation.

Everything here is synchronous and must run inside :meth:`StoreDirectory.run` (that is, holding
the lock), except :func:`name_for`, :func:`encode_json` and :func:`decode_json`. POSIX only
(``fcntl``); the directory must be on a local file system where ``flock`` works.

A family store uses it like this (validate and copy the arguments first, so that bad input
writes nothing and later changes to the caller's objects are not stored, G-5, G-7)::

    directory = StoreDirectory(path, subdirectories=("sessions", "events"))

    async def append_event(self, session_id: str, event: Event) -> None:
        record = copy.deepcopy(event_to_json(check_event(event)))  # before the lock
        session_file = directory.path / "sessions" / name_for(session_id)
        events = directory.log(f"events/{name_for(session_id, suffix='.jsonl')}")

        def append() -> None:  # runs in a worker thread, holding the lock
            if read_file(session_file) is None:
                raise NotFound(session_id)
            transaction = directory.transaction()
            transaction.append(events, [record])
            transaction.replace(session_file, new_session_bytes)  # visible together
            transaction.commit()

        await directory.run(append)
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import fcntl
import hashlib
import itertools
import json
import os
import queue
import secrets
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar, cast

from agentstores.spec.errors import InvalidArgument, StorageUnavailable, StoreError
from agentstores.spec.values import JSONValue, dump_json

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "JOURNAL_NAME",
    "LOCK_NAME",
    "MARK_SERVICE_CHANGES",
    "MARK_SERVICE_SESSIONS",
    "MARK_SERVICE_SHARED",
    "MARK_SESSION_STORE_FILES",
    "TEMP_PREFIX",
    "JsonLinesLog",
    "LogPosition",
    "LogRead",
    "StoreDirectory",
    "Transaction",
    "decode_json",
    "encode_json",
    "fsync_directory",
    "is_watched",
    "name_for",
    "pwrite_all",
    "read_file",
    "recover",
    "remove_file",
    "sweep_temp_files",
    "write_at",
    "write_atomic",
]

T = TypeVar("T")

#: The lock file every operation on a store directory flocks.
LOCK_NAME = ".lock"
#: The journal of a multi-file transaction; present only while one is being applied.
JOURNAL_NAME = ".journal.json"
#: Temp files start with this; left-overs of crashed writers are removed under the lock.
TEMP_PREFIX = ".tmp-"
#: Change-mark slots (:meth:`StoreDirectory.new_change_mark`), distinct for every family that
#: may share a directory. Session store: a session file or log written other than by an
#: append. Session service: a session's log removed; an ``app:`` or ``user:`` state replaced;
#: any change at all.
MARK_SESSION_STORE_FILES = 0
MARK_SERVICE_SESSIONS = 1
MARK_SERVICE_SHARED = 2
MARK_SERVICE_CHANGES = 3
_MARK_SIZE = 16
#: Descriptors a store directory keeps open between operations (StoreDirectory.open_file).
_OPEN_FILES = 16
_JOURNAL_FORMAT = "agentstores-journal/1"
_LOG_FORMAT = "agentstores-jsonl/1"
_READ_CHUNK = 1 << 16


# --- names and encoding ----------------------------------------------------------------------


def name_for(*components: str, suffix: str = ".json") -> str:
    """The file name of the record keyed by ``components`` (one id, or a tuple of ids).

    Each component is UTF-8 encoded and prefixed by its byte length, and the SHA-256 of the
    whole is the name. The encoding is injective (no separator to confuse, whatever characters
    the ids contain), so distinct tuples get distinct names unless SHA-256 collides. The name
    is 64 lower-case hex digits plus ``suffix`` (safe on every file system, case-insensitive
    ones included), and no id can name a path outside the directory. Put a fixed first
    component (a record kind) in when one directory holds records of several kinds keyed by
    the same ids.
    """
    if not components:
        raise ValueError("name_for needs at least one component")
    digest = hashlib.sha256()
    for component in components:
        # surrogatepass keeps the encoding injective even for strings check_id would reject.
        data = component.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest() + suffix


def encode_json(value: JSONValue) -> bytes:
    """``value`` as compact UTF-8 JSON (exact for big integers and ``-0.0``)."""
    return dump_json(value).encode("utf-8")


def decode_json(data: bytes, *, what: str = "file") -> JSONValue:
    """Parse bytes written by :func:`encode_json`; StorageUnavailable if they are not JSON."""
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise StorageUnavailable(f"corrupt {what}: {exc}") from exc


# --- single files -----------------------------------------------------------------------------


def fsync_directory(directory: Path) -> None:
    """Make the entries of ``directory`` (new, renamed, removed files) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_temp(target: Path, data: bytes, *, sync: bool, directory: Path | None = None) -> Path:
    """Write ``data`` to a new temp file in ``directory`` (default: beside ``target``).

    The temp file must be on the same file system as ``target``, so it can be renamed there.
    """
    folder = target.parent if directory is None else directory
    temp = folder / f"{TEMP_PREFIX}{secrets.token_hex(8)}-{target.name}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if sync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink_quietly(temp)
        raise
    os.close(fd)
    return temp


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def write_atomic(path: Path, data: bytes, *, sync: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically: readers and crashes see old or new, whole.

    On failure the old file is untouched and the temp file is removed. ``sync=False`` skips
    the fsyncs: still atomic for readers and process crashes, not for power loss.
    """
    temp = _write_temp(path, data, sync=sync)
    try:
        os.replace(temp, path)
    except BaseException:
        _unlink_quietly(temp)
        raise
    if sync:
        fsync_directory(path.parent)


def read_file(path: Path) -> bytes | None:
    """The contents of ``path``, or None if there is no such file."""
    try:
        with open(path, "rb") as file:
            return file.read()
    except FileNotFoundError:
        return None


def remove_file(path: Path, *, sync: bool = True) -> bool:
    """Remove ``path`` if it exists; return whether it did."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    if sync:
        fsync_directory(path.parent)
    return True


def sweep_temp_files(directory: Path) -> int:
    """Remove temp files left in ``directory`` by crashed writers; return how many.

    Call it only holding the directory's lock and after :func:`recover`: then no live writer
    owns a temp file and no journal refers to one.
    """
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if entry.name.startswith(TEMP_PREFIX):
            _unlink_quietly(Path(entry.path))
            removed += 1
    return removed


# --- JSON Lines logs --------------------------------------------------------------------------


@dataclass(frozen=True)
class LogPosition:
    """Where a reader stopped in a log: the log's epoch and the byte offset after its last line.

    The epoch changes when the log is rewritten, so an offset is never applied to another
    version of the file (inode numbers can be reused; epochs are random).
    """

    epoch: str
    offset: int


@dataclass(frozen=True)
class LogRead:
    """What :meth:`JsonLinesLog.read` found.

    Attributes:
        records: the complete records read, in order (a torn last line is left out).
        position: where to continue next time.
        restarted: True if ``records`` start at the beginning of the log (first read, or the
            log was created, rewritten or removed since ``since``): drop what was cached.
    """

    records: list[JSONValue]
    position: LogPosition
    restarted: bool


class JsonLinesLog:
    """An append-only file of JSON records, one per line, with an epoch header line.

    Appends cost O(size of the appended records) and are fsynced one call at a time. A crash
    mid-append leaves at most a torn last line: readers skip it and the next append (or a
    journal roll-forward) cuts it off. :meth:`rewrite` compacts the log atomically with a new
    epoch. Use it holding the directory lock.
    """

    def __init__(self, path: Path, *, sync: bool = True) -> None:
        self.path = path
        self.sync = sync

    # reading

    def read(self, since: LogPosition | None = None) -> LogRead:
        """Records after ``since`` (all of them if None or if the log changed epoch)."""
        try:
            with open(self.path, "rb") as file:
                return self._read_open(file, since)
        except FileNotFoundError:
            return LogRead([], LogPosition("", 0), restarted=True)

    def _read_open(self, file: BinaryIO, since: LogPosition | None) -> LogRead:
        head = file.read(256)
        newline = head.find(b"\n")
        if newline < 0:  # empty, or a torn header: no record was ever complete
            return LogRead([], LogPosition("", 0), restarted=True)
        epoch = self._parse_header(head[:newline])
        header_end = newline + 1
        size = os.fstat(file.fileno()).st_size
        if since is not None and since.epoch == epoch and header_end <= since.offset <= size:
            start, restarted = since.offset, False
        else:
            start, restarted = header_end, True
        file.seek(start)
        data = file.read()
        end = data.rfind(b"\n") + 1  # bytes after the last newline belong to a torn append
        records = [
            decode_json(line, what=f"line of {self.path.name}")
            for line in data[:end].split(b"\n")
            if line.strip()
        ]
        return LogRead(records, LogPosition(epoch, start + end), restarted)

    def _parse_header(self, line: bytes) -> str:
        header = decode_json(line, what=f"header of {self.path.name}")
        if (
            not isinstance(header, dict)
            or header.get("format") != _LOG_FORMAT
            or not isinstance(header.get("epoch"), str)
        ):
            raise StorageUnavailable(f"{self.path.name} is not an agentstores log")
        epoch: str = header["epoch"]
        return epoch

    # writing

    @staticmethod
    def encode(records: Iterable[JSONValue]) -> bytes:
        """Records as JSON Lines (each line ends with a newline)."""
        return b"".join(encode_json(record) + b"\n" for record in records)

    @staticmethod
    def _header() -> bytes:
        return encode_json({"format": _LOG_FORMAT, "epoch": secrets.token_hex(16)}) + b"\n"

    def valid_end(self) -> int:
        """The byte offset after the last complete line (0 if the log has none)."""
        try:
            with open(self.path, "rb") as file:
                end = os.fstat(file.fileno()).st_size
                while end > 0:
                    start = max(0, end - _READ_CHUNK)
                    file.seek(start)
                    chunk = file.read(end - start)
                    newline = chunk.rfind(b"\n")
                    if newline >= 0:
                        return start + newline + 1
                    end = start
                return 0
        except FileNotFoundError:
            return 0

    def prepare_append(self, records: Sequence[JSONValue]) -> tuple[int, bytes]:
        """``(offset, data)``: write ``data`` at ``offset`` (truncating there) to append.

        ``offset`` is after the last complete line, so a torn line is overwritten; ``data``
        starts with a fresh header when the log has no complete line yet.
        """
        at = self.valid_end()
        data = self.encode(records)
        return at, (self._header() + data if at == 0 else data)

    def append(self, records: Sequence[JSONValue]) -> None:
        """Append ``records`` durably (one fsync), after cutting off a torn last line."""
        if not records:
            return
        at, data = self.prepare_append(records)
        write_at(self.path, at, data, sync=self.sync)

    def rewrite(self, records: Iterable[JSONValue]) -> None:
        """Replace the whole log with ``records`` atomically, under a new epoch (compaction)."""
        write_atomic(self.path, self._header() + self.encode(records), sync=self.sync)

    def remove(self) -> None:
        """Delete the log (readers then see an empty log with a new epoch)."""
        remove_file(self.path, sync=self.sync)


def pwrite_all(fd: int, data: bytes, offset: int) -> None:
    """Write all of ``data`` at ``offset`` of ``fd`` (``os.pwrite`` may write less)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def write_at(path: Path, offset: int, data: bytes, *, sync: bool = True) -> None:
    """Truncate ``path`` to ``offset`` and write ``data`` there (creating the file if needed).

    Repeating the call gives the same file, which is what makes journaled appends safe to roll
    forward twice.
    """
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        os.ftruncate(fd, offset)
        pwrite_all(fd, data, offset)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    if created and sync:
        fsync_directory(path.parent)


# --- multi-file transactions ------------------------------------------------------------------


class Transaction:
    """File changes under one directory that become visible and durable together.

    Collect changes with :meth:`replace`, :meth:`remove` and :meth:`append`, then
    :meth:`commit`. A single change is applied directly (it is atomic by itself); several go
    through the journal. If :meth:`commit` fails before the journal is written, nothing
    changed; after that, the changes are completed by :func:`recover` (run by
    :class:`StoreDirectory` before every operation), so they are never seen half-done.
    Readers holding the lock never observe the intermediate states.
    """

    def __init__(self, root: Path, *, sync: bool = True) -> None:
        self.root = root
        self.sync = sync
        self._replaces: list[tuple[Path, bytes]] = []
        self._removes: list[Path] = []
        # One entry per log file: two appends to one log must not both start at its old end.
        self._appends: dict[Path, tuple[JsonLinesLog, list[JSONValue]]] = {}
        self._writes: list[tuple[Path, int, bytes]] = []
        self._staged: list[tuple[Path, Path]] = []  # (temp file written already, target)

    def replace(self, path: Path, data: bytes) -> None:
        """Set the whole contents of ``path`` (a file under the root) to ``data``."""
        self._replaces.append((path, data))

    def stage(self, path: Path, data: bytes) -> None:
        """As :meth:`replace`, but ``data`` goes to its (fsynced) temp file now, so that a
        transaction of many large files does not hold them all in memory. Call
        :meth:`discard` if the transaction is given up before :meth:`commit`."""
        self._staged.append((_write_temp(path, data, sync=self.sync, directory=self.root), path))

    def discard(self) -> None:
        """Give the transaction up before :meth:`commit`: remove the staged temp files."""
        for temp, _ in self._staged:
            _unlink_quietly(temp)
        self._staged.clear()

    def remove(self, path: Path) -> None:
        """Remove ``path`` if it exists."""
        self._removes.append(path)

    def append(self, log: JsonLinesLog, records: Sequence[JSONValue]) -> None:
        """Append ``records`` to ``log``."""
        if records:
            self._appends.setdefault(log.path, (log, []))[1].extend(records)

    def write_at(self, path: Path, at: int, data: bytes) -> None:
        """Cut ``path`` at ``at`` and write ``data`` (UTF-8 text) there: an append to a log
        whose valid end is ``at`` (a :mod:`._records` log). One per path."""
        self._writes.append((path, at, data))

    def commit(self) -> None:
        """Apply every collected change, all or nothing."""
        count = len(self._replaces) + len(self._removes) + len(self._appends) + len(self._writes)
        if count == 0 and not self._staged:
            return
        if count == 1 and not self._staged:
            self._commit_single()
            return
        temps: list[tuple[Path, Path]] = self._staged
        try:
            # The temp files go in the root: the fsync of the root that makes the journal
            # durable makes their names durable too, so the journal never names a temp file
            # that a power loss could take away.
            for path, data in self._replaces:
                temp = _write_temp(path, data, sync=self.sync, directory=self.root)
                temps.append((temp, path))
            ops: list[dict[str, JSONValue]] = [
                {"op": "rename", "from": self._relative(temp), "to": self._relative(path)}
                for temp, path in temps
            ]
            ops += [{"op": "remove", "path": self._relative(path)} for path in self._removes]
            writes = [
                (log.path, *log.prepare_append(records)) for log, records in self._appends.values()
            ]
            for path, at, data in [*writes, *self._writes]:
                ops.append(
                    {
                        "op": "write_at",
                        "path": self._relative(path),
                        "at": at,
                        "data": data.decode("utf-8"),
                    }
                )
            journal = {"format": _JOURNAL_FORMAT, "ops": ops}
            journal_temp = _write_temp(
                self.root / JOURNAL_NAME, encode_json(journal), sync=self.sync
            )
            try:
                os.replace(journal_temp, self.root / JOURNAL_NAME)
            except BaseException:
                _unlink_quietly(journal_temp)
                raise
        except BaseException:
            for temp, _ in temps:
                _unlink_quietly(temp)
            raise
        # From here on the transaction is decided (the journal names the temp files, so they
        # must stay even if what follows fails); a failure is completed by recover(). If the
        # fsync of the journal's name fails, a power loss may still take it back with the
        # temp files' names: then the transaction never happened, which is consistent too.
        if self.sync:
            fsync_directory(self.root)
        _apply_journal(self.root, ops, sync=self.sync)
        remove_file(self.root / JOURNAL_NAME, sync=self.sync)

    def _commit_single(self) -> None:
        if self._replaces:
            path, data = self._replaces[0]
            write_atomic(path, data, sync=self.sync)
        elif self._removes:
            remove_file(self._removes[0], sync=self.sync)
        elif self._writes:
            path, at, data = self._writes[0]
            write_at(path, at, data, sync=self.sync)
        else:
            ((log, records),) = self._appends.values()
            log.append(records)

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()


def _journal_path(root: Path, relative: object) -> Path:
    # The journal is ours, but a corrupt or planted one must not reach outside the root.
    if (
        not isinstance(relative, str)
        or not relative
        or relative.startswith("/")
        or any(part in ("", ".", "..") for part in relative.split("/"))
    ):
        raise StorageUnavailable(f"corrupt journal: bad path {relative!r}")
    return root / relative


def _apply_journal(root: Path, ops: Sequence[object], *, sync: bool) -> None:
    """Apply journal operations; each is idempotent, so a crash may repeat them."""
    touched: set[Path] = set()
    for op in ops:
        if not isinstance(op, dict):
            raise StorageUnavailable("corrupt journal: an operation is not an object")
        kind = op.get("op")
        if kind == "rename":
            source = _journal_path(root, op.get("from"))
            target = _journal_path(root, op.get("to"))
            if source.exists():  # absent: renamed before a crash
                os.replace(source, target)
                touched.add(target.parent)
        elif kind == "remove":
            path = _journal_path(root, op.get("path"))
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            touched.add(path.parent)
        elif kind == "write_at":
            path = _journal_path(root, op.get("path"))
            at, data = op.get("at"), op.get("data")
            if not isinstance(at, int) or isinstance(at, bool) or at < 0:
                raise StorageUnavailable("corrupt journal: bad offset")
            if not isinstance(data, str):
                raise StorageUnavailable("corrupt journal: bad data")
            write_at(path, at, data.encode("utf-8"), sync=sync)
        else:
            raise StorageUnavailable(f"corrupt journal: unknown operation {kind!r}")
    if sync:
        for directory in sorted(touched):
            fsync_directory(directory)


def recover(root: Path, *, sync: bool = True) -> bool:
    """Roll forward the journal a crashed transaction left in ``root``; True if there was one.

    Call holding the directory lock, before reading or writing anything else.
    """
    data = read_file(root / JOURNAL_NAME)
    if data is None:
        return False
    journal = decode_json(data, what="journal")
    if not isinstance(journal, dict) or journal.get("format") != _JOURNAL_FORMAT:
        raise StorageUnavailable("corrupt journal: unknown format")
    ops = journal.get("ops")
    if not isinstance(ops, list):
        raise StorageUnavailable("corrupt journal: no operations")
    _apply_journal(root, ops, sync=sync)
    remove_file(root / JOURNAL_NAME, sync=sync)
    return True


# --- the store directory and its lock ---------------------------------------------------------

#: Seconds an operation waits for the directory's lock, held by another store object or process,
#: before it fails with StorageUnavailable (the JSON counterpart of SQLite's busy timeout).
DEFAULT_LOCK_TIMEOUT = 10.0


class _Ticket:
    """Decides, between a caller that stops waiting and the worker that gets the lock, whether
    the operation runs: exactly one of :meth:`start` and :meth:`abandon` wins."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = "waiting"
        self.timed_out = False  # abandoned because the lock timeout passed

    def start(self) -> bool:
        """Worker side, holding the lock: True if the operation may run (and now will)."""
        with self._lock:
            if self._state == "abandoned":
                return False
            self._state = "started"
            return True

    def abandon(self) -> bool:
        """Caller side: True if the operation will never run, False if it already started."""
        with self._lock:
            if self._state == "started":
                return False
            self._state = "abandoned"
            return True


def _close_all(files: dict[Path, int]) -> None:
    """Close the kept descriptors ``files`` (at close, or when the directory is collected)."""
    while files:
        with contextlib.suppress(OSError):
            os.close(files.popitem()[1])


def is_watched(mark: bytes | None) -> bool:
    """Whether a change mark was written by a reader that caches against it (see
    :meth:`StoreDirectory.new_change_mark`); an unknown mark (None) counts as watched."""
    return mark is None or not mark or bool(mark[0] & 1)


def _give_up(future: asyncio.Future[Any], ticket: _Ticket) -> None:
    """The lock timeout passed: stop waiting, unless the operation already started (then it
    runs to its end and the caller gets its result)."""
    if not future.done() and ticket.abandon():
        ticket.timed_out = True
        future.cancel()


class _Worker:
    """One thread of the :class:`_WorkerPool`: runs the jobs handed to it, one at a time."""

    def __init__(self, pool: _WorkerPool, number: int) -> None:
        self.jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self.pool = pool
        self.thread = threading.Thread(
            target=self._serve, name=f"{WORKER_PREFIX}-{number}", daemon=True
        )

    def _serve(self) -> None:
        job: _Job | None = self.jobs.get()
        while job is not None:
            settle = job()
            del job  # drop the job (and what it holds) before waiting for the next one
            # Back in the pool before the caller learns the result, so that the caller's next
            # operation finds this thread idle instead of starting another one.
            job = self.pool.finished(self)
            settle()
            del settle
            if job is None:
                job = self.jobs.get()


#: A job run by a worker: it does the work and returns the call that hands the outcome back
#: to the caller's loop (made once the worker is back in the pool). It raises nothing.
_Job = Callable[[], Callable[[], None]]


class _WorkerPool:
    """The worker threads of all JSON stores: at most ``limit``, started as needed.

    An idle worker is reused last-in first-out, so a store running one operation after another
    keeps handing them to the same thread (a ``ThreadPoolExecutor`` wakes whichever idle thread
    comes first and, when an operation follows the previous one's result quickly, often starts
    a new thread: both cost a cold thread per operation). Jobs beyond ``limit`` running ones
    wait in a backlog. A worker may sit in ``flock`` while another process holds the lock; a
    pool of its own keeps that from starving the loop's default executor.

    The threads are daemons, so that a worker stuck on another process's lock cannot hold the
    interpreter forever; but at exit (:meth:`drain`, registered with :mod:`atexit`) the pool
    lets the operations in flight and waiting finish, for up to :data:`EXIT_GRACE_SECONDS`,
    so that a program ending right after it stopped awaiting a write does not cut the write
    (a cut one is a crash, which the stores survive: ``crash_safe``).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._quiet = threading.Condition(self._lock)  # notified when no job is left
        self._idle: list[_Worker] = []
        self._backlog: collections.deque[_Job] = collections.deque()
        self._started = 0

    def submit(self, job: _Job) -> None:
        """Run ``job`` in a worker thread, as soon as one is free."""
        with self._lock:
            if self._idle:
                worker = self._idle.pop()
            elif self._started < self.limit:
                self._started += 1
                worker = _Worker(self, next(_worker_numbers))
                worker.thread.start()
            else:
                self._backlog.append(job)
                return
        worker.jobs.put(job)

    def finished(self, worker: _Worker) -> _Job | None:
        """Worker side, after a job: the next job of the backlog, or None (then it is idle)."""
        with self._lock:
            if self._backlog:
                return self._backlog.popleft()
            self._idle.append(worker)
            if len(self._idle) == self._started:
                self._quiet.notify_all()
            return None

    def drain(self, timeout: float) -> bool:
        """Wait until no job is running or waiting, for up to ``timeout`` seconds; whether
        that happened."""
        with self._lock:
            return self._quiet.wait_for(
                lambda: not self._backlog and len(self._idle) == self._started, timeout
            )

    def forget_threads(self) -> None:
        """In a child process after ``fork``: the parent's threads do not exist here."""
        self._lock = threading.Lock()
        self._quiet = threading.Condition(self._lock)
        self._idle = []
        self._backlog.clear()
        self._started = 0


#: The name prefix of the worker threads (the fault-injection hook counts calls made in them).
WORKER_PREFIX = "agentstores-json"
_worker_numbers = itertools.count()
_pool = _WorkerPool(32)
os.register_at_fork(after_in_child=_pool.forget_threads)
#: How long the interpreter's exit waits for the JSON stores' operations still in flight.
EXIT_GRACE_SECONDS = 10.0
atexit.register(_pool.drain, EXIT_GRACE_SECONDS)


def _settle(future: asyncio.Future[T], result: T | None, error: BaseException | None) -> None:
    """In the loop's thread: give the caller the outcome, unless it stopped waiting."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(cast(T, result))


class StoreDirectory:
    """A store's directory: creates it, locks it, recovers it, and runs operations in it.

    Args:
        path: the directory (created on first use, with its parents).
        subdirectories: names of sub-directories the family keeps files in; they are created
            on first use and swept of stale temp files.
        sync: fsync files and directories (default). False keeps every write atomic for
            readers and for crashes of the process, but not for power loss; faster on disks.
        lock_timeout: seconds an operation waits for the directory's lock while another store
            object or process holds it (default :data:`DEFAULT_LOCK_TIMEOUT`), after which it
            fails with StorageUnavailable and does nothing; None waits as long as it takes.
        on_prepare: called once per object, holding the lock, after recovery and before the
            first operation (a family checks its layout there, see :mod:`._layout`); if it
            raises, the operation fails and the next one calls it again.

    Every operation goes through :meth:`run`, which serialises it against the other tasks of
    this object (an ``asyncio.Lock``) and against every other store object and process on the
    directory (``flock`` on ``.lock``, taken and released in the worker thread that runs the
    operation). Before the operation runs, a journal left by a crashed transaction is rolled
    forward; on first use, temp files left by crashed writers are removed.

    A worker whose caller gave up waiting for the lock stays blocked in ``flock`` until the
    lock is free, then lets go at once without running anything (``flock`` cannot be
    interrupted); workers are threads of a shared pool of 32, so a lock held for ever by a
    hung process ties up at most that many.
    """

    def __init__(
        self,
        path: Path,
        *,
        subdirectories: Sequence[str] = (),
        sync: bool = True,
        lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT,
        on_prepare: Callable[[], None] | None = None,
    ) -> None:
        if lock_timeout is not None and not lock_timeout >= 0:
            raise InvalidArgument("lock_timeout must be None or a number of seconds >= 0")
        self.path = Path(path)
        self.lock_timeout = lock_timeout
        self.sync = sync
        self.subdirectories = tuple(subdirectories)
        self.on_prepare = on_prepare
        self._lock = asyncio.Lock()
        self._prepared = False
        self._closed = False
        self._lock_fd: int | None = None  # the lock file, while an operation runs
        # Descriptors kept open between operations (open_file), most recently used last; the
        # files lock guards them against close() while an abandoned operation still runs.
        self._files: collections.OrderedDict[Path, int] = collections.OrderedDict()
        self._files_lock = threading.Lock()
        self._operating = False
        weakref.finalize(self, _close_all, self._files)
        self._lock_file = os.path.join(self.path, LOCK_NAME)
        self._journal_file = os.path.join(self.path, JOURNAL_NAME)

    def subdirectory(self, name: str) -> Path:
        """The path of one of the :attr:`subdirectories`."""
        return self.path / name

    def transaction(self) -> Transaction:
        """A new :class:`Transaction` on this directory (commit it inside :meth:`run`)."""
        return Transaction(self.path, sync=self.sync)

    def log(self, name: str) -> JsonLinesLog:
        """The :class:`JsonLinesLog` of file ``name`` in this directory."""
        return JsonLinesLog(self.path / name, sync=self.sync)

    def change_marks(self, slots: Sequence[int]) -> list[bytes]:
        """The change marks of ``slots`` as they are now (see :meth:`new_change_mark`).

        Call it inside :meth:`run`. Marks live in the lock file, which is never fsynced: they
        only tell live processes whether what they cached is still current. Without the lock
        file (a subclass whose :meth:`run` does not take it) every mark is a new random value
        each time: every reader sees a change.
        """
        if self._lock_fd is None:
            return [secrets.token_bytes(_MARK_SIZE) for _ in slots]
        data = os.pread(self._lock_fd, (max(slots) + 1) * _MARK_SIZE, 0)
        return [data[slot * _MARK_SIZE : (slot + 1) * _MARK_SIZE] for slot in slots]

    def new_change_mark(self, slot: int, *, watched: bool = False) -> bytes | None:
        """Record, before making it, a change of the kind ``slot`` names (inside :meth:`run`);
        return the new mark (None without the lock file, see :meth:`change_marks`).

        A store that caches what it read between operations gives each kind of change it
        caches against a slot (the ``MARK_*`` constants). Every store object, in any process,
        writes a new random mark into the slot before it makes such a change; a reader that
        finds the mark it saw last knows no such change was made since. A change that fails
        after its mark is written only costs the readers a reload.

        ``watched`` marks are for kinds of change that are frequent while caches of them are
        rare: a reader that caches against the slot writes a new watched mark (see
        :func:`is_watched`), and a writer that finds the mark unwatched may skip writing a new
        one, since nobody holds a cache made under the current mark.
        """
        if self._lock_fd is None:
            return None
        mark = bytearray(secrets.token_bytes(_MARK_SIZE))
        mark[0] = (mark[0] & 0xFE) | (1 if watched else 0)
        os.pwrite(self._lock_fd, mark, slot * _MARK_SIZE)
        return bytes(mark)

    def open_file(self, path: Path) -> tuple[int, int] | None:
        """A read-write descriptor of the existing file ``path`` and its size now, or None if
        there is no such file (inside :meth:`run`).

        The descriptor belongs to the directory, which keeps the last few open between
        operations, so that an append to a file written recently costs no ``open`` and no
        ``close``: do not close it, and do not use it after the operation. A kept descriptor
        is used only while its file is still linked (``fstat``, which gives the size anyway):
        the stores replace a file by renaming a new one over it or remove it, never rename a
        live file away, so a linked file is the one at ``path``; a replaced or removed one is
        closed and ``path`` opened again.
        """
        fd = self._files.get(path)
        if fd is not None:
            status = os.fstat(fd)
            if status.st_nlink > 0:
                self._files.move_to_end(path)
                return fd, status.st_size
            del self._files[path]
            os.close(fd)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            size = os.fstat(fd).st_size
        except BaseException:
            os.close(fd)
            raise
        self._files[path] = fd
        if len(self._files) > _OPEN_FILES:
            os.close(self._files.popitem(last=False)[1])
        return fd, size

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    async def run(self, operation: Callable[[], T]) -> T:
        """Run ``operation()`` in a worker thread holding the directory lock; return its result.

        ``StoreError`` passes through; ``OSError`` and undecodable data become
        ``StorageUnavailable``, and so does a directory lock not obtained within
        :attr:`lock_timeout` (then nothing ran). If the awaiting task is cancelled, the
        operation still runs to its end (or its start never happens) before anyone else gets
        the lock.
        """
        if self._closed:
            raise StorageUnavailable("the store is closed")
        async with self._lock:
            if self._closed:  # closed while this task waited for the lock
                raise StorageUnavailable("the store is closed")
            loop = asyncio.get_running_loop()
            ticket = _Ticket()
            future: asyncio.Future[T] = loop.create_future()

            def job() -> Callable[[], None]:
                result: T | None = None
                error: BaseException | None = None
                try:
                    result = self._locked(operation, ticket)
                except BaseException as exc:  # handed to the caller
                    error = exc

                def settle() -> None:
                    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                        loop.call_soon_threadsafe(_settle, future, result, error)

                return settle

            _pool.submit(job)
            # A timer rather than asyncio.wait_for: this runs for every operation, and the
            # timer costs a fraction of wait_for and shield.
            timer = None
            if self.lock_timeout is not None:
                timer = loop.call_later(self.lock_timeout, _give_up, future, ticket)
            try:
                # Cancelling this wait stops a worker that has not started, never one that has.
                return await future
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if ticket.timed_out and (task is None or not task.cancelling()):
                    raise StorageUnavailable(
                        f"JSON store at {self.path}: the directory stayed locked by another "
                        f"store or process for more than {self.lock_timeout} s"
                    ) from None
                ticket.abandon()  # not started yet: it never will; started: it runs to its end
                raise
            finally:
                if timer is not None:
                    timer.cancel()

    def _locked(self, operation: Callable[[], T], ticket: _Ticket) -> T:
        try:
            if not self._prepared:
                os.makedirs(self.path, exist_ok=True)
            fd = os.open(self._lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if not ticket.start():
                    # The caller gave up waiting: its operation must not run, and nobody
                    # reads this result.
                    return cast(T, None)
                if not self._prepared:
                    self._prepare()
                elif self._journal_left():
                    recover(self.path, sync=self.sync)
                self._lock_fd = fd
                with self._files_lock:
                    self._operating = True
                try:
                    return operation()
                finally:
                    self._lock_fd = None
                    with self._files_lock:
                        self._operating = False
                        if self._closed:  # closed while this abandoned operation ran
                            _close_all(self._files)
            finally:
                os.close(fd)  # closing the descriptor releases the flock
        except StoreError:
            raise
        except (OSError, ValueError, RecursionError) as exc:
            raise StorageUnavailable(f"JSON store at {self.path}: {exc}") from exc

    def _journal_left(self) -> bool:
        """Whether a crashed transaction left its journal (a cheap test before recover())."""
        try:
            os.stat(self._journal_file)
        except FileNotFoundError:
            return False
        return True

    def _prepare(self) -> None:
        for name in self.subdirectories:
            os.makedirs(self.path / name, exist_ok=True)
        recover(self.path, sync=self.sync)
        sweep_temp_files(self.path)
        for name in self.subdirectories:
            sweep_temp_files(self.path / name)
        if self.on_prepare is not None:
            self.on_prepare()
        self._prepared = True

    async def close(self) -> None:
        """Wait for the running operation, then refuse further ones (idempotent).

        The descriptors kept open between operations (:meth:`open_file`) are closed.
        """
        async with self._lock:
            with self._files_lock:
                self._closed = True
                if not self._operating:  # else the operation closes them when it ends
                    _close_all(self._files)
