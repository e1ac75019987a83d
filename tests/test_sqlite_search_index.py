"""The SQLite session store's full-text index, brought up to date in batches (ss_fts_state).

Appends leave up to ``batch`` messages out of the index; a search reads those directly. Every
search must still find what the spec's rule finds (SS-20 .. SS-22), whatever mix of indexed
and pending messages, deletions and reused row ids the operations left, and the index must stay
consistent with the messages (FTS5's own integrity check, once everything is indexed).
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentstores.conformance.clock import ManualClock
from agentstores.conformance.markers import requirement
from agentstores.conformance.models.session_store import SessionStoreModel
from agentstores.conformance.suites.session_store_support import assert_exact
from agentstores.reference.sqlite._db import Database
from agentstores.reference.sqlite.session_store import MIGRATIONS, SQLiteSessionStore
from agentstores.spec.messages import Message

_WORDS = ["alpha", "beta", "gamma", "delta", "ab", "x"]
_QUERIES = ["alpha", "beta gamma", "delta", "alp", "ab", "zzz"]


def _said(text: str, created_at: int) -> Message:
    return Message.text("user", text, created_at=created_at)


def _state(conn: sqlite3.Connection, store: SQLiteSessionStore) -> tuple[int, int]:
    """(indexed_upto, largest message id)."""
    db = store.database
    upto = conn.execute(f"SELECT indexed_upto FROM {db.table('ss_fts_state')}").fetchone()[0]
    largest = conn.execute(f"SELECT coalesce(max(id), 0) FROM {db.table('ss_messages')}")
    return int(upto), int(largest.fetchone()[0])


def _index_everything_and_check(conn: sqlite3.Connection, store: SQLiteSessionStore) -> None:
    """Index the pending messages by hand, then run FTS5's integrity check, which compares the
    index with every message (it fails if a message is missing, extra or indexed twice)."""
    db = store.database
    fts, messages = db.table("ss_messages_fts"), db.table("ss_messages")
    upto, _ = _state(conn, store)
    conn.execute(
        f"INSERT INTO {fts} (rowid, search_text) SELECT id, search_text FROM {messages} "
        "WHERE id > ?",
        (upto,),
    )
    conn.execute(
        f"UPDATE {db.table('ss_fts_state')} "
        f"SET indexed_upto = (SELECT coalesce(max(id), 0) FROM {messages})"
    )
    conn.execute(f"INSERT INTO {fts} ({fts}) VALUES ('integrity-check')")


_OPERATION = st.one_of(
    st.tuples(st.just("add"), st.integers(0, 1), st.lists(st.sampled_from(_WORDS), max_size=3)),
    st.tuples(st.just("replace"), st.integers(0, 1), st.integers(0, 5)),
    st.tuples(st.just("truncate"), st.integers(0, 1), st.integers(0, 40)),
    st.tuples(st.just("recreate"), st.integers(0, 1), st.just(0)),
)


@requirement("SS-20", "SS-21", "SS-22")
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=st.sampled_from([1, 3, 64]), operations=st.lists(_OPERATION, max_size=40))
def test_search_finds_indexed_and_pending_messages(
    tmp_path_factory: Any, batch: int, operations: list[tuple[str, int, Any]]
) -> None:
    """SS-20 .. SS-22 on SQLite: after any mix of appends, replacements, truncations and
    deletions (which free the largest row ids for reuse), each search returns what the model
    returns, the index mark never passes the largest id, and the index matches the messages."""
    path = tmp_path_factory.mktemp("fts") / "store.sqlite3"
    clock = ManualClock()
    pending: list[str] = []
    model = SessionStoreModel(clock, id_source=lambda: pending.pop())

    async def scenario() -> None:
        async with SQLiteSessionStore(path, prefix="p_", clock=clock) as store:
            db = store.database
            await db.write(
                lambda conn: conn.execute(
                    f"UPDATE {db.table('ss_fts_state')} SET batch = ?", (batch,)
                )
            )
            ids = []
            for n in range(2):
                session = await store.create_session("/w", f"s{n}")
                pending.append(session.id)
                model.create_session("/w", f"s{n}")
                ids.append(session.id)
            for step, (kind, which, arg) in enumerate(operations):
                clock.advance(1)
                session_id = ids[which]
                if kind == "add":
                    message = _said(" ".join(arg) + f" #{step}", clock())
                    await store.add_message(session_id, message)
                    model.add_message(session_id, message)
                elif kind == "replace":
                    conversation = [_said(f"{_WORDS[k % 6]} {k}", clock()) for k in range(arg)]
                    await store.replace_conversation(session_id, conversation)
                    model.replace_conversation(session_id, conversation)
                elif kind == "truncate":
                    await store.truncate_conversation(session_id, clock() - arg)
                    model.truncate_conversation(session_id, clock() - arg)
                else:  # delete the session, messages and all, and make a new one
                    await store.delete_session(session_id)
                    model.delete_session(session_id)
                    session = await store.create_session("/w", f"again {step}")
                    pending.append(session.id)
                    model.create_session("/w", f"again {step}")
                    ids[which] = session.id
                upto, largest = await db.read(lambda conn: _state(conn, store))
                assert upto <= largest
                assert largest - upto < batch
                for query in _QUERIES:
                    actual = await store.search_chat_history(query, limit=100)
                    expected = model.search_chat_history(query, limit=100)
                    assert_exact(actual, expected, f"search {query!r} after {kind}")
            await db.write(lambda conn: _index_everything_and_check(conn, store))

    asyncio.run(scenario())


@requirement("SS-20")
def test_version_1_database_is_indexed_after_the_upgrade(tmp_path: Path) -> None:
    """SS-20 across the schema upgrade: messages written by version 1 (indexed as they came)
    are found by the upgraded store, and the index mark starts after them."""
    path = tmp_path / "v1.sqlite3"
    clock = ManualClock()

    async def scenario() -> None:
        old = Database(path, prefix="p_", family="session_store", migrations=MIGRATIONS[:1])
        sessions, messages = old.table("ss_sessions"), old.table("ss_messages")

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"INSERT INTO {sessions} VALUES ('20240101_1', 'user', 1, 1, 3, 3, ?)",
                ('{"id":"20240101_1"}',),
            )
            conn.executemany(
                f"INSERT INTO {messages} (session_id, position, created_at, search_text, "
                "message) VALUES ('20240101_1', ?, 1, ?, '{}')",
                [(n, f"old message {n} alpha") for n in range(3)],
            )

        await old.write(write)
        await old.close()
        async with SQLiteSessionStore(path, prefix="p_", clock=clock) as store:
            upto, largest = await store.database.read(lambda conn: _state(conn, store))
            assert (upto, largest) == (3, 3)
            await store.database.write(
                lambda conn: conn.execute(
                    f"INSERT INTO {store.database.table('ss_messages_fts')} "
                    f"({store.database.table('ss_messages_fts')}) VALUES ('integrity-check')"
                )
            )

    asyncio.run(scenario())
