"""The JSON-file thread/run store (spec ``thread_run.md``).

One directory per store (:class:`~._files.StoreDirectory`), laid out as::

    threads/<name>.json    {"id": thread id, "metadata": {...}}           one file per thread
    messages/<name>.json   {"thread_id": ..., "messages": [...]}          absent = no messages
    runs/<name>.json       the run record (run_to_json)                   one file per run
    index.jsonl            append-only index: thread effective times, run summaries

``<name>`` is :func:`~._files.name_for` of the id, so any id in the domain is stored in
isolation and never names a path outside the directory (G-2); each file keeps its ids inside.
Messages are replaced whole on every save (TR-8), so they are one file written atomically.

``index.jsonl`` lets list_threads, list_runs and latest_run work without opening every file:
each store object folds it into memory and, on every operation, reads only the lines added
since (other processes append too); it is compacted when dead lines outnumber live ones.
Files and index change together in one :class:`~._files.Transaction`, so a checkpoint's thread,
messages, run and index entries appear at once, also after a crash (the journal is rolled
forward), and every operation, reads included, holds the directory lock, so no reader sees a
checkpoint half-applied (TR-19). Arguments are validated and serialised before the lock is
taken: bad input writes nothing and later changes to the caller's objects are not stored
(G-5, G-7).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from agentstores.conformance.backend import StoreContext
from agentstores.spec.errors import AlreadyExists, InvalidArgument, NotFound, StorageUnavailable
from agentstores.spec.messages import Message, message_from_json, message_to_json
from agentstores.spec.thread_run import RunPage, RunQuery, RunRecord, Thread, ThreadMetadata
from agentstores.spec.values import Clock, JSONValue, check_id, check_limit_offset, system_clock

from .. import thread_run_rules as rules
from ._files import (
    DEFAULT_LOCK_TIMEOUT,
    TEMP_PREFIX,
    LogPosition,
    StoreDirectory,
    decode_json,
    encode_json,
    name_for,
    read_file,
)
from ._store import JSONStore

__all__ = ["JSONThreadRunStore", "open_store"]

T = TypeVar("T")

_THREADS = "threads"
_MESSAGES = "messages"
_RUNS = "runs"
_INDEX = "index.jsonl"
#: Compact the index when it has more than twice as many lines as live entries, plus this.
_COMPACTION_SLACK = 256


@dataclass(frozen=True)
class _RunEntry:
    """What the index knows of a run: enough to filter, order and pick the latest."""

    thread_id: str
    status: str
    created_at: int
    updated_at: int


def _thread_entry(thread_id: str, time: int) -> JSONValue:
    return {"thread": thread_id, "time": time}


def _run_entry(run: RunRecord) -> JSONValue:
    return {
        "run": run.run_id,
        "thread": run.thread_id,
        "status": run.status.value,
        "created_at": run.created_at,
        "updated_at": run.updated_at,
    }


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Index:
    """The in-memory fold of ``index.jsonl``: live threads and runs of the store."""

    def __init__(self) -> None:
        self.position: LogPosition | None = None  # where the last read stopped
        self.threads: dict[str, int] = {}  # thread id -> effective time (TR-5)
        self.runs: dict[str, _RunEntry] = {}
        self.lines = 0  # records in the current log version, live or dead

    def apply(self, record: JSONValue) -> None:
        if not isinstance(record, dict):
            raise StorageUnavailable("corrupt index: a line is not an object")
        if isinstance(record.get("thread"), str) and "run" not in record:
            if record.get("deleted") is True:
                self.threads.pop(record["thread"], None)
            elif _is_int(record.get("time")):
                self.threads[record["thread"]] = record["time"]
            else:
                raise StorageUnavailable("corrupt index: bad thread entry")
        elif isinstance(record.get("run"), str):
            if record.get("deleted") is True:
                self.runs.pop(record["run"], None)
            elif (
                isinstance(record.get("thread"), str)
                and isinstance(record.get("status"), str)
                and _is_int(record.get("created_at"))
                and _is_int(record.get("updated_at"))
            ):
                self.runs[record["run"]] = _RunEntry(
                    record["thread"], record["status"], record["created_at"], record["updated_at"]
                )
            else:
                raise StorageUnavailable("corrupt index: bad run entry")
        else:
            raise StorageUnavailable("corrupt index: unknown entry")

    def live_entries(self) -> list[JSONValue]:
        """The entries of a compacted log holding exactly the current state."""
        entries = [_thread_entry(tid, time) for tid, time in self.threads.items()]
        entries += [
            {
                "run": run_id,
                "thread": e.thread_id,
                "status": e.status,
                "created_at": e.created_at,
                "updated_at": e.updated_at,
            }
            for run_id, e in self.runs.items()
        ]
        return entries

    def runs_of(self, thread_id: str) -> list[str]:
        return [run_id for run_id, e in self.runs.items() if e.thread_id == thread_id]


def _is_record_file(name: str) -> bool:
    return name.endswith(".json") and not name.startswith(TEMP_PREFIX)


def _parse(build: Callable[[JSONValue], T], data: bytes, what: str) -> T:
    """Decode a stored file; corrupt contents are the engine's failure, not the caller's."""
    try:
        return build(decode_json(data, what=what))
    except InvalidArgument as exc:
        raise StorageUnavailable(f"corrupt {what}: {exc}") from exc


def _messages_from_json(obj: JSONValue) -> tuple[str, list[Message]]:
    if not isinstance(obj, dict) or not isinstance(obj.get("messages"), list):
        raise InvalidArgument("not a messages file")
    return obj.get("thread_id"), [message_from_json(m) for m in obj["messages"]]  # type: ignore[return-value]


class JSONThreadRunStore(JSONStore):
    """A thread/run store in a directory of JSON files (``ThreadRunStore``).

    Args:
        directory: where the store keeps its files (created on first use). Several store
            objects, in one process or many, may open the same directory at once.
        clock: the time source of checkpoints (G-6); integer ms since the epoch.
        fsync: make each acknowledged write durable against power loss (default). False still
            keeps every operation atomic for readers and for crashes of the process.
        lock_timeout: seconds an operation waits while another store object or process holds
            the directory's lock, then StorageUnavailable with nothing done (G-22); None
            waits as long as it takes.

    Use it as an async context manager, or call :meth:`close` when done.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        clock: Clock = system_clock,
        fsync: bool = True,
        lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT,
    ) -> None:
        self._dir = StoreDirectory(
            Path(directory),
            subdirectories=(_THREADS, _MESSAGES, _RUNS),
            sync=fsync,
            lock_timeout=lock_timeout,
        )
        self._log = self._dir.log(_INDEX)
        self._index = _Index()
        self._clock = clock

    def _on_open(self) -> None:
        self._refresh()  # index the log at open, so a bad path fails there

    # --- paths, reading and the index (run holding the lock) --------------------------------

    def _thread_path(self, thread_id: str) -> Path:
        return self._dir.path / _THREADS / name_for(thread_id)

    def _messages_path(self, thread_id: str) -> Path:
        return self._dir.path / _MESSAGES / name_for(thread_id)

    def _run_path(self, run_id: str) -> Path:
        return self._dir.path / _RUNS / name_for(run_id)

    def _refresh(self) -> None:
        """Bring the in-memory index up to date with the log (new lines only, if possible)."""
        read = self._log.read(self._index.position)
        if read.restarted:
            self._index = _Index()
        for record in read.records:
            self._index.apply(record)
        self._index.lines += len(read.records)
        self._index.position = read.position
        if read.position.epoch == "" and self._has_record_files():
            self._rebuild_index()

    def _has_record_files(self) -> bool:
        for name in (_THREADS, _RUNS):
            with os.scandir(self._dir.path / name) as entries:
                if any(_is_record_file(entry.name) for entry in entries):
                    return True
        return False

    def _rebuild_index(self) -> None:
        """Recreate a lost index from the record files (they are the source of the index)."""
        entries: list[JSONValue] = []
        for entry in os.scandir(self._dir.path / _THREADS):
            if _is_record_file(entry.name):
                data = read_file(Path(entry.path)) or b""
                thread = _parse(rules.thread_from_json, data, "thread file")
                entries.append(_thread_entry(thread.id, rules.effective_time(thread.metadata)))
        for entry in os.scandir(self._dir.path / _RUNS):
            if _is_record_file(entry.name):
                data = read_file(Path(entry.path)) or b""
                entries.append(_run_entry(_parse(rules.run_from_json, data, "run file")))
        self._log.rewrite(entries)
        self._index = _Index()
        self._refresh()

    def _compact_if_needed(self) -> None:
        live = len(self._index.threads) + len(self._index.runs)
        if self._index.lines > 2 * live + _COMPACTION_SLACK:
            self._log.rewrite(self._index.live_entries())
            self._refresh()

    def _read_required(self, path: Path, what: str) -> bytes:
        data = read_file(path)
        if data is None:  # the index lists it, so the file must be there
            raise StorageUnavailable(f"{what} file is missing from {self._dir.path}")
        return data

    def _read_thread(self, thread_id: str) -> Thread | None:
        if thread_id not in self._index.threads:
            return None
        data = self._read_required(self._thread_path(thread_id), "thread")
        thread = _parse(rules.thread_from_json, data, "thread file")
        if thread.id != thread_id:
            raise StorageUnavailable(f"thread file of {thread_id!r} holds {thread.id!r}")
        return thread

    def _read_messages(self, thread_id: str) -> list[Message]:
        data = read_file(self._messages_path(thread_id))
        if data is None:
            return []
        owner, messages = _parse(_messages_from_json, data, "messages file")
        if owner != thread_id:
            raise StorageUnavailable(f"messages file of {thread_id!r} holds {owner!r}")
        return messages

    def _read_run(self, run_id: str) -> RunRecord:
        data = self._read_required(self._run_path(run_id), "run")
        run = _parse(rules.run_from_json, data, "run file")
        if run.run_id != run_id:
            raise StorageUnavailable(f"run file of {run_id!r} holds {run.run_id!r}")
        return run

    def _write_thread(self, thread_id: str, thread_data: bytes, time: int) -> None:
        """Store a thread's metadata file and, if its effective time changed, the index."""
        transaction = self._dir.transaction()
        transaction.replace(self._thread_path(thread_id), thread_data)
        if self._index.threads.get(thread_id) != time:
            transaction.append(self._log, [_thread_entry(thread_id, time)])
        transaction.commit()
        self._after_commit()

    def _after_commit(self) -> None:
        self._refresh()
        self._compact_if_needed()

    async def _run(self, operation: Callable[[], T]) -> T:
        """Run ``operation`` under the directory lock with a fresh index."""

        def locked() -> T:
            self._refresh()
            return operation()

        return await self._dir.run(locked)

    # --- threads (TR-1 .. TR-6, TR-10) -------------------------------------------------------

    async def load_thread(self, thread_id: str) -> Thread | None:
        """The thread, or None (TR-1)."""
        check_id(thread_id, what="thread id")
        return await self._run(lambda: self._read_thread(thread_id))

    async def save_thread(self, thread: Thread) -> None:
        """Create or replace the thread's metadata exactly as given (TR-2, TR-3)."""
        rules.check_thread(thread)
        thread_id = thread.id
        data = encode_json(rules.thread_to_json(thread))
        time = rules.effective_time(thread.metadata)
        await self._run(lambda: self._write_thread(thread_id, data, time))

    async def delete_thread(self, thread_id: str) -> None:
        """Delete the thread, its messages and its runs at once; missing is a no-op (TR-4)."""
        check_id(thread_id, what="thread id")

        def delete() -> None:
            run_ids = self._index.runs_of(thread_id)
            exists = thread_id in self._index.threads
            if not exists and not run_ids:
                return
            transaction = self._dir.transaction()
            transaction.remove(self._thread_path(thread_id))
            transaction.remove(self._messages_path(thread_id))
            tombstones: list[JSONValue] = [{"thread": thread_id, "deleted": True}] if exists else []
            for run_id in run_ids:
                transaction.remove(self._run_path(run_id))
                tombstones.append({"run": run_id, "deleted": True})
            transaction.append(self._log, tombstones)
            transaction.commit()
            self._after_commit()

        await self._run(delete)

    async def list_threads(self, offset: int = 0, limit: int = 50) -> list[str]:
        """Thread ids by effective time descending, then id ascending, paged (TR-5, TR-6)."""
        limit, offset = check_limit_offset(limit, offset)

        def list_ids() -> list[str]:
            times = self._index.threads
            ordered = sorted(times, key=lambda tid: (-times[tid], tid))
            return rules.page_threads(ordered, offset, limit)

        return await self._run(list_ids)

    async def update_thread_metadata(self, thread_id: str, metadata: ThreadMetadata) -> None:
        """Replace an existing thread's metadata (TR-10); NotFound if there is none."""
        check_id(thread_id, what="thread id")
        rules.check_metadata(metadata)
        data = encode_json(rules.thread_to_json(Thread(thread_id, metadata)))
        time = rules.effective_time(metadata)

        def update() -> None:
            if thread_id not in self._index.threads:
                raise NotFound(f"no thread {thread_id!r}")
            self._write_thread(thread_id, data, time)

        await self._run(update)

    # --- messages (TR-7 .. TR-9) --------------------------------------------------------------

    async def load_messages(self, thread_id: str) -> list[Message] | None:
        """The thread's messages in order, [] if none, None without a thread (TR-7)."""
        check_id(thread_id, what="thread id")

        def load() -> list[Message] | None:
            if thread_id not in self._index.threads:
                return None
            return self._read_messages(thread_id)

        return await self._run(load)

    async def save_messages(self, thread_id: str, messages: Sequence[Message]) -> None:
        """Replace the thread's messages (TR-8); NotFound for a missing thread."""
        check_id(thread_id, what="thread id")
        data = self._messages_data(thread_id, rules.check_messages(messages))

        def save() -> None:
            if thread_id not in self._index.threads:
                raise NotFound(f"no thread {thread_id!r}")
            transaction = self._dir.transaction()
            transaction.replace(self._messages_path(thread_id), data)
            transaction.commit()

        await self._run(save)

    async def delete_messages(self, thread_id: str) -> None:
        """Empty the thread's message list (TR-9); NotFound for a missing thread."""
        check_id(thread_id, what="thread id")

        def delete() -> None:
            if thread_id not in self._index.threads:
                raise NotFound(f"no thread {thread_id!r}")
            transaction = self._dir.transaction()
            transaction.remove(self._messages_path(thread_id))
            transaction.commit()

        await self._run(delete)

    @staticmethod
    def _messages_data(thread_id: str, messages: Sequence[Message]) -> bytes:
        return encode_json(
            {"thread_id": thread_id, "messages": [message_to_json(m) for m in messages]}
        )

    # --- runs (TR-11 .. TR-17) ----------------------------------------------------------------

    async def create_run(self, record: RunRecord) -> None:
        """Store a new run with any status (TR-12); AlreadyExists if the id is taken."""
        rules.check_run(record)
        run_id = record.run_id
        data = encode_json(rules.run_to_json(record))
        entry = _run_entry(record)

        def create() -> None:
            if run_id in self._index.runs:
                raise AlreadyExists(f"run {run_id!r} already exists")
            transaction = self._dir.transaction()
            transaction.replace(self._run_path(run_id), data)
            transaction.append(self._log, [entry])
            transaction.commit()
            self._after_commit()

        await self._run(create)

    async def load_run(self, run_id: str) -> RunRecord | None:
        """The run, or None (TR-13)."""
        check_id(run_id, what="run id")

        def load() -> RunRecord | None:
            return self._read_run(run_id) if run_id in self._index.runs else None

        return await self._run(load)

    async def latest_run(self, thread_id: str) -> RunRecord | None:
        """The thread's run with the highest (updated_at, created_at, run_id) (TR-14)."""
        check_id(thread_id, what="thread id")

        def latest() -> RunRecord | None:
            keys = [
                (e.updated_at, e.created_at, run_id)
                for run_id, e in self._index.runs.items()
                if e.thread_id == thread_id
            ]
            return self._read_run(max(keys)[2]) if keys else None

        return await self._run(latest)

    async def list_runs(self, query: RunQuery) -> RunPage:
        """Runs filtered by thread and status, by (created_at, run_id), paged (TR-15 .. TR-17)."""
        offset, limit = rules.check_query(query)
        thread_id = query.thread_id
        status = None if query.status is None else query.status.value

        def page() -> RunPage:
            selected = sorted(
                (e.created_at, run_id)
                for run_id, e in self._index.runs.items()
                if (thread_id is None or e.thread_id == thread_id)
                and (status is None or e.status == status)
            )
            total = len(selected)
            start = min(offset, total)
            items = [self._read_run(run_id) for _, run_id in selected[start : start + limit]]
            return rules.run_page(items, start, total)

        return await self._run(page)

    # --- checkpoint (TR-18 .. TR-21) ------------------------------------------------------------

    async def checkpoint(self, thread_id: str, messages: Sequence[Message], run: RunRecord) -> None:
        """Upsert the thread, replace its messages and upsert the run, all at once (TR-18)."""
        thread_id, checked, run = rules.check_checkpoint(thread_id, messages, run)
        messages_data = self._messages_data(thread_id, checked)
        run_data = encode_json(rules.run_to_json(run))
        entry = _run_entry(run)

        def checkpoint() -> None:
            stored = self._read_run(run.run_id) if run.run_id in self._index.runs else None
            rules.check_transition(stored, run)  # TR-20, TR-21: before anything is written
            existing = self._read_thread(thread_id)
            metadata = rules.checkpoint_thread_metadata(
                None if existing is None else existing.metadata, self._clock()
            )
            thread_data = encode_json(rules.thread_to_json(Thread(thread_id, metadata)))
            transaction = self._dir.transaction()
            transaction.replace(self._thread_path(thread_id), thread_data)
            transaction.replace(self._messages_path(thread_id), messages_data)
            transaction.replace(self._run_path(run.run_id), run_data)
            time = rules.effective_time(metadata)
            transaction.append(self._log, [_thread_entry(thread_id, time), entry])
            transaction.commit()
            self._after_commit()

        await self._run(checkpoint)


def open_store(ctx: StoreContext) -> AbstractAsyncContextManager[JSONThreadRunStore]:
    """The kit's opener: the directory ``ctx.root / ctx.namespace`` (an async CM)."""
    return JSONThreadRunStore(ctx.root / ctx.namespace, clock=ctx.clock)
