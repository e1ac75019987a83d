"""Event ids in the SQLite session service: derived ids and indexed ids never collide (SV-13).

An event without an id gets ``hex16(timestamp) + hex16(seq)`` and is not in the id index; the
others are. These tests force every way the two kinds could meet, and the upgrade of a
version-1 database, whose events keep their order before the new ones (SV-16).
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from agentstores.conformance.clock import ManualClock
from agentstores.conformance.markers import requirement
from agentstores.reference import _events
from agentstores.reference.sqlite import session_service as service_module
from agentstores.reference.sqlite._db import Database
from agentstores.reference.sqlite.session_service import MIGRATIONS, SQLiteSessionService
from agentstores.spec.errors import AlreadyExists
from agentstores.spec.messages import Message
from agentstores.spec.session_service import CreateRequest, Event, GetRequest, Session

APP, USER = "app", "user"


def _event(text: str, **fields: Any) -> Event:
    return Event(author="user", content=Message.text("user", text), **fields)


async def _ids(store: SQLiteSessionService, session: Session) -> list[str | None]:
    got = await store.get(GetRequest(APP, USER, session.id))
    assert got is not None
    return [e.id for e in got.events]


def _rows(store: SQLiteSessionService) -> Any:
    table = store.database.table("sv_events")
    return store.database.read(
        lambda conn: conn.execute(
            f"SELECT event_id, indexed, timestamp, seq FROM {table} ORDER BY timestamp, seq"
        ).fetchall()
    )


@requirement("SV-12", "SV-13")
def test_derived_and_given_ids_never_collide(tmp_path: Path) -> None:
    """SV-12, SV-13: a derived id given again is AlreadyExists; an id given before the store
    would derive it makes the store choose another; every id stays unique in the session."""
    clock = ManualClock()

    async def scenario() -> None:
        async with SQLiteSessionService(tmp_path / "s.sqlite3", clock=clock) as store:
            session = await store.create(CreateRequest(APP, USER))
            session = await store.append_event(session, _event("one"))
            derived = session.events[-1].id
            assert derived == f"{clock():016x}{session.version:016x}"
            # The same id again, as a retry would send it: refused, nothing written.
            with pytest.raises(AlreadyExists):
                await store.append_event(session, _event("again", id=derived))
            # An id given now that the store would derive for the next append.
            predicted = f"{clock():016x}{session.version + 2:016x}"
            session = await store.append_event(session, _event("two", id=predicted))
            session = await store.append_event(session, _event("three"))
            chosen = session.events[-1].id
            assert chosen not in (predicted, derived)
            ids = await _ids(store, session)
            assert ids == [derived, predicted, chosen]
            # Given ids are unique among themselves too, and the chosen one is indexed.
            for taken in (predicted, chosen):
                with pytest.raises(AlreadyExists):
                    await store.append_event(session, _event("dup", id=taken))
            assert [row[:2] for row in await _rows(store)] == [
                (derived, 0),
                (predicted, 1),
                (chosen, 1),
            ]
            assert await _ids(store, session) == ids

    asyncio.run(scenario())


@requirement("SV-13")
def test_random_id_that_meets_a_derived_one_is_chosen_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SV-13: when the derived id is taken, the random replacement is checked as well."""
    clock = ManualClock()

    async def scenario() -> None:
        async with SQLiteSessionService(tmp_path / "s.sqlite3", clock=clock) as store:
            session = await store.create(CreateRequest(APP, USER))
            session = await store.append_event(session, _event("one"))
            derived = session.events[-1].id
            assert derived is not None
            predicted = f"{clock():016x}{session.version + 2:016x}"
            session = await store.append_event(session, _event("two", id=predicted))
            choices = iter([derived, predicted, "f" * 32])
            monkeypatch.setattr(_events, "new_event_id", lambda: next(choices))
            session = await store.append_event(session, _event("three"))
            assert session.events[-1].id == "f" * 32
            assert await _ids(store, session) == [derived, predicted, "f" * 32]

    asyncio.run(scenario())


@requirement("SV-13", "SV-16")
def test_version_1_events_keep_their_ids_and_order(tmp_path: Path) -> None:
    """SV-13, SV-16 across the schema upgrade: events written by version 1 keep their ids
    (still unique), and come before the new ones of the same time."""
    path = tmp_path / "v1.sqlite3"
    clock = ManualClock()

    async def scenario() -> None:
        old = Database(path, prefix="", family="session_service", migrations=MIGRATIONS[:1])
        sessions, events = old.table("sv_sessions"), old.table("sv_events")
        body = _events.encode_stored(
            _events.checked_event(_event("old")), event_id="placeholder", now=clock()
        )

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"INSERT INTO {sessions} VALUES (?, ?, 's', NULL, '{{}}', '{{}}', ?, ?, 3, 2)",
                (APP, USER, clock(), clock()),
            )
            for seq, event_id in enumerate(["a" * 32, "old-2"]):
                conn.execute(
                    f"INSERT INTO {events} VALUES (?, ?, 's', ?, ?, ?, 'user', NULL, NULL, "
                    "'user', ?)",
                    (APP, USER, seq, event_id, clock(), body.replace("placeholder", event_id)),
                )

        await old.write(write)
        await old.close()
        async with SQLiteSessionService(path, clock=clock) as store:
            session = await store.get(GetRequest(APP, USER, "s", num_recent_events=0))
            assert session is not None and session.version == 3
            for taken in ("a" * 32, "old-2"):
                with pytest.raises(AlreadyExists):
                    await store.append_event(session, _event("dup", id=taken))
            session = await store.append_event(session, _event("new"))
            assert await _ids(store, session) == ["a" * 32, "old-2", session.events[-1].id]
            assert [row[3] for row in await _rows(store)] == [0, 1, 4]

    asyncio.run(scenario())


def test_derived_form_is_exact() -> None:
    """Only the exact derived spelling (lower-case hex, 16 + 16 digits, values that SQLite
    can store) parses."""
    key = service_module._derived_key
    assert key(f"{5:016x}{7:016x}") == (5, 7)
    assert key(f"{5:016x}{2**63 - 1:016x}") == (5, 2**63 - 1)
    for other in (
        "A" * 32,
        "a" * 31,
        f"{5:016x}0{7:016x}",
        "g" * 32,
        "",
        "0x" + "0" * 30,
        "f" * 32,
    ):
        assert key(other) is None
