"""The cost promises of the memory-storage references (``reference/*/memory_storage.py``).

Not part of the conformance contract (a backend may be slow and correct), but the references
promise it: saving a message costs the same at 10 and at thousands of messages, reading the
newest N does not read the rest, and clean-up of one conversation leaves the others untouched.
The JSON store is checked by counting the bytes it reads, the SQLite store by the query plans
of the statements it runs. The Redis store's costs follow from its commands (RPUSH, LRANGE of
the last N, LLEN, LTRIM; see its module docstring).
"""

from __future__ import annotations

import asyncio
import builtins
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from agentstores.reference.jsonfile import _files
from agentstores.reference.jsonfile import memory_storage as json_memory_storage
from agentstores.reference.jsonfile.memory_storage import JSONMemoryStorage
from agentstores.reference.sqlite.memory_storage import SQLiteMemoryStorage
from agentstores.spec.messages import Message

#: Messages in the long conversation; enough that reading it whole would show.
LONG = 4_000
#: What a save or a tail read may read at most: a few chunks of the logs' backward readers
#: (64 KiB in ``_files``, 16 KiB in the memory store), whatever the log's size.
BOUND = 2 * 65_536 + 2 * 16_384


class _Counting:
    """A file object that counts the bytes read through it."""

    def __init__(self, file: Any, counter: list[int]) -> None:
        self._file = file
        self._counter = counter

    def read(self, *args: Any) -> Any:
        data = self._file.read(*args)
        self._counter[0] += len(data)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)

    def __enter__(self) -> _Counting:
        self._file.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.__exit__(*exc)


@pytest.fixture
def bytes_read(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A one-element list counting the bytes the JSON store's modules read from files."""
    counter = [0]

    def counting_open(*args: Any, **kwargs: Any) -> Any:
        return _Counting(builtins.open(*args, **kwargs), counter)

    for module in (_files, json_memory_storage):
        monkeypatch.setattr(module, "open", counting_open, raising=False)
    return counter


def test_json_save_and_newest_read_only_the_tail(tmp_path: Path, bytes_read: list[int]) -> None:
    """Saving a message and reading the newest 20 read a bounded tail of the log."""

    async def scenario() -> None:
        async with JSONMemoryStorage(tmp_path / "store", fsync=False) as store:
            for index in range(LONG):
                await store.save_message("s", "u", Message.text("user", f"message {index}"))
            log_size = next((tmp_path / "store" / "conversations").iterdir()).stat().st_size
            bytes_read[0] = 0
            await store.save_message("s", "u", Message.text("user", "one more"))
            saving = bytes_read[0]
            bytes_read[0] = 0
            newest = await store.get_messages("s", "u", 20)
            reading = bytes_read[0]
            assert [r.message.content[0]["text"] for r in newest][-1] == "one more"
            assert len(newest) == 20
            # A few chunks from the end, never the log (which is far larger than that).
            assert log_size > 4 * BOUND, "the log is too small for the test to mean much"
            assert saving <= BOUND, f"a save read {saving} of {log_size} bytes"
            assert reading <= BOUND, f"newest 20 read {reading} of {log_size} bytes"

    asyncio.run(scenario())


def test_json_cleanup_by_limit_touches_one_conversation(tmp_path: Path) -> None:
    """Clean-up by limit rewrites that conversation's file and leaves every other file as it
    was (same inode, same modification time)."""

    async def scenario() -> None:
        async with JSONMemoryStorage(tmp_path / "store", fsync=False) as store:
            for index in range(5):
                for session, user in (("s", "u"), ("s", "v"), ("t", "u")):
                    await store.save_message(session, user, Message.text("user", str(index)))
            files = sorted((tmp_path / "store").rglob("*"))
            before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in files if p.is_file()}
            await store.cleanup_messages_by_limit("u", "s", 2)
            changed = {
                p
                for p, stamp in before.items()
                if not p.exists() or (p.stat().st_ino, p.stat().st_mtime_ns) != stamp
            }
            changed.discard(tmp_path / "store" / ".lock")
            assert len(changed) == 1, f"clean-up of one conversation changed {changed}"
            assert await store.get_message_count("u", "s") == 2

    asyncio.run(scenario())


def test_sqlite_message_statements_use_the_indexes(tmp_path: Path) -> None:
    """Every statement on the messages table searches an index: none scans the table or sorts
    it, so saving, the newest N, counting and clean-ups never read other conversations."""
    statements: list[str] = []

    async def scenario() -> None:
        store = SQLiteMemoryStorage(tmp_path / "db.sqlite3", prefix="p_", synchronous="NORMAL")
        async with store:
            await store.database.read(lambda conn: conn.set_trace_callback(statements.append))
            for index in range(50):
                await store.save_message(f"s{index % 3}", "u", Message.text("user", "x"))
            await store.get_messages("s0", "u", 20)
            await store.get_messages("s0", "u")
            await store.get_message_count("u", "s0")
            await store.cleanup_messages_by_limit("u", "s0", 5)
            await store.cleanup_old_messages("u", 10)
            await store.delete_messages("s1", "u")

            def plans(conn: sqlite3.Connection) -> dict[str, list[str]]:
                conn.set_trace_callback(None)
                found = {}
                for sql in dict.fromkeys(statements):
                    if "ms_messages" in sql and not sql.lstrip().upper().startswith("INSERT"):
                        rows = conn.execute("EXPLAIN QUERY PLAN " + sql).fetchall()
                        found[sql] = [str(row[3]) for row in rows]
                return found

            found = await store.database.read(plans)
        assert len(found) >= 5, f"too few statements traced: {list(found)}"
        for sql, plan in found.items():
            bad = [step for step in plan if step.startswith("SCAN") or "TEMP B-TREE" in step]
            assert not bad, f"{sql}\n  plan: {plan}"

    asyncio.run(scenario())
