"""JSON session store and session service directories written in the layout before the record
logs (layout version 1, no marker): migrated in place, atomically, or refused with
StorageUnavailable; never read as empty. The old directories are built here byte for byte as
the old code wrote them (encode_json of the same dicts, JSON Lines logs with their header)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentstores.reference import session_service_rules as sv_rules
from agentstores.reference import session_store_rules as ss_rules
from agentstores.reference.jsonfile import _files
from agentstores.reference.jsonfile._files import TEMP_PREFIX, encode_json, name_for
from agentstores.reference.jsonfile._layout import LAYOUT_VERSION, SESSION_STORE_MARKER
from agentstores.reference.jsonfile.session_service import LAYOUT_MARKER, JSONSessionService
from agentstores.reference.jsonfile.session_store import JSONSessionStore
from agentstores.spec.errors import AlreadyExists, StorageUnavailable
from agentstores.spec.messages import Message, message_to_json
from agentstores.spec.session_service import (
    CreateRequest,
    Event,
    EventActions,
    GetRequest,
    ListRequest,
)
from agentstores.spec.session_store import SessionType

APP, USER = "app", "u1"
_EPOCH = "ab" * 16


def _jsonl(lines: list[Any]) -> bytes:
    """A JSON Lines log as the old JsonLinesLog wrote it: header line, then one line each."""
    header = encode_json({"format": "agentstores-jsonl/1", "epoch": _EPOCH}) + b"\n"
    return header + b"".join(encode_json(line) + b"\n" for line in lines)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (but the lock file) and its bytes."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != _files.LOCK_NAME
    }


# --- the session service --------------------------------------------------------------------


def _old_events() -> list[Event]:
    """Three stored events, out of time order (SV-16 orders them by time)."""
    events = []
    for index, timestamp in enumerate((1_003, 1_001, 1_002)):
        delta = {"step": index} if index else {"step": 0, "app:theme": "dark"}
        event = Event(
            author="user",
            id=f"e{index}",
            timestamp=timestamp,
            content=Message.text("user", f"hello {index}", created_at=timestamp),
            actions=EventActions(state_delta=delta),
        )
        events.append(sv_rules.check_event(event))
    return events


def _service_v1(root: Path) -> None:
    """A session-service directory of layout 1: session s1 with three events, s2 without."""

    def path(kind: str, *ids: str, suffix: str = ".json") -> Path:
        return root / kind / name_for(kind, *ids, suffix=suffix)

    events = _old_events()
    max_ts = 0
    lines = []
    for seq, event in enumerate(events):
        assert event.timestamp is not None and event.id is not None
        max_ts = max(max_ts, event.timestamp)
        lines.append({"seq": seq, "max_ts": max_ts, "event": sv_rules.event_to_json(event)})
        marker = {"app_name": APP, "user_id": USER, "session_id": "s1", "event_id": event.id}
        _write(path("sv_event_ids", APP, USER, "s1", event.id), encode_json(marker))
    _write(path("sv_events", APP, USER, "s1", suffix=".jsonl"), _jsonl(lines))
    for session_id, version, appended, updated in (("s1", 3, 3, 2_000), ("s2", 1, 0, 1_500)):
        record = {
            "app_name": APP,
            "user_id": USER,
            "id": session_id,
            "agent_id": "agent" if session_id == "s1" else None,
            "metadata": {"title": session_id},
            "state": {"step": 2} if session_id == "s1" else {"fresh": True},
            "created_at": 900,
            "last_update_time": updated,
            "version": version,
            "appended": appended,
            "max_ts": max_ts if appended else 0,
        }
        _write(path("sv_sessions", APP, USER, session_id), encode_json(record))
    pair = {"app_name": APP, "user_id": USER, "sessions": ["s1", "s2"]}
    _write(path("sv_pairs", APP, USER), encode_json(pair))
    _write(path("sv_apps", APP), encode_json({"app_name": APP, "state": {"app:theme": "dark"}}))


def test_service_v1_directory_is_migrated(tmp_path: Path) -> None:
    _service_v1(tmp_path)
    expected = _old_events()

    async def run() -> None:
        async with JSONSessionService(tmp_path) as service:
            s1 = await service.get(GetRequest(APP, USER, "s1"))
            assert s1 is not None
            assert s1.events == tuple(sorted(expected, key=lambda e: e.timestamp or 0))
            assert s1.state == {"step": 2, "app:theme": "dark"}
            assert (s1.version, s1.last_update_time, s1.created_at) == (3, 2_000, 900)
            assert (s1.agent_id, s1.metadata) == ("agent", {"title": "s1"})
            newest = await service.get(GetRequest(APP, USER, "s1", num_recent_events=1))
            assert newest is not None and [e.id for e in newest.events] == ["e0"]
            s2 = await service.get(GetRequest(APP, USER, "s2"))
            assert s2 is not None and s2.events == () and s2.state["fresh"] is True
            listed = await service.list(ListRequest(APP, USER))
            assert [s.id for s in listed] == ["s1", "s2"]
            # The migrated session takes appends, and knows its old event ids (SV-13).
            with pytest.raises(AlreadyExists):
                await service.append_event(s1, Event(author="user", id="e1"))
            after = await service.append_event(s1, Event(author="user", id="e9", timestamp=5))
            assert after.version == 4
        async with JSONSessionService(tmp_path) as service:
            again = await service.get(GetRequest(APP, USER, "s1"))
            assert again is not None and len(again.events) == 4

    asyncio.run(run())
    names = set(_snapshot(tmp_path))
    assert LAYOUT_MARKER in names
    assert not (tmp_path / "sv_events").exists()
    assert not (tmp_path / "sv_event_ids").exists()
    assert not [
        n for n in names if n.endswith(".json") and n.startswith(("sv_sessions", "sv_pairs"))
    ]


def test_service_v1_damaged_is_refused_and_left_alone(tmp_path: Path) -> None:
    _service_v1(tmp_path)
    log = tmp_path / "sv_events" / name_for("sv_events", APP, USER, "s1", suffix=".jsonl")
    data = log.read_bytes()
    log.write_bytes(data[: data.rindex(b"\n", 0, len(data) - 1) + 1])  # one event lost
    before = _snapshot(tmp_path)

    async def run() -> None:
        service = JSONSessionService(tmp_path)
        for _ in range(2):  # every operation says so, not just the first
            with pytest.raises(StorageUnavailable, match="layout before version 2") as info:
                await service.get(GetRequest(APP, USER, "s2"))
            assert "holds 2 events, its session file counts 3" in str(info.value)
        await service.close()

    asyncio.run(run())
    assert _snapshot(tmp_path) == before


def test_service_newer_layout_is_refused(tmp_path: Path) -> None:
    marker = encode_json({"format": "agentstores-json-session-service", "version": 99})
    _write(tmp_path / LAYOUT_MARKER, marker)

    async def run() -> None:
        service = JSONSessionService(tmp_path)
        with pytest.raises(StorageUnavailable, match="layout version 99"):
            await service.list(ListRequest(APP, USER))
        await service.close()

    asyncio.run(run())
    assert (tmp_path / LAYOUT_MARKER).read_bytes() == marker


def test_new_directories_get_the_marker(tmp_path: Path) -> None:
    async def run() -> None:
        async with JSONSessionService(tmp_path / "sv"):
            pass
        async with JSONSessionStore(tmp_path / "ss"):
            pass

    asyncio.run(run())
    for path in (tmp_path / "sv" / LAYOUT_MARKER, tmp_path / "ss" / SESSION_STORE_MARKER):
        assert _files.decode_json(path.read_bytes())["version"] == LAYOUT_VERSION  # type: ignore[index]


def test_current_layout_without_marker_is_kept(tmp_path: Path) -> None:
    """A directory the record-log code wrote before markers existed is layout 2 as it is."""

    async def run() -> None:
        async with JSONSessionService(tmp_path) as service:
            session = await service.create(CreateRequest(APP, USER, session_id="s"))
            await service.append_event(session, Event(author="user", id="e", timestamp=1))
        (tmp_path / LAYOUT_MARKER).unlink()
        before = _snapshot(tmp_path)
        async with JSONSessionService(tmp_path) as service:
            got = await service.get(GetRequest(APP, USER, "s"))
            assert got is not None and [e.id for e in got.events] == ["e"]
        after = _snapshot(tmp_path)
        assert LAYOUT_MARKER in after
        del after[LAYOUT_MARKER]
        assert after == before

    asyncio.run(run())


@pytest.fixture
def fail_journal_apply(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process dies right after the migration's journal is written (the first apply)."""
    original = _files._apply_journal
    calls = {"n": 0}

    def apply(root: Path, ops: Any, *, sync: bool) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("crash after the journal")
        original(root, ops, sync=sync)

    monkeypatch.setattr(_files, "_apply_journal", apply)
    yield


def test_service_migration_cut_short_is_completed(tmp_path: Path, fail_journal_apply: None) -> None:
    _service_v1(tmp_path)

    async def run() -> None:
        service = JSONSessionService(tmp_path)
        with pytest.raises(StorageUnavailable):
            await service.list(ListRequest(APP, USER))
        await service.close()
        assert (tmp_path / _files.JOURNAL_NAME).exists()
        async with JSONSessionService(tmp_path) as service:
            s1 = await service.get(GetRequest(APP, USER, "s1"))
            assert s1 is not None and len(s1.events) == 3 and s1.version == 3
            assert len(await service.list(ListRequest(APP, USER))) == 2

    asyncio.run(run())
    assert not (tmp_path / _files.JOURNAL_NAME).exists()


def test_service_migration_failing_before_its_journal_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _service_v1(tmp_path)
    before = _snapshot(tmp_path)
    original = _files.Transaction.commit

    def commit(self: _files.Transaction) -> None:
        if self._staged:  # the migration's transaction: its temp files are written
            raise OSError("disk full before the journal")
        original(self)

    async def run() -> None:
        with monkeypatch.context() as patch:
            patch.setattr(_files.Transaction, "commit", commit)
            service = JSONSessionService(tmp_path)
            with pytest.raises(StorageUnavailable):
                await service.list(ListRequest(APP, USER))
            await service.close()
        left = _snapshot(tmp_path)
        assert any(name.startswith(TEMP_PREFIX) for name in left)  # as a crash leaves them
        async with JSONSessionService(tmp_path) as service:
            assert len(await service.list(ListRequest(APP, USER))) == 2

    asyncio.run(run())
    assert not [n for n in _snapshot(tmp_path) if os.path.basename(n).startswith(TEMP_PREFIX)]
    assert before  # the old layout was there


# --- the session store ----------------------------------------------------------------------


def _store_v1(root: Path) -> list[dict[str, Any]]:
    """A session-store directory of layout 1: one session with two messages at generation 1,
    one without messages (and so without a log); returns the messages' JSON."""
    messages = [
        message_to_json(Message.text(role, f"message {i}", created_at=100 + i))
        for i, role in enumerate(("user", "assistant"))
    ]
    for session_id, generation, count in (("20260101_1", 1, 2), ("20260101_2", 0, 0)):
        session = ss_rules.new_session(session_id, "/w", f"name {session_id}", SessionType.USER, 50)
        session = dataclasses.replace(session, updated_at=70, message_count=count)
        record = {
            "session": ss_rules.session_to_json(session),
            "message_count": count,
            "log": generation,
        }
        _write(root / "sessions" / name_for(session_id), encode_json(record))
        if count:
            log = name_for(session_id, str(generation), suffix=".jsonl")
            _write(root / "messages" / log, _jsonl(messages))
    _write(root / "ids.json", encode_json({"days": {"20260101": 2}}))
    return messages


def test_store_v1_directory_is_migrated(tmp_path: Path) -> None:
    messages = _store_v1(tmp_path)

    async def run() -> None:
        async with JSONSessionStore(tmp_path) as store:
            one = await store.get_session("20260101_1", include_messages=True)
            assert [message_to_json(m) for m in one.conversation or ()] == messages
            assert (one.message_count, one.updated_at, one.name) == (2, 70, "name 20260101_1")
            two = await store.get_session("20260101_2")
            assert two.message_count == 0
            assert {s.id for s in await store.list_sessions()} == {"20260101_1", "20260101_2"}
            await store.add_message("20260101_1", Message.text("user", "more", created_at=200))
            assert (await store.get_session("20260101_1")).message_count == 3
            created = await store.create_session("/w", "new")
            assert created.id not in {"20260101_1", "20260101_2"}

    asyncio.run(run())
    names = set(_snapshot(tmp_path))
    assert SESSION_STORE_MARKER in names
    assert not [n for n in names if n.endswith(".jsonl")]


def test_store_v1_damaged_is_refused_and_left_alone(tmp_path: Path) -> None:
    _store_v1(tmp_path)
    session_file = tmp_path / "sessions" / name_for("20260101_2")
    session_file.write_bytes(session_file.read_bytes()[:-5])  # a torn session file
    before = _snapshot(tmp_path)

    async def run() -> None:
        store = JSONSessionStore(tmp_path)
        with pytest.raises(StorageUnavailable, match="cannot be migrated"):
            await store.list_sessions()
        await store.close()

    asyncio.run(run())
    assert _snapshot(tmp_path) == before
