"""The JSON-file session service's events, written and read through the shared codec
(reference/_events.py), against the rules.

An append must store and return exactly the event ``rules.stored_event`` describes, sharing
nothing with the caller's (also when the caller changes its event while the append waits); logs
whose event records hold the full form of ``rules.event_to_json`` (written by earlier versions)
must read the same, in either member order; and a damaged event record must be
StorageUnavailable, never a malformed event.
"""

from __future__ import annotations

import asyncio
import tempfile
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentstores.conformance.markers import requirement
from agentstores.conformance.suites._session_service_events import events
from agentstores.reference import _events
from agentstores.reference import session_service_rules as rules
from agentstores.reference.jsonfile.session_service import JSONSessionService
from agentstores.spec.errors import AlreadyExists, StorageUnavailable
from agentstores.spec.messages import Message
from agentstores.spec.session_service import CreateRequest, Event, EventActions, GetRequest, Session
from agentstores.spec.values import JSONObject, dump_json, load_json

_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
APP, USER, SID = "app", "user", "s"
NOW = 1_000


def _clock() -> int:
    return NOW


def _store(path: Path) -> JSONSessionService:
    return JSONSessionService(path, clock=_clock, fsync=False)


def _log(path: Path) -> Path:
    (log,) = (path / "sv_sessions").iterdir()
    return log


def _rewrite_events(log: Path, payload_of: Any) -> None:
    """Replace the payload of every event record of ``log`` by ``payload_of(payload)`` (a
    decoded payload in, bytes out), with checksums and the offsets in the summaries (``sp``,
    ``mp``) made right."""
    moved: dict[int, int] = {}  # old offset -> new offset of each record
    old_at = new_at = 0
    out = []
    for line in log.read_bytes().split(b"\n")[:-1]:
        moved[old_at] = new_at
        old_at += len(line) + 1
        tab = line.index(b"\t")
        head, payload = line[17:tab], line[tab + 1 :]
        summary = load_json(head.decode("utf-8"))
        assert isinstance(summary, dict)
        if "e" in summary:
            payload = payload_of(load_json(payload.decode("utf-8")))
        for name in ("sp", "mp"):
            if name in summary:
                summary[name] = moved[summary[name]]
        head = dump_json(summary).encode("utf-8")
        line = b"%08x%08x " % (zlib.crc32(head), zlib.crc32(payload)) + head + b"\t" + payload
        out.append(line)
        new_at += len(line) + 1
    log.write_bytes(b"\n".join([*out, b""]))


def _full_form(payload: dict[str, Any], *, state_first: bool) -> bytes:
    """An event record's payload as earlier versions wrote it: the full form of the event."""
    full: JSONObject = {
        "event": rules.event_to_json(_events.decode_stored_object(payload["event"]))
    }
    if "state" in payload:
        full["state"] = payload["state"]
        if state_first:
            full = {"state": full["state"], "event": full["event"]}
    return dump_json(full).encode("utf-8")


async def _read(path: Path) -> tuple[Session, tuple[Event, ...], list[Event]]:
    """The session, its newest 2 events and get_events, by a fresh store object."""
    async with _store(path) as service:
        got = await service.get(GetRequest(APP, USER, SID))
        newest = await service.get(GetRequest(APP, USER, SID, num_recent_events=2))
        listed = await service.get_events(APP, USER, SID)
    assert got is not None and newest is not None
    return got, newest.events, listed


def _order(event: Event) -> int:
    assert event.timestamp is not None
    return event.timestamp


@requirement("SV-12", "SV-13", "SV-16", "G-7")
@_SETTINGS
@given(batch=st.lists(events(), min_size=1, max_size=4), state_first=st.booleans())
def test_events_are_stored_as_the_rules_say_and_old_logs_read_the_same(
    batch: list[Event], state_first: bool
) -> None:
    """Each append returns ``rules.stored_event`` of the checked event (a duplicate id is
    AlreadyExists); every read gives those events in SV-16's order, and so does the log with
    its event records rewritten in the full form (state first or last)."""

    async def run(path: Path) -> None:
        expected: list[Event] = []
        async with _store(path) as service:
            session = await service.create(CreateRequest(APP, USER, session_id=SID))
            for event in batch:
                if event.id is not None and any(e.id == event.id for e in expected):
                    with pytest.raises(AlreadyExists):
                        await service.append_event(session, event)
                    continue
                session = await service.append_event(session, event)
                stored = session.events[-1]
                assert stored.id is not None
                want = rules.stored_event(rules.check_event(event), event_id=stored.id, now=NOW)
                assert stored == want
                expected.append(want)
        expected.sort(key=_order)  # stable: append order on a tie (SV-16)
        got, newest, listed = await _read(path)
        assert list(got.events) == expected == listed
        assert list(newest) == expected[-2:]
        _rewrite_events(_log(path), lambda p: _full_form(p, state_first=state_first))
        old, old_newest, old_listed = await _read(path)
        assert old == got and old_newest == newest and old_listed == listed

    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(run(Path(directory)))


@requirement("G-7")
def test_the_callers_event_changed_during_the_append_changes_nothing_stored(
    tmp_path: Path,
) -> None:
    """The event is encoded before the append waits for the worker: changing the caller's
    dicts meanwhile (or the returned event's afterwards) changes neither the stored event, nor
    the returned one, nor the state."""
    delta = {"k": {"deep": [1]}, "user:u": {"v": 1}, "temp:t": {"x": 1}}
    part = {"type": "text", "text": "hi"}
    event = Event(
        author="user",
        content=Message("user", (part,), metadata={"m": [1]}),
        actions=EventActions(state_delta=delta, custom_actions={"c": {"d": 1}}),
        metadata={"meta": {"n": 1}},
    )
    want = rules.check_event(event)

    async def run() -> None:
        async with _store(tmp_path) as service:
            session = await service.create(CreateRequest(APP, USER, session_id=SID))
            task = asyncio.ensure_future(service.append_event(session, event))
            await asyncio.sleep(0)  # the append runs up to its wait for the worker
            delta["k"]["deep"].append(2)
            delta["user:u"]["v"] = 2
            delta["temp:t"]["x"] = 2
            part["text"] = "changed"
            event.metadata["meta"]["n"] = 2
            event.actions.custom_actions["c"]["d"] = 2
            assert event.content is not None
            event.content.metadata["m"].append(2)
            after = await task
            returned = after.events[-1]
            assert returned.id is not None
            expected = rules.stored_event(want, event_id=returned.id, now=NOW)
            assert returned == expected
            assert after.state == {"k": {"deep": [1]}, "user:u": {"v": 1}, "temp:t": {"x": 1}}
            returned.metadata["meta"]["n"] = 3
            returned.actions.state_delta["k"]["deep"].append(3)
            got = await service.get(GetRequest(APP, USER, SID))
            assert got is not None and got.events == (expected,)
            assert got.state == {"k": {"deep": [1]}, "user:u": {"v": 1}}
        fresh, _, _ = await _read(tmp_path)
        assert fresh.events == (expected,) and fresh.state == got.state

    asyncio.run(run())


def test_a_random_id_already_taken_is_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SV-13: an id the store picks that the session already has (practically never) is
    replaced by another, and the stored event carries the new one."""

    async def run() -> None:
        async with _store(tmp_path) as service:
            session = await service.create(CreateRequest(APP, USER, session_id=SID))
            session = await service.append_event(session, Event(author="a", id="taken"))
            picks = iter(["taken", "taken", "fresh"])
            monkeypatch.setattr(_events, "new_event_id", lambda: next(picks))
            event = Event(author="b", content=Message.text("user", "hi"))
            session = await service.append_event(session, event)
            assert session.events[-1] == rules.stored_event(
                rules.check_event(event), event_id="fresh", now=NOW
            )
        got, _, _ = await _read(tmp_path)
        assert [e.id for e in got.events] == ["taken", "fresh"]

    asyncio.run(run())


_GOOD = _events.encode_stored(
    _events.checked_event(Event(author="user", content=Message.text("user", "hi"))),
    event_id="e",
    now=1,
)


@requirement("G-11")
@pytest.mark.parametrize(
    "payload",
    [
        b'{"event":' + _GOOD.encode()[:20] + b"}",
        b'{"event":{"author":"a"}}',
        b'{"event":[]}',
        b'{"event":null}',
        b'{"event":nope}',
        b'{"event":\xff}',
        b'{"other":' + _GOOD.encode() + b"}",
        b'{"state":{},"event":{"author":"a"}}',
        b"[1]",
        b"",
        b'{"event":' + _GOOD.replace('"author"', '"writer"').encode() + b"}",
    ],
)
def test_a_damaged_event_record_is_storage_unavailable(tmp_path: Path, payload: bytes) -> None:
    """An event record whose payload (checksum right) is not an event is reported by every
    read of it, never returned."""

    async def run() -> None:
        async with _store(tmp_path) as service:
            session = await service.create(CreateRequest(APP, USER, session_id=SID))
            session = await service.append_event(session, Event(author="a", id="e1"))
            await service.append_event(session, Event(author="a", id="e2", timestamp=NOW + 1))
        _rewrite_events(
            _log(tmp_path),
            lambda p: payload if p["event"]["id"] == "e1" else dump_json(p).encode(),
        )
        async with _store(tmp_path) as service:
            with pytest.raises(StorageUnavailable):
                await service.get(GetRequest(APP, USER, SID))
            with pytest.raises(StorageUnavailable):
                await service.get_events(APP, USER, SID)
            # The newest event alone is whole, and reads.
            newest = await service.get(GetRequest(APP, USER, SID, num_recent_events=1))
            assert newest is not None and [e.id for e in newest.events] == ["e2"]

    asyncio.run(run())


def test_a_damaged_payload_checksum_is_storage_unavailable(tmp_path: Path) -> None:
    async def run() -> None:
        async with _store(tmp_path) as service:
            session = await service.create(CreateRequest(APP, USER, session_id=SID))
            await service.append_event(session, Event(author="a", id="e1"))
        log = _log(tmp_path)
        data = log.read_bytes()
        log.write_bytes(data.replace(b'"author":"a"', b'"author":"b"'))
        async with _store(tmp_path) as service:
            with pytest.raises(StorageUnavailable):
                await service.get(GetRequest(APP, USER, SID))

    asyncio.run(run())
