"""Broken thread/run backends: each is the SQLite reference with one bug a real store had.

``BROKEN`` maps a short name to the backend and the requirement IDs of which the suite must
name at least one as failed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from agentstores.conformance.backend import Backend, Capability, Family, StoreContext
from agentstores.reference.sqlite._db import context_location
from agentstores.reference.sqlite.thread_run import SQLiteThreadRunStore
from agentstores.spec.messages import Message
from agentstores.spec.thread_run import (
    PersistedState,
    RunPage,
    RunQuery,
    RunRecord,
    Thread,
    ThreadMetadata,
)

__all__ = ["BROKEN"]


class HasMoreAtBoundary(SQLiteThreadRunStore):
    """``has_more`` stays true on the last full page (``<=`` for ``<``)."""

    async def list_runs(self, query: RunQuery) -> RunPage:
        page = await super().list_runs(query)
        offset = min(query.offset, page.total)
        return dataclasses.replace(page, has_more=offset + len(page.items) <= page.total)


class StatusFilterIgnored(SQLiteThreadRunStore):
    """``list_runs`` drops the status filter."""

    async def list_runs(self, query: RunQuery) -> RunPage:
        return await super().list_runs(dataclasses.replace(query, status=None))


class OffsetBeforeFilter(SQLiteThreadRunStore):
    """The page is cut from all runs first and filtered afterwards."""

    async def list_runs(self, query: RunQuery) -> RunPage:
        everything = await super().list_runs(RunQuery(offset=0, limit=200))
        page = everything.items[query.offset : query.offset + max(1, min(query.limit, 200))]
        selected = [
            run
            for run in page
            if (query.thread_id is None or run.thread_id == query.thread_id)
            and (query.status is None or run.status == query.status)
        ]
        total = (await super().list_runs(dataclasses.replace(query, offset=0))).total
        return RunPage(tuple(selected), total, query.offset + len(selected) < total)


class LatestByCreatedAt(SQLiteThreadRunStore):
    """``latest_run`` picks the run created last instead of the one updated last."""

    async def latest_run(self, thread_id: str) -> RunRecord | None:
        runs = (await self.list_runs(RunQuery(thread_id=thread_id, limit=200))).items
        return max(runs, key=lambda r: (r.created_at, r.run_id), default=None)


class CheckpointSkipsRunUpdate(SQLiteThreadRunStore):
    """A checkpoint writes the messages but keeps a stored run as it was."""

    async def checkpoint(self, thread_id: str, messages: Sequence[Message], run: RunRecord) -> None:
        stored = await self.load_run(run.run_id)
        await super().checkpoint(thread_id, messages, stored or run)


class CheckpointInTwoSteps(SQLiteThreadRunStore):
    """A checkpoint commits the run first and the messages in a second transaction."""

    async def checkpoint(self, thread_id: str, messages: Sequence[Message], run: RunRecord) -> None:
        current = await self.load_messages(thread_id) or []
        await super().checkpoint(thread_id, current, run)
        await asyncio.sleep(0)  # the window a concurrent reader falls into
        await self.save_messages(thread_id, messages)


def _squash(thread_id: str) -> str:
    # The classic file-name sanitiser: separators become underscores, so "a/b" is "a_b".
    return thread_id.replace("/", "_").replace(":", "_").replace("\\", "_")


class SeparatorCollision(SQLiteThreadRunStore):
    """Thread ids are sanitised into storage keys, so ``a/b`` and ``a_b`` share storage."""

    async def load_thread(self, thread_id: str) -> Thread | None:
        thread = await super().load_thread(_squash(thread_id))
        return None if thread is None else Thread(thread_id, thread.metadata)

    async def save_thread(self, thread: Thread) -> None:
        await super().save_thread(Thread(_squash(thread.id), thread.metadata))

    async def delete_thread(self, thread_id: str) -> None:
        await super().delete_thread(_squash(thread_id))

    async def load_messages(self, thread_id: str) -> list[Message] | None:
        return await super().load_messages(_squash(thread_id))

    async def save_messages(self, thread_id: str, messages: Sequence[Message]) -> None:
        await super().save_messages(_squash(thread_id), messages)

    async def delete_messages(self, thread_id: str) -> None:
        await super().delete_messages(_squash(thread_id))

    async def update_thread_metadata(self, thread_id: str, metadata: ThreadMetadata) -> None:
        await super().update_thread_metadata(_squash(thread_id), metadata)


class UpdateMetadataCreates(SQLiteThreadRunStore):
    """``update_thread_metadata`` of a missing thread creates it instead of NotFound."""

    async def update_thread_metadata(self, thread_id: str, metadata: ThreadMetadata) -> None:
        if await self.load_thread(thread_id) is None:
            await self.save_thread(Thread(thread_id, metadata))
            return
        await super().update_thread_metadata(thread_id, metadata)


def _clamp_ints(value: Any) -> Any:
    # What a store that keeps JSON numbers as 64-bit integers does to bigger ones.
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return max(-(2**63), min(2**63 - 1, value))
    if isinstance(value, list):
        return [_clamp_ints(v) for v in value]
    if isinstance(value, dict):
        return {k: _clamp_ints(v) for k, v in value.items()}
    return value


def _clamp_run(run: RunRecord) -> RunRecord:
    if run.state is None:
        return run
    extensions = _clamp_ints(dict(run.state.extensions))
    return dataclasses.replace(run, state=PersistedState(run.state.revision, extensions))


class BigIntegersTruncated(SQLiteThreadRunStore):
    """Integers in run state are clamped to 64 bits."""

    async def create_run(self, record: RunRecord) -> None:
        await super().create_run(_clamp_run(record))

    async def checkpoint(self, thread_id: str, messages: Sequence[Message], run: RunRecord) -> None:
        await super().checkpoint(thread_id, messages, _clamp_run(run))


class DeleteThreadKeepsRuns(SQLiteThreadRunStore):
    """``delete_thread`` removes the thread and its messages but leaves its runs."""

    async def delete_thread(self, thread_id: str) -> None:
        runs = (await self.list_runs(RunQuery(thread_id=thread_id, limit=200))).items
        await super().delete_thread(thread_id)
        for run in runs:
            await self.create_run(run)


class ThreadTiesInStorageOrder(SQLiteThreadRunStore):
    """Threads with equal times come back in reverse id order, not id order."""

    async def list_threads(self, offset: int = 0, limit: int = 50) -> list[str]:
        ids = await super().list_threads(0, 10**9)
        keyed = []
        for thread_id in ids:
            thread = await self.load_thread(thread_id)
            md = thread.metadata if thread else ThreadMetadata()
            effective = md.updated_at if md.updated_at is not None else md.created_at or 0
            keyed.append((effective, thread_id))
        keyed.sort(reverse=True)  # time descending, and (wrongly) id descending too
        return [thread_id for _, thread_id in keyed][offset : offset + limit]


class TitleFileNamedById(SQLiteThreadRunStore):
    """Keeps a side file per thread named after the raw id: ``../x`` escapes the directory."""

    def __init__(self, *args: Any, directory: Path, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._directory = directory

    async def save_thread(self, thread: Thread) -> None:
        await super().save_thread(thread)
        await asyncio.to_thread(self._write_side_file, thread)

    def _write_side_file(self, thread: Thread) -> None:
        side_file = os.path.join(self._directory, f"{thread.id}.title")
        if os.path.isdir(os.path.dirname(side_file)):  # never create directories anywhere
            with open(side_file, "w", encoding="utf-8") as handle:
                handle.write(thread.metadata.title or "")


def _title_file_opener(ctx: StoreContext) -> AbstractAsyncContextManager[Any]:
    path, prefix = context_location(ctx)
    return TitleFileNamedById(path, prefix=prefix, clock=ctx.clock, directory=ctx.root)


def _opener(
    cls: type[SQLiteThreadRunStore],
) -> Callable[[StoreContext], AbstractAsyncContextManager[Any]]:
    def open_store(ctx: StoreContext) -> AbstractAsyncContextManager[Any]:
        path, prefix = context_location(ctx)
        return cls(path, prefix=prefix, clock=ctx.clock)

    return open_store


def _forgetful_opener(ctx: StoreContext) -> AbstractAsyncContextManager[Any]:
    # Each open gets a database of its own, so nothing survives a reopen.
    return SQLiteThreadRunStore(ctx.root / f"{uuid.uuid4().hex}.sqlite3", clock=ctx.clock)


def _backend(name: str, cls: type[SQLiteThreadRunStore]) -> Backend:
    return Backend(
        name=f"broken-{name}",
        openers={Family.THREAD_RUN: _opener(cls)},
        capabilities=frozenset({Capability.DURABLE}),
    )


#: name -> (backend, requirement IDs of which at least one must be reported failed)
BROKEN: dict[str, tuple[Backend, frozenset[str]]] = {
    "has-more-at-boundary": (_backend("has-more", HasMoreAtBoundary), frozenset({"TR-16"})),
    "status-filter-ignored": (_backend("status", StatusFilterIgnored), frozenset({"TR-15"})),
    "offset-before-filter": (
        _backend("offset", OffsetBeforeFilter),
        frozenset({"TR-15", "TR-16"}),
    ),
    "latest-by-created-at": (_backend("latest", LatestByCreatedAt), frozenset({"TR-14"})),
    "checkpoint-skips-run": (
        _backend("checkpoint-run", CheckpointSkipsRunUpdate),
        frozenset({"TR-18", "TR-19"}),
    ),
    "checkpoint-in-two-steps": (
        _backend("checkpoint-two-steps", CheckpointInTwoSteps),
        frozenset({"TR-19", "TR-22", "G-17"}),
    ),
    "separator-collision": (_backend("collision", SeparatorCollision), frozenset({"G-2"})),
    "update-metadata-creates": (
        _backend("update-creates", UpdateMetadataCreates),
        frozenset({"TR-10"}),
    ),
    "big-integers-truncated": (
        _backend("big-ints", BigIntegersTruncated),
        frozenset({"TR-11", "G-4"}),
    ),
    "delete-thread-keeps-runs": (
        _backend("delete-keeps-runs", DeleteThreadKeepsRuns),
        frozenset({"TR-4"}),
    ),
    "thread-ties-in-storage-order": (
        _backend("ties", ThreadTiesInStorageOrder),
        frozenset({"TR-5", "G-9"}),
    ),
    "path-traversal": (
        Backend(name="broken-path-traversal", openers={Family.THREAD_RUN: _title_file_opener}),
        frozenset({"G-2"}),
    ),
    "durable-claim-not-honoured": (
        Backend(
            name="broken-forgetful",
            openers={Family.THREAD_RUN: _forgetful_opener},
            capabilities=frozenset({Capability.DURABLE}),
        ),
        frozenset({"TR-23"}),
    ),
}
