"""Requirement tests of threads and their messages (TR-1 .. TR-10, G-4 .. G-8, G-12 .. G-15).

Readable examples, one behaviour each; the state machine in ``thread_run_machine`` covers the
same rules with random operation sequences.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import strategies as st

from agentstores.spec.errors import InvalidArgument, NotFound
from agentstores.spec.messages import Message, message_from_json, message_to_json
from agentstores.spec.thread_run import (
    PersistedState,
    RunQuery,
    Thread,
    ThreadMetadata,
    ThreadRunStore,
)

from ..harness import Harness
from ..markers import requirement
from ..strategies import messages
from .thread_run_support import (
    LIST_ALL,
    assert_exact,
    make_run,
    nested_lists,
    opened,
    rich_json_object,
)

__all__ = ["ThreadTests"]

Store = ThreadRunStore
H = Harness[ThreadRunStore]


def _metadata(**fields: Any) -> ThreadMetadata:
    return ThreadMetadata(**fields)


def _invalid_metadatas() -> list[ThreadMetadata]:
    """One bad field each (TR-3, G-5)."""
    return [
        _metadata(created_at=-1),
        _metadata(updated_at=1.5),
        _metadata(created_at="5"),
        _metadata(updated_at=True),
        _metadata(title=5),
        _metadata(title=b"bytes"),
        _metadata(custom=[]),
        _metadata(custom=None),
        _metadata(custom={"x": float("nan")}),
        _metadata(custom={"x": (1, 2)}),
        _metadata(custom={1: "int key"}),
        _metadata(custom={"deep": nested_lists(64)}),
    ]


class ThreadTests:
    """Threads, metadata, listing and message lists."""

    @requirement("TR-1")
    def test_missing_thread_loads_as_none(self, harness: H) -> None:
        """TR-1: a thread that was never saved loads as None, not as an error."""

        async def scenario(store: Store) -> None:
            assert await store.load_thread("missing") is None

        harness.with_store(scenario)

    @requirement("TR-1", "TR-2", "G-4", "G-6")
    def test_saved_thread_round_trips_exactly(self, harness: H) -> None:
        """TR-1, TR-2, G-4, G-6: metadata comes back exactly as saved (big ints, -0.0, 1 vs 1.0
        vs True, unicode, deep nesting); the store stamps no times of its own here."""
        rich = ThreadMetadata(
            created_at=0, updated_at=2**63 - 1, title="Tïtle ✓ \x00 👩‍💻", custom=rich_json_object()
        )

        async def scenario(store: Store) -> None:
            await store.save_thread(Thread("rich", rich))
            assert_exact(await store.load_thread("rich"), Thread("rich", rich))
            harness.clock.advance(1000)
            await store.save_thread(Thread("bare"))
            assert_exact(await store.load_thread("bare"), Thread("bare", ThreadMetadata()))

        harness.with_store(scenario)

    @requirement("TR-2")
    def test_save_thread_replaces_metadata_and_keeps_messages_and_runs(self, harness: H) -> None:
        """TR-2: saving an existing thread replaces its metadata wholesale (no merge) and
        leaves its messages and runs alone."""
        first = ThreadMetadata(created_at=1, updated_at=2, title="one", custom={"a": 1, "b": 2})
        second = ThreadMetadata(title="two", custom={"b": 3})
        hello = [Message.text("user", "hello")]

        async def scenario(store: Store) -> None:
            await store.save_thread(Thread("t", first))
            await store.save_messages("t", hello)
            await store.create_run(make_run("r", "t"))
            await store.save_thread(Thread("t", second))
            assert_exact(await store.load_thread("t"), Thread("t", second))
            assert_exact(await store.load_messages("t"), hello)
            assert_exact(await store.load_run("r"), make_run("r", "t"))

        harness.with_store(scenario)

    @requirement("TR-3", "TR-10", "G-5")
    def test_invalid_metadata_is_rejected_and_nothing_written(self, harness: H) -> None:
        """TR-3, TR-10, G-5: bad times, titles or custom values raise InvalidArgument from
        save_thread and update_thread_metadata; no thread appears, a stored one is unchanged."""
        good = ThreadMetadata(created_at=1, title="good", custom={"k": "v"})

        async def scenario(store: Store) -> None:
            await store.save_thread(Thread("kept", good))
            for bad in _invalid_metadatas():
                with pytest.raises(InvalidArgument):
                    await store.save_thread(Thread("new", bad))
                with pytest.raises(InvalidArgument):
                    await store.save_thread(Thread("kept", bad))
                with pytest.raises(InvalidArgument):
                    await store.update_thread_metadata("kept", bad)
            with pytest.raises(InvalidArgument):
                await store.save_thread({"id": "new"})  # type: ignore[arg-type]
            assert await store.list_threads(0, LIST_ALL) == ["kept"]
            assert_exact(await store.load_thread("kept"), Thread("kept", good))

        harness.with_store(scenario)

    @requirement("TR-4")
    def test_delete_thread_removes_its_messages_and_runs(self, harness: H) -> None:
        """TR-4: deleting a thread removes it, its messages and all its runs, and nothing of
        any other thread."""
        other_runs = [make_run("o1", "other"), make_run("o2", "other", created_at=2)]

        async def scenario(store: Store) -> None:
            for thread_id in ("t", "other"):
                await store.save_thread(Thread(thread_id))
                await store.save_messages(thread_id, [Message.text("user", thread_id)])
            await store.create_run(make_run("r1", "t"))
            await store.checkpoint("t", [Message.text("user", "cp")], make_run("r2", "t"))
            for run in other_runs:
                await store.create_run(run)
            await store.delete_thread("t")
            assert await store.load_thread("t") is None
            assert await store.load_messages("t") is None
            assert await store.load_run("r1") is None
            assert await store.load_run("r2") is None
            assert await store.latest_run("t") is None
            assert (await store.list_runs(RunQuery(thread_id="t"))).total == 0
            assert await store.list_threads() == ["other"]
            assert_exact(await store.load_messages("other"), [Message.text("user", "other")])
            assert_exact((await store.list_runs(RunQuery())).items, tuple(other_runs))

        harness.with_store(scenario)

    @requirement("TR-4")
    def test_deleting_a_missing_thread_does_nothing(self, harness: H) -> None:
        """TR-4: deleting a thread that does not exist (or no longer does) raises nothing and
        changes nothing, also when its id is a prefix, pattern or case variant of another."""

        async def scenario(store: Store) -> None:
            await store.save_thread(Thread("keep"))
            await store.create_run(make_run("r", "keep"))
            for near_miss in ("never", "kee", "keep ", "Keep", "keep%", "k*"):
                await store.delete_thread(near_miss)
            assert await store.list_threads() == ["keep"]
            assert_exact(await store.load_run("r"), make_run("r", "keep"))
            await store.delete_thread("keep")
            await store.delete_thread("keep")
            assert await store.list_threads() == []

        harness.with_store(scenario)

    @requirement("TR-5", "G-9")
    def test_list_threads_orders_by_effective_time_then_id(self, harness: H) -> None:
        """TR-5, G-9: newest effective time first (updated_at, else created_at, else 0), equal
        times by id ascending in code points ("B" < "a" < "b" < "é")."""
        threads = {
            "updated-5": _metadata(created_at=9, updated_at=5),  # updated_at wins over created_at
            "created-7": _metadata(created_at=7),
            "b": _metadata(updated_at=6),
            "a": _metadata(created_at=6),
            "é": _metadata(updated_at=6),
            "B": _metadata(updated_at=6),
            "no-times": _metadata(),
            "zero": _metadata(updated_at=0),
            "A-no-times": _metadata(),
        }
        expected = ["created-7", "B", "a", "b", "é", "updated-5", "A-no-times", "no-times", "zero"]

        async def scenario(store: Store) -> None:
            for thread_id, metadata in threads.items():
                await store.save_thread(Thread(thread_id, metadata))
            assert await store.list_threads(0, LIST_ALL) == expected
            # Re-saving with a new time moves a thread; listing order never follows insertion.
            await store.update_thread_metadata("zero", _metadata(updated_at=100))
            assert await store.list_threads(0, 2) == ["zero", "created-7"]

        harness.with_store(scenario)

    @requirement("TR-6")
    def test_list_threads_pages_the_order(self, harness: H) -> None:
        """TR-6: offset/limit windows of the order; limit 0 and offsets at or past the end
        give []; the default limit is 50."""
        ids = [f"t{n:02d}" for n in range(55)]  # all with time 0, so ordered by id

        async def scenario(store: Store) -> None:
            for thread_id in ids:
                await store.save_thread(Thread(thread_id))
            assert await store.list_threads() == ids[:50]
            assert await store.list_threads(0, 3) == ids[:3]
            assert await store.list_threads(3, 3) == ids[3:6]
            assert await store.list_threads(53, 10) == ids[53:]
            assert await store.list_threads(54, 1) == ids[54:]
            assert await store.list_threads(55, 1) == []
            assert await store.list_threads(1000, 5) == []
            assert await store.list_threads(0, 0) == []
            assert await store.list_threads(5, 0) == []

        harness.with_store(scenario)

    @requirement("TR-6")
    def test_list_threads_has_no_upper_clamp(self, harness: H) -> None:
        """TR-6: unlike list_runs, list_threads returns as many ids as asked for (201 here)."""
        ids = [f"t{n:03d}" for n in range(201)]

        async def scenario(store: Store) -> None:
            for thread_id in ids:
                await store.save_thread(Thread(thread_id))
            assert await store.list_threads(0, 201) == ids
            assert await store.list_threads(0, 500) == ids

        harness.with_store(scenario)

    @requirement("TR-6", "G-8")
    def test_list_threads_rejects_negative_paging(self, harness: H) -> None:
        """TR-6, G-8: a negative offset or limit is InvalidArgument, never "all"."""

        async def scenario(store: Store) -> None:
            await store.save_thread(Thread("t"))
            for offset, limit in ((-1, 10), (0, -1), (-5, -5)):
                with pytest.raises(InvalidArgument):
                    await store.list_threads(offset, limit)

        harness.with_store(scenario)

    @requirement("TR-7")
    def test_load_messages_tells_missing_from_empty(self, harness: H) -> None:
        """TR-7: None for a missing thread, [] for a thread without messages, else the list."""
        saved = [Message.text("user", "1"), Message.text("assistant", "2")]

        async def scenario(store: Store) -> None:
            assert await store.load_messages("t") is None
            await store.save_thread(Thread("t"))
            assert await store.load_messages("t") == []
            await store.save_messages("t", saved)
            assert_exact(await store.load_messages("t"), saved)

        harness.with_store(scenario)

    @requirement("TR-7", "G-12", "G-13", "G-14", "G-15")
    def test_messages_round_trip_exactly(self, harness: H) -> None:
        """TR-7, G-12 .. G-15: any list of messages (every role, part type, field, created
        time, id and metadata) loads back exactly, in order, and in the JSON form."""
        with opened(harness) as store:
            harness.run(store.save_thread(Thread("t")))

            def check(saved: list[Message]) -> None:
                harness.run(store.save_messages("t", saved))
                loaded = harness.run(store.load_messages("t"))
                assert_exact(loaded, saved, "load_messages")
                assert loaded is not None
                as_json = [message_to_json(m) for m in loaded]
                assert_exact(as_json, [message_to_json(m) for m in saved], "message_to_json")
                assert_exact([message_from_json(j) for j in as_json], saved, "message_from_json")

            harness.for_all(check, saved=st.lists(messages(), max_size=5))
            rich = Message(
                role="tool",
                content=(
                    {"type": "text", "text": "𝄞 e\u0301 \x00"},
                    {**rich_json_object(), "type": "tool_response"},
                ),
                created_at=2**63 - 1,
                id="../m:1",
                metadata={"user_visible": False, "n": -0.0},
            )
            check([rich, Message(role="user")])

    @requirement("TR-8")
    def test_save_messages_replaces_the_whole_list(self, harness: H) -> None:
        """TR-8: a save replaces (not appends to) the list and changes no metadata."""
        metadata = ThreadMetadata(created_at=1, updated_at=2, title="t", custom={"k": 1})
        first = [Message.text("user", str(n)) for n in range(3)]
        second = [Message.text("assistant", "only")]

        async def scenario(store: Store) -> None:
            await store.save_thread(Thread("t", metadata))
            await store.save_messages("t", first)
            harness.clock.advance(50)
            await store.save_messages("t", second)
            assert_exact(await store.load_messages("t"), second)
            await store.save_messages("t", [])
            assert await store.load_messages("t") == []
            assert_exact(await store.load_thread("t"), Thread("t", metadata))

        harness.with_store(scenario)

    @requirement("TR-8", "G-10")
    def test_save_messages_of_missing_thread_raises_not_found(self, harness: H) -> None:
        """TR-8, G-10: NotFound (a KeyError too), and the thread is not created."""

        async def scenario(store: Store) -> None:
            with pytest.raises(NotFound) as raised:
                await store.save_messages("missing", [Message.text("user", "hi")])
            assert isinstance(raised.value, KeyError)
            assert await store.load_thread("missing") is None
            assert await store.load_messages("missing") is None
            assert await store.list_threads() == []

        harness.with_store(scenario)

    @requirement("G-14", "TR-8", "G-10")
    def test_malformed_messages_are_rejected_and_nothing_written(self, harness: H) -> None:
        """G-14, TR-8, G-10: a list holding one malformed message raises InvalidArgument (also
        a ValueError), and the stored list stays as it was."""
        kept = [Message.text("user", "kept")]
        malformed: list[Any] = [
            Message(role=""),
            Message(role=5),  # type: ignore[arg-type]
            Message(role="\ud800"),  # a lone surrogate is no text any engine can store
            Message(role="user", content=({"text": "no type"},)),
            Message(role="user", content=({"type": "text"},)),
            Message(role="user", content=({"type": "text", "text": 5},)),
            Message(role="user", content=("not a part",)),  # type: ignore[arg-type]
            Message(role="user", content=({"type": "x", "v": float("inf")},)),
            Message(role="user", created_at=-1),
            Message(role="user", created_at=1.5),  # type: ignore[arg-type]
            Message(role="user", id=""),
            Message(role="user", id="a\x00b"),
            Message(role="user", metadata={"n": float("nan")}),
            Message(role="user", metadata=[]),  # type: ignore[arg-type]
            {"role": "user", "content": []},
            "user: hi",
        ]

        async def scenario(store: Store) -> None:
            await store.save_thread(Thread("t"))
            await store.save_messages("t", kept)
            for bad in malformed:
                with pytest.raises(InvalidArgument) as raised:
                    await store.save_messages("t", [Message.text("user", "ok"), bad])
                assert isinstance(raised.value, ValueError)
            with pytest.raises(InvalidArgument):
                await store.save_messages("t", "not a list")  # type: ignore[arg-type]
            assert_exact(await store.load_messages("t"), kept)

        harness.with_store(scenario)

    @requirement("TR-9")
    def test_delete_messages_empties_the_list_and_keeps_the_thread(self, harness: H) -> None:
        """TR-9: the list becomes [], the thread and its metadata stay; NotFound for a missing
        thread, which is not created."""
        metadata = ThreadMetadata(updated_at=3, title="t")

        async def scenario(store: Store) -> None:
            await store.save_thread(Thread("t", metadata))
            await store.save_messages("t", [Message.text("user", "x")])
            await store.delete_messages("t")
            assert await store.load_messages("t") == []
            await store.delete_messages("t")
            assert_exact(await store.load_thread("t"), Thread("t", metadata))
            with pytest.raises(NotFound):
                await store.delete_messages("missing")
            assert await store.list_threads() == ["t"]

        harness.with_store(scenario)

    @requirement("TR-10")
    def test_update_thread_metadata_replaces_it_exactly(self, harness: H) -> None:
        """TR-10: the new metadata replaces the old one as given (dropped keys go, None stays
        None, no stamping); messages and runs are untouched."""
        old = ThreadMetadata(created_at=1, updated_at=2, title="old", custom={"a": 1, "b": [2]})
        new = ThreadMetadata(custom={**rich_json_object(), "b": [3]})
        hello = [Message.text("user", "hello")]

        async def scenario(store: Store) -> None:
            await store.save_thread(Thread("t", old))
            await store.save_messages("t", hello)
            await store.create_run(make_run("r", "t"))
            harness.clock.advance(10)
            await store.update_thread_metadata("t", new)
            assert_exact(await store.load_thread("t"), Thread("t", new))
            assert_exact(await store.load_messages("t"), hello)
            assert_exact(await store.load_run("r"), make_run("r", "t"))

        harness.with_store(scenario)

    @requirement("TR-10")
    def test_update_thread_metadata_of_missing_thread_creates_nothing(self, harness: H) -> None:
        """TR-10: NotFound, and no thread (or message list) is created."""

        async def scenario(store: Store) -> None:
            with pytest.raises(NotFound):
                await store.update_thread_metadata("missing", ThreadMetadata(title="x"))
            assert await store.load_thread("missing") is None
            assert await store.load_messages("missing") is None
            assert await store.list_threads() == []

        harness.with_store(scenario)

    @requirement("G-7")
    def test_returned_records_belong_to_the_caller(self, harness: H) -> None:
        """G-7: changing what a store returned (dicts inside threads, messages and runs)
        never changes what is stored."""
        metadata = ThreadMetadata(title="t", custom={"k": [1, {"x": 2}]})
        saved = [Message("user", ({"type": "text", "text": "hi"},), metadata={"m": [1]})]
        run = make_run("r", "t", state=PersistedState(1, {"e": [1]}))

        async def scenario(store: Store) -> None:
            await store.save_thread(Thread("t", metadata))
            await store.save_messages("t", saved)
            await store.create_run(run)
            thread = await store.load_thread("t")
            assert thread is not None
            thread.metadata.custom["k"].append(3)
            thread.metadata.custom["new"] = 1  # type: ignore[index]
            loaded = await store.load_messages("t")
            assert loaded is not None
            loaded[0].content[0]["text"] = "changed"
            loaded[0].metadata["m"].append(2)
            loaded.append(Message.text("user", "extra"))
            for returned in (
                await store.load_run("r"),
                (await store.list_runs(RunQuery())).items[0],
            ):
                assert returned is not None and returned.state is not None
                returned.state.extensions["e"].append(2)
            assert_exact(await store.load_thread("t"), Thread("t", metadata))
            assert_exact(await store.load_messages("t"), saved)
            assert_exact(await store.load_run("r"), run)

        harness.with_store(scenario)

    @requirement("G-7")
    def test_arguments_are_not_shared_with_the_store(self, harness: H) -> None:
        """G-7: changing an object after handing it to a store does not change what was
        stored."""
        custom: dict[str, Any] = {"k": [1]}
        part: dict[str, Any] = {"type": "text", "text": "hi"}
        meta: dict[str, Any] = {"m": 1}

        async def scenario(store: Store) -> None:
            await store.save_thread(Thread("t", ThreadMetadata(custom=custom)))
            message_list = [Message("user", (part,), metadata=meta)]
            await store.save_messages("t", message_list)
            custom["k"].append(2)
            part["text"] = "changed"
            meta["m"] = 2
            message_list.append(Message.text("user", "extra"))
            expected = [Message("user", ({"type": "text", "text": "hi"},), metadata={"m": 1})]
            assert_exact(
                await store.load_thread("t"), Thread("t", ThreadMetadata(custom={"k": [1]}))
            )
            assert_exact(await store.load_messages("t"), expected)

        harness.with_store(scenario)
