"""Lifecycle, namespace, durability, isolation and concurrency tests of the memory-storage
suite (MS-24 .. MS-30, G-2, G-7, G-14 .. G-19), as a mixin of
:class:`~agentstores.conformance.suites.memory_storage.MemoryStorageSuite`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import assume

from agentstores.spec.errors import (
    AlreadyExists,
    StorageUnavailable,
)
from agentstores.spec.memory_storage import SessionSummary, UserMemory
from agentstores.spec.messages import Message

from ..backend import Capability
from ..markers import needs, requirement
from ..strategies import adversarial_ids, messages
from .memory_storage_support import (
    H,
    Store,
    assert_same,
    new_memory,
    opened,
    store_snapshot,
    texts_of,
)

__all__ = ["RobustnessTests"]


class RobustnessTests:
    """What holds across operations: lifecycle, namespaces, durability, isolation, concurrency."""

    # --- lifecycle, namespaces, durability -----------------------------------------------

    @requirement("MS-26")
    def test_health(self, harness: H) -> None:
        """MS-26: health() returns None on a usable store."""

        async def body(store: Store) -> None:
            check: Any = store.health  # the protocol says None; a store might return more
            result = await check()
            assert result is None, f"health() returned {result!r}"

        harness.with_store(body)

    @requirement("MS-27", "MS-26", "G-16")
    def test_close_is_idempotent_and_final(self, harness: H) -> None:
        """MS-27, MS-26, G-16: close may be called twice; afterwards every operation, health
        included, raises StorageUnavailable."""

        async def body(store: Store) -> None:
            await store.save_message("s", "u", Message.text("user", "x"))
            await store.close()
            await store.close()
            calls = [
                store.health(),
                store.get_messages("s", "u"),
                store.save_message("s", "u", Message.text("user", "y")),
                store.get_user_memories("u"),
                store.save_user_memory(new_memory("m", "u", "x")),
                store.get_session_summary("s", "u"),
                store.get_message_count("u", "s"),
            ]
            for call in calls:
                with pytest.raises(StorageUnavailable):
                    await call

        harness.with_store(body)

    @requirement("MS-28")
    def test_migrate_is_idempotent_and_keeps_records(self, harness: H) -> None:
        """MS-28: a store is usable without migrate(); migrate() twice keeps every record and
        the store keeps working."""

        async def body(store: Store) -> None:
            memory = await store.save_user_memory(new_memory("m", "u", "x"))
            summary = await store.save_session_summary(SessionSummary("s", "u", "sum"))
            record = await store.save_message("s", "u", Message.text("user", "hi"))
            await store.migrate()
            await store.migrate()
            assert_same(await store.get_user_memories("u"), [memory], "memories")
            assert_same(await store.get_session_summary("s", "u"), summary, "summary")
            assert_same(await store.get_messages("s", "u"), [record], "messages")
            await store.save_message("s", "u", Message.text("user", "after"))
            assert await store.get_message_count("u", "s") == 2

        harness.with_store(body)

    @requirement("MS-29", "G-19")
    def test_namespaces_are_isolated_in_every_operation(self, harness: H) -> None:
        """MS-29, G-19: a store on another namespace of the same directory or database sees
        none of the first store's records, and none of its operations touch them."""
        first = harness.context
        second = harness.new_context(clock=harness.clock, root=first.root)
        users, sessions = ["u", "v"], ["s"]

        async def populate(store: Store) -> Any:
            await store.save_user_memory(new_memory("m1", "u", "tea"))
            await store.save_user_memory(new_memory("m2", "u", "coffee"))
            await store.save_user_memory(new_memory("m3", "v", "tea"))
            await store.save_session_summary(SessionSummary("s", "u", "sum"))
            for text in ("a", "b", "c"):
                await store.save_message("s", "u", Message.text("user", text))
            return await store_snapshot(store, users, sessions)

        async def meddle(store: Store) -> None:
            assert await store.get_user_memories("u") == []
            assert await store.search_user_memories("u", "") == []
            assert await store.get_session_summary("s", "u") is None
            assert await store.get_messages("s", "u") == []
            assert await store.get_message_count("u", "s") == 0
            await store.save_user_memory(new_memory("m1", "u", "other namespace"))
            await store.update_user_memory(new_memory("m1", "u", "changed"))
            await store.delete_user_memory("m1")
            await store.delete_user_memory("m2")
            await store.delete_user_memories_by_ids("u", ["m1", "m2"])
            await store.clear_user_memories("u")
            await store.clear_user_memories("v")
            await store.save_session_summary(SessionSummary("s", "u", "other"))
            await store.delete_session_summary("s", "u")
            await store.save_message("s", "u", Message.text("user", "z"))
            await store.cleanup_messages_by_limit("u", "s", 1)
            await store.cleanup_old_messages("u", harness.clock() + 1)
            await store.delete_messages("s", "u")
            await store.migrate()

        before = harness.with_store(populate, first)
        harness.clock.advance(10)
        harness.with_store(meddle, second)
        after = harness.with_store(lambda store: store_snapshot(store, users, sessions), first)
        for key, value in before.items():
            assert_same(after[key], value, f"{key} of the first namespace")

    @needs(Capability.DURABLE)
    @requirement("MS-30", "G-16")
    def test_everything_survives_reopening(self, harness: H) -> None:
        """MS-30, G-16: memories, summaries and conversations, with their times, ids and
        order, are exactly there after closing and reopening the store."""
        users, sessions = ["u", "v"], ["s", "t"]

        async def populate(store: Store) -> Any:
            for index, user in enumerate(users * 2):
                harness.clock.advance(1)
                await store.save_user_memory(new_memory(f"m{index}", user, f"text {index}", "in"))
                await store.save_message("s", user, Message.text("user", f"hello {index}"))
            await store.update_user_memory(new_memory("m0", "u", "changed"))
            await store.save_session_summary(SessionSummary("s", "u", "summary"))
            await store.save_message(
                "t", "v", Message("tool", ({"type": "tool_response", "id": 1, "x": [1.5]},))
            )
            return await store_snapshot(store, users, sessions)

        before = harness.with_store(populate)
        after = harness.with_store(lambda store: store_snapshot(store, users, sessions))
        for key, value in before.items():
            assert_same(after[key], value, f"{key} after reopening")

    # --- isolation of adversarial ids ----------------------------------------------------

    @requirement("MS-24", "G-2", "G-1")
    def test_adversarial_ids_are_stored_faithfully_and_apart(self, harness: H) -> None:
        """MS-24, G-2, G-1: ids full of separators, dots, slashes and look-alikes are stored
        as given and never share a memory, summary or conversation with another id."""

        def check(x: str, y: str) -> None:
            assume(x != y)

            async def body(store: Store) -> None:
                mx = await store.save_user_memory(new_memory(x, x, "x"))
                my = await store.save_user_memory(new_memory(y, y, "y"))
                assert_same(await store.get_user_memories(x), [mx], f"memories of {x!r}")
                assert_same(await store.get_user_memories(y), [my], f"memories of {y!r}")
                summaries = {}
                for pair in ((x, y), (y, x), (x, x)):
                    summaries[pair] = await store.save_session_summary(
                        SessionSummary(*pair, "|".join(pair))
                    )
                    await store.save_message(*pair, Message.text("user", "|".join(pair)))
                for pair, summary in summaries.items():
                    assert_same(await store.get_session_summary(*pair), summary, f"summary {pair}")
                    assert texts_of(await store.get_messages(*pair)) == ["|".join(pair)]
                await store.clear_user_memories(x)
                await store.delete_messages(x, y)
                await store.delete_session_summary(x, y)
                await store.cleanup_messages_by_limit(x, x, 1)
                assert_same(await store.get_user_memories(y), [my], f"memories of {y!r}")
                assert_same(await store.get_session_summary(y, x), summaries[(y, x)], "summary")
                assert texts_of(await store.get_messages(y, x)) == [f"{y}|{x}"]
                assert await store.get_message_count(y, x) == 0
                await store.delete_user_memory(y)
                assert await store.get_user_memories(y) == []

            harness.with_store(body, harness.new_context())

        harness.for_all(check, x=adversarial_ids(), y=adversarial_ids())

    @requirement("G-14", "G-15", "G-12", "G-4", "MS-17")
    def test_messages_round_trip_exactly(self, harness: H) -> None:
        """G-14, G-15, G-12, G-4, MS-17: any valid message (typed parts, JSON values with big
        ints and -0.0, metadata, its own id and time) comes back exactly from save_message and
        from get_messages."""
        with opened(harness) as store:

            def check(message: Message) -> None:
                record = harness.run(store.save_message("s", "u", message))
                assert_same(record.message, message, "save_message's message")
                (stored,) = harness.run(store.get_messages("s", "u", 1))
                assert_same(stored, record, "the stored record")

            harness.for_all(check, message=messages())

    @requirement("G-7")
    def test_records_are_the_callers(self, harness: H) -> None:
        """G-7: changing a message after saving it, or a record after reading it, does not
        change what is stored."""

        async def body(store: Store) -> None:
            metadata: dict[str, Any] = {"tags": ["a"]}
            part: dict[str, Any] = {"type": "data", "items": [1, 2]}
            message = Message("user", (part,), metadata=metadata)
            record = await store.save_message("s", "u", message)
            metadata["tags"].append("changed")
            part["items"].clear()
            record.message.metadata["tags"].append("x")
            (stored,) = await store.get_messages("s", "u")
            assert stored.message.metadata == {"tags": ["a"]}, stored.message.metadata
            assert stored.message.content == ({"type": "data", "items": [1, 2]},)

        harness.with_store(body)

    # --- concurrency -----------------------------------------------------------------------

    @requirement("MS-25", "G-18")
    def test_concurrent_saves_of_messages_lose_nothing(self, harness: H) -> None:
        """MS-25, G-18: concurrent save_message calls, from two store objects on one storage,
        store every message exactly once with distinct ids."""
        count = 30

        async def scenario() -> None:
            async with harness.open() as one, harness.open() as two:
                stores = [one, two]
                records = await asyncio.gather(
                    *(
                        stores[i % 2].save_message("s", "u", Message.text("user", f"m{i}"))
                        for i in range(count)
                    )
                )
                assert len({r.id for r in records}) == count, "message ids repeat"
                stored = await one.get_messages("s", "u")
                assert sorted(texts_of(stored)) == sorted(f"m{i}" for i in range(count))
                assert await two.get_message_count("u", "s") == count

        harness.run(scenario())

    @requirement("MS-25", "MS-3", "G-18")
    def test_concurrent_saves_of_one_memory_id_admit_one(self, harness: H) -> None:
        """MS-25, MS-3, G-18: of concurrent saves of one memory id exactly one succeeds; the
        others raise AlreadyExists; the stored memory is the winner's."""

        async def scenario() -> None:
            async with harness.open() as one, harness.open() as two:
                stores = [one, two]
                results = await asyncio.gather(
                    *(
                        stores[i % 2].save_user_memory(new_memory("m", f"user{i % 3}", f"text {i}"))
                        for i in range(10)
                    ),
                    return_exceptions=True,
                )
                wins = [r for r in results if isinstance(r, UserMemory)]
                losses = [r for r in results if isinstance(r, AlreadyExists)]
                assert len(wins) == 1 and len(losses) == 9, f"results: {results!r}"
                assert_same(await one.get_user_memories(wins[0].user_id), wins, "the winner")

        harness.run(scenario())

    @requirement("MS-25", "MS-14", "G-18")
    def test_concurrent_summary_saves_leave_one_whole(self, harness: H) -> None:
        """MS-25, MS-14, G-18: after concurrent saves of one summary the stored one is one of
        those saved, whole."""

        async def scenario() -> None:
            async with harness.open() as one, harness.open() as two:
                stores = [one, two]
                texts = [f"summary {i} " * (i + 1) for i in range(10)]
                await asyncio.gather(
                    *(
                        stores[i % 2].save_session_summary(SessionSummary("s", "u", text))
                        for i, text in enumerate(texts)
                    )
                )
                stored = await two.get_session_summary("s", "u")
                assert stored is not None and stored.summary in texts, f"stored {stored!r}"

        harness.run(scenario())

    @requirement("MS-25", "MS-11", "MS-23", "G-17")
    def test_readers_never_see_a_deletion_half_done(self, harness: H) -> None:
        """MS-25, MS-11, MS-23, G-17: a reader running beside delete_user_memories_by_ids or
        cleanup_messages_by_limit sees everything or the result, nothing in between."""
        count = 20

        async def scenario() -> None:
            async with harness.open() as writer, harness.open() as reader:
                ids = [f"m{i}" for i in range(count)]
                for memory_id in ids:
                    await writer.save_user_memory(new_memory(memory_id, "u", memory_id))
                    await writer.save_message("s", "u", Message.text("user", memory_id))
                seen_memories: set[int] = set()
                seen_counts: set[int] = set()
                done = asyncio.Event()

                async def watch() -> None:
                    while not done.is_set():
                        seen_memories.add(len(await reader.get_user_memories("u")))
                        seen_counts.add(len(await reader.get_messages("s", "u")))

                async def delete() -> None:
                    try:
                        await asyncio.sleep(0)
                        await writer.delete_user_memories_by_ids("u", ids)
                        await writer.cleanup_messages_by_limit("u", "s", 3)
                    finally:
                        done.set()

                await asyncio.gather(watch(), delete())
                assert seen_memories <= {count, 0}, f"memory counts seen: {seen_memories}"
                assert seen_counts <= {count, 3}, f"message counts seen: {seen_counts}"

        harness.run(scenario())
