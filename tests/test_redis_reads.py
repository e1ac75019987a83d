"""The Redis references' newest-N reads (session service ``get`` / ``get_events``, memory
storage ``get_messages``), which read one framed text per call (``_client.unframe``) and
decode the stored texts by shape.

* What a read returns is what was written, for state keys and values, events and messages of
  any content (the separator, quotes, backslashes, non-ASCII text included), with a client
  that decodes responses and with one that does not (G-4, G-7, SV-3, SV-10, SV-16, MS-19).
* Data an earlier version stored (the full ``rules.event_to_json`` form) reads the same.
* Damaged stored data (not JSON, not UTF-8, the wrong shape, holding the separator, missing)
  is StorageUnavailable, never a malformed record (G-11); a stored message record decodes as
  ``rules.conversation_message_from_json`` reads it (hypothesis, damaged records too).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentstores.conformance.markers import requirement
from agentstores.conformance.strategies import json_values, messages
from agentstores.conformance.suites._session_service_events import events
from agentstores.reference import memory_storage_rules as rules_ms
from agentstores.reference import session_service_rules as rules
from agentstores.reference.redis import server
from agentstores.reference.redis.memory_storage import (
    RedisMemoryStorage,
    _decode_record,
    _decode_records,
)
from agentstores.reference.redis.session_service import RedisSessionService
from agentstores.spec.errors import StorageUnavailable
from agentstores.spec.memory_storage import ConversationMessage
from agentstores.spec.messages import Message, message_to_json
from agentstores.spec.session_service import CreateRequest, Event, EventFilter, GetRequest
from agentstores.spec.values import dump_json, load_json

from .conftest import require_redis

_SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))

#: State keys and text that a framed reply must carry through unchanged.
_ODD_TEXT = ["k", "\x1e", 'q"uote', "back\\slash", "a/b", "é", "日本", "line\nbreak", "\x01"]


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    require_redis()
    with server.disposable_server() as found:
        yield found


_stores = iter(range(10**9))


def _run(url: str, scenario: Callable[[Any, str], Awaitable[None]], *, decoded: bool) -> None:
    """Run ``scenario(client, prefix)`` with a client of the server that decodes responses
    or not, under a prefix of its own."""

    async def main() -> None:
        client = aioredis.Redis.from_url(url, decode_responses=decoded)
        try:
            await scenario(client, f"reads-{next(_stores)}:")
        finally:
            await client.aclose()

    asyncio.run(main())


def _state_keys() -> st.SearchStrategy[str]:
    scoped = st.sampled_from(["", "user:", "app:", "temp:"])
    return st.builds(lambda scope, name: scope + name, scoped, st.sampled_from(_ODD_TEXT))


@requirement("SV-3", "SV-10", "SV-16", "SV-17", "G-4")
@_SETTINGS
@given(
    state=st.dictionaries(_state_keys(), json_values(max_leaves=4), max_size=4),
    appended=st.lists(events(), max_size=4),
    newest=st.integers(0, 5),
    decoded=st.booleans(),
)
def test_reads_return_what_was_written(
    url: str, state: dict[str, Any], appended: list[Event], newest: int, decoded: bool
) -> None:
    """``get`` (all or the newest n) and ``get_events`` return the events and merged state
    that the writes returned (without ``temp:`` keys, SV-9), whatever they contain."""

    async def scenario(client: Any, prefix: str) -> None:
        async with RedisSessionService(client=client, prefix=prefix) as store:
            session = await store.create(CreateRequest("app", "u", state=state, agent_id="a"))
            for event in appended:
                if event.id is not None and any(e.id == event.id for e in session.events):
                    continue  # a duplicate id is refused (SV-13): not this test's subject
                session = await store.append_event(session, event)
            kept = {k: v for k, v in session.state.items() if not k.startswith("temp:")}
            # SV-16: by time, then in append order (sorted is stable).
            ordered = tuple(sorted(session.events, key=lambda e: e.timestamp or 0))
            whole = await store.get(GetRequest("app", "u", session.id))
            assert whole is not None
            assert whole.events == ordered
            assert whole.state == kept
            assert (whole.agent_id, whole.version) == ("a", session.version)
            assert whole.metadata == session.metadata
            assert whole.last_update_time == session.last_update_time
            last = await store.get(GetRequest("app", "u", session.id, num_recent_events=newest))
            assert last is not None
            assert last.events == ordered[max(0, len(ordered) - newest) :]
            got = await store.get_events("app", "u", session.id, EventFilter())
            assert got == list(ordered)

    _run(url, scenario, decoded=decoded)


@requirement("MS-19", "G-14")
@_SETTINGS
@given(
    saved=st.lists(messages(), max_size=4),
    odd=st.sampled_from(_ODD_TEXT),
    limit=st.integers(0, 5),
    decoded=st.booleans(),
)
def test_messages_read_as_they_were_saved(
    url: str, saved: list[Message], odd: str, limit: int, decoded: bool
) -> None:
    """``get_messages`` returns the newest ``limit`` records as ``save_message`` returned
    them, whatever their text."""

    async def scenario(client: Any, prefix: str) -> None:
        async with RedisMemoryStorage(client=client, prefix=prefix) as store:
            records = [await store.save_message("s", "u", m) for m in saved]
            records.append(await store.save_message("s", "u", Message.text("user", odd)))
            got = await store.get_messages("s", "u", limit)
            assert got == (records[-limit:] if limit else records)

    _run(url, scenario, decoded=decoded)


#: The stored text of an event as an earlier version wrote it (``rules.event_to_json``).
_OLD_EVENT = Event(
    author="agent",
    id="old",
    timestamp=5,
    content=Message.text("assistant", "from before", created_at=4),
    metadata={"m": 1},
)


async def _session_with_events(store: RedisSessionService) -> tuple[Any, list[str]]:
    """A session of two events, and its keys (``_session_keys``: KEYS of the scripts)."""
    session = await store.create(CreateRequest("app", "u", session_id="s"))
    session = await store.append_event(session, Event(author="user", timestamp=1))
    session = await store.append_event(session, Event(author="user", timestamp=2))
    return session, store._session_keys("app", "u", "s")


@pytest.mark.parametrize("decoded", [False, True])
def test_events_in_the_full_form_of_earlier_versions_read_the_same(url: str, decoded: bool) -> None:
    async def scenario(client: Any, prefix: str) -> None:
        async with RedisSessionService(client=client, prefix=prefix) as store:
            _, keys = await _session_with_events(store)
            members = await client.zrange(keys[6], 0, -1)
            await client.hset(keys[5], members[0], dump_json(rules.event_to_json(_OLD_EVENT)))
            read = await store.get(GetRequest("app", "u", "s"))
            assert read is not None and read.events[0] == _OLD_EVENT
            got = await store.get_events("app", "u", "s")
            assert got[0] == _OLD_EVENT

    _run(url, scenario, decoded=decoded)


#: Ways to damage a session's stored data: (key index in ``_session_keys``, field or None for
#: the first event's member, value or None to delete the field), and whether ``get_events``
#: (which reads no session view) sees it too.
_SESSION_DAMAGE: list[tuple[int, str | None, bytes | None, bool]] = [
    (5, None, b"not json", True),
    (5, None, b'{"author":"user"}', True),
    (5, None, b'{"author":"user","id":"e","timestamp":1,"metadata":[]}', True),
    (5, None, b'{"author":"user","id":"e","timestamp":1}\x1e{"author":"x"}', True),
    (5, None, b'{"author":"user","id":"e","timestamp":1,"reasoning":"\xff"}', True),
    (5, None, None, True),
    (1, "k", b"{", False),
    (1, "k", b"1\x1e2", False),
    (1, "k", b"1 ", False),
    (0, "created_at", None, False),
    (0, "metadata", b"[]", False),
    (0, "agent_id", b"7", False),
    (0, "version", b"x", False),
]


@pytest.mark.parametrize(("index", "field", "value", "events_too"), _SESSION_DAMAGE)
@pytest.mark.parametrize("decoded", [False, True])
def test_damaged_session_data_is_storage_unavailable(
    url: str, index: int, field: str | None, value: bytes | None, events_too: bool, decoded: bool
) -> None:
    async def scenario(client: Any, prefix: str) -> None:
        async with RedisSessionService(client=client, prefix=prefix) as store:
            session, keys = await _session_with_events(store)
            session = await store.update_state(session, {"k": 1})
            name = field if field is not None else (await client.zrange(keys[6], 0, 0))[0]
            if value is None:
                await client.hdel(keys[index], name)
            else:
                await client.hset(keys[index], name, value)
            with pytest.raises(StorageUnavailable):
                await store.get(GetRequest("app", "u", "s"))
            with pytest.raises(StorageUnavailable):
                await store.get(GetRequest("app", "u", "s", num_recent_events=2))
            if events_too:
                with pytest.raises(StorageUnavailable):
                    await store.get_events("app", "u", "s")
            else:
                assert len(await store.get_events("app", "u", "s")) == 2

    _run(url, scenario, decoded=decoded)


_GOOD_RECORD = (
    '{"id":"m","session_id":"s","user_id":"u","created_at":1,'
    '"message":{"role":"user","content":[],"created_at":null,"id":null,"metadata":{}}}'
)

#: Stored message records that are damaged (None: the listed id has no record).
_MESSAGE_DAMAGE: list[bytes | None] = [
    None,
    b"not json",
    b"[]",
    _GOOD_RECORD[:-1].encode(),
    (_GOOD_RECORD + "\x1e" + _GOOD_RECORD).encode(),
    _GOOD_RECORD.replace('"created_at":1', '"created_at":"1"').encode(),
    _GOOD_RECORD.replace('"user_id":"u",', "").encode(),
    _GOOD_RECORD.replace('"role":"user",', "").encode(),
    _GOOD_RECORD.replace('"content":[]', '"content":{}').encode(),
    _GOOD_RECORD.replace('"metadata":{}', '"metadata":{},"colour":1').encode(),
    _GOOD_RECORD.replace('"s"', '"\xff"').encode("latin-1"),
]


@pytest.mark.parametrize("value", _MESSAGE_DAMAGE)
@pytest.mark.parametrize("decoded", [False, True])
def test_damaged_messages_are_storage_unavailable(
    url: str, value: bytes | None, decoded: bool
) -> None:
    async def scenario(client: Any, prefix: str) -> None:
        async with RedisMemoryStorage(client=client, prefix=prefix) as store:
            record = await store.save_message("s", "u", Message.text("user", "hi"))
            await store.save_message("s", "u", Message.text("user", "later"))
            data = store._conversation_keys("s", "u")[1]
            if value is None:
                await client.hdel(data, record.id)
            else:
                await client.hset(data, record.id, value)
            with pytest.raises(StorageUnavailable):
                await store.get_messages("s", "u")
            # The newest alone is intact.
            newest = await store.get_messages("s", "u", 1)
            assert [m.message.content for m in newest] == [({"type": "text", "text": "later"},)]

    _run(url, scenario, decoded=decoded)


def _record_text(message: Message, created_at: int) -> str:
    record = {
        "id": "m",
        "session_id": "s",
        "user_id": "u",
        "created_at": created_at,
        "message": message_to_json(message),
    }
    return dump_json(record)


@requirement("MS-19", "G-7", "G-11")
@_SETTINGS
@given(message=messages(), created_at=st.integers(0, 2**63 - 1), data=st.data())
def test_stored_records_decode_as_the_rules_read_them(
    message: Message, created_at: int, data: st.DataObject
) -> None:
    """The shape-only decoding of a stored message record gives what
    ``rules.conversation_message_from_json`` gives, in fresh objects; a damaged record is
    StorageUnavailable or reads as the rules read it, never a malformed record."""
    text = _record_text(message, created_at)
    decoded = _decode_record(text)
    assert decoded == rules_ms.conversation_message_from_json(load_json(text))
    assert type(decoded) is ConversationMessage and type(decoded.message) is Message
    decoded.message.metadata["changed"] = True  # type: ignore[index]
    assert _decode_record(text).message == message
    obj = load_json(text)
    assert isinstance(obj, dict)
    target = obj["message"] if data.draw(st.booleans()) else obj
    key = data.draw(st.sampled_from([*sorted(target), "extra"]))
    if data.draw(st.booleans()):
        target.pop(key, None)
    else:
        target[key] = data.draw(st.sampled_from([None, 0, True, "", "x", [], {}, [1]]))
    damaged = dump_json(obj)
    try:
        ours = _decode_record(damaged)
    except StorageUnavailable:
        return
    assert type(ours) is ConversationMessage and type(ours.message) is Message
    assert type(ours.created_at) is int and {type(ours.id), type(ours.user_id)} == {str}
    assert type(ours.message.content) is tuple and type(ours.message.metadata) is dict
    try:
        theirs = rules_ms.conversation_message_from_json(load_json(damaged))
    except StorageUnavailable:
        return  # the rules check the message's values again; a read checks its shape
    assert ours == theirs


@requirement("MS-19", "G-7", "G-11")
@_SETTINGS
@given(
    batch=st.lists(st.tuples(messages(), st.integers(0, 2**63 - 1)), max_size=5),
    # Records with the separator fail the reply's count before any is decoded.
    damage=st.sampled_from([b for b in _MESSAGE_DAMAGE if b is not None and b"\x1e" not in b]),
    position=st.integers(0, 5),
)
def test_a_reads_records_decode_together_as_each_alone(
    batch: list[tuple[Message, int]], damage: bytes, position: int
) -> None:
    """get_messages parses a read's records in one scan: the same messages as decoding each
    record alone, in order and in objects of their own; one damaged record among them (as
    ``get_messages`` reads it from the framed reply) is StorageUnavailable."""
    texts = [_record_text(message, created_at) for message, created_at in batch]
    together = _decode_records(texts)
    assert together == [_decode_record(text) for text in texts]
    if together:
        together[0].message.metadata["changed"] = True  # type: ignore[index]
        assert together[1:] == [_decode_record(text) for text in texts[1:]]
    try:
        damaged = damage.decode("utf-8")
    except UnicodeDecodeError:
        return  # the framed reply is refused before its records are decoded
    texts.insert(position, damaged)
    with pytest.raises(StorageUnavailable):
        _decode_records(texts)


@requirement("SV-3", "MS-19")
def test_reads_of_more_than_one_chunk(url: str) -> None:
    """Past 500 stored texts the read scripts fetch them in chunks (Lua's stack limit): the
    order and the count stay right."""

    async def scenario(client: Any, prefix: str) -> None:
        async with RedisSessionService(client=client, prefix=prefix) as store:
            session = await store.create(CreateRequest("app", "u", session_id="s"))
            for i in range(510):
                session = await store.append_event(session, Event(author="a", timestamp=i))
            read = await store.get(GetRequest("app", "u", "s"))
            assert read is not None and [e.timestamp for e in read.events] == list(range(510))
            last = await store.get(GetRequest("app", "u", "s", num_recent_events=505))
            assert last is not None and last.events == read.events[5:]
        async with RedisMemoryStorage(client=client, prefix=prefix) as memory:
            saved = [
                await memory.save_message("s", "u", Message.text("user", str(i)))
                for i in range(505)
            ]
            assert await memory.get_messages("s", "u") == saved
            assert await memory.get_messages("s", "u", 501) == saved[4:]

    _run(url, scenario, decoded=False)
