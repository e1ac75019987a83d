"""The JSON stores keep the descriptors of recently appended logs open between operations
(StoreDirectory.open_file). A kept descriptor must never write to, or read from, a file that
another store object replaced or removed meanwhile: these tests hold the stores with kept
descriptors equal to what a fresh store object reads from the directory."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from agentstores.reference.jsonfile.memory_storage import JSONMemoryStorage
from agentstores.reference.jsonfile.session_service import JSONSessionService
from agentstores.reference.jsonfile.session_store import JSONSessionStore
from agentstores.spec.messages import Message
from agentstores.spec.session_service import CreateRequest, Event, GetRequest

#: (which store object, what it does) steps on one conversation.
_STEP = st.tuples(st.sampled_from("ab"), st.sampled_from(["save", "save", "keep", "delete"]))


def _text(message: Message) -> str:
    (part,) = message.content
    text = part["text"] if isinstance(part, dict) else part.text  # type: ignore[union-attr]
    assert isinstance(text, str)
    return text


@settings(max_examples=25, deadline=None)
@given(steps=st.lists(_STEP, max_size=12), keep=st.integers(1, 3))
def test_memory_storage_appends_follow_rewrites_by_others(
    tmp_path_factory: object, steps: list[tuple[str, str]], keep: int
) -> None:
    """Two store objects on one directory save, clean up and delete one conversation in turn;
    the conversation is always what a model of it says, read by either object or a new one."""
    root = tmp_path_factory.mktemp("ms")  # type: ignore[attr-defined]

    async def run() -> None:
        async with JSONMemoryStorage(root) as a, JSONMemoryStorage(root) as b:
            stores = {"a": a, "b": b}
            model: list[str] = []
            for number, (who, step) in enumerate(steps):
                store = stores[who]
                if step == "save":
                    text = f"m{number}"
                    await store.save_message("s", "u", Message.text("user", text))
                    model.append(text)
                elif step == "keep":
                    await store.cleanup_messages_by_limit("u", "s", keep)
                    model = model[-keep:]
                else:
                    await store.delete_messages("s", "u")
                    model = []
                for reader in (a, b):
                    got = await reader.get_messages("s", "u")
                    assert [_text(m.message) for m in got] == model
                    assert await reader.get_message_count("u", "s") == len(model)
        async with JSONMemoryStorage(root) as fresh:
            got = await fresh.get_messages("s", "u")
            assert [_text(m.message) for m in got] == model

    asyncio.run(run())


def test_session_service_append_after_another_object_recreated_the_session(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        async with JSONSessionService(tmp_path) as a, JSONSessionService(tmp_path) as b:
            first = await a.create(CreateRequest("app", "u", session_id="s"))
            first = await a.append_event(first, Event(author="user", id="old", timestamp=1))
            await b.delete("app", "u", "s")
            second = await b.create(CreateRequest("app", "u", session_id="s"))
            seen = await a.get(GetRequest("app", "u", "s"))
            assert seen is not None and seen.events == () and seen.version == 0
            await a.append_event(second, Event(author="user", id="new", timestamp=2))
            for reader in (a, b):
                got = await reader.get(GetRequest("app", "u", "s"))
                assert got is not None and [e.id for e in got.events] == ["new"]
        async with JSONSessionService(tmp_path) as fresh:
            got = await fresh.get(GetRequest("app", "u", "s"))
            assert got is not None and [e.id for e in got.events] == ["new"]

    asyncio.run(run())


def test_session_store_append_after_another_object_replaced_the_conversation(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        async with JSONSessionStore(tmp_path) as a, JSONSessionStore(tmp_path) as b:
            session = await a.create_session("/w", "n")
            await a.add_message(session.id, Message.text("user", "one"))
            await b.replace_conversation(session.id, [Message.text("user", "replaced")])
            await a.add_message(session.id, Message.text("user", "two"))
            for reader in (a, b):
                got = await reader.get_session(session.id, include_messages=True)
                assert [_text(m) for m in got.conversation or ()] == ["replaced", "two"]

    asyncio.run(run())


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_close_releases_the_kept_descriptors(tmp_path: Path) -> None:
    async def run() -> None:
        before = _open_descriptors()
        store = JSONMemoryStorage(tmp_path)
        for session in range(40):  # more conversations than descriptors are kept
            for _ in range(2):
                await store.save_message(f"s{session}", "u", Message.text("user", "hi"))
        assert _open_descriptors() - before <= 16
        await store.close()
        assert _open_descriptors() == before

    asyncio.run(run())
