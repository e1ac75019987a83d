"""Isolation and bad input (G-1 .. G-3, G-5, G-10, G-16, G-19).

Adversarial ids must each get storage of their own; ids and values outside their domains must
be refused before anything is written; stores on two namespaces of one directory or database
must not see each other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import strategies as st

from agentstores.spec.errors import (
    AlreadyExists,
    Conflict,
    InvalidArgument,
    NotFound,
    StoreError,
)
from agentstores.spec.messages import Message
from agentstores.spec.thread_run import (
    PersistedState,
    RunQuery,
    RunRecord,
    RunStatus,
    Thread,
    ThreadMetadata,
    ThreadRunStore,
)

from ..harness import Harness
from ..markers import requirement
from ..strategies import ADVERSARIAL_IDS, adversarial_ids, invalid_ids, invalid_json_values
from .thread_run_support import (
    LIST_ALL,
    assert_exact,
    make_run,
    opened,
    store_snapshot,
)

__all__ = ["IsolationTests"]

Store = ThreadRunStore
H = Harness[ThreadRunStore]


def _owned_by(thread_id: str) -> tuple[Thread, list[Message], RunRecord]:
    """A thread, its messages and a run, each carrying ``thread_id`` so that a mix-up shows."""
    thread = Thread(thread_id, ThreadMetadata(title=thread_id, custom={"id": thread_id}))
    said = [Message.text("user", thread_id, id=thread_id)]
    run = make_run(thread_id, thread_id, agent_id=thread_id, parent_run_id=thread_id)
    return thread, said, run


async def _write_owned(store: Store, ids: list[str]) -> None:
    for thread_id in ids:
        thread, said, run = _owned_by(thread_id)
        await store.save_thread(thread)
        await store.save_messages(thread_id, said)
        await store.create_run(run)


async def _check_owned(store: Store, ids: list[str]) -> None:
    for thread_id in ids:
        thread, said, run = _owned_by(thread_id)
        where = f"id {thread_id!r}"
        assert_exact(await store.load_thread(thread_id), thread, f"load_thread, {where}")
        assert_exact(await store.load_messages(thread_id), said, f"load_messages, {where}")
        assert_exact(await store.load_run(thread_id), run, f"load_run, {where}")
        assert_exact(await store.latest_run(thread_id), run, f"latest_run, {where}")
        page = await store.list_runs(RunQuery(thread_id=thread_id))
        assert_exact(page.items, (run,), f"list_runs, {where}")


class IsolationTests:
    """Adversarial ids, invalid ids and values, namespaces, error types, close."""

    @requirement("G-1", "G-2")
    def test_adversarial_ids_get_storage_of_their_own(self, harness: H) -> None:
        """G-1, G-2: ids with separators, dots, slashes, absolute paths, case and Unicode
        variants, reserved file names and the longest allowed length are stored faithfully:
        each id's thread, messages and run come back as its own, and deleting one deletes no
        other."""
        ids = list(ADVERSARIAL_IDS)

        async def scenario(store: Store) -> None:
            await _write_owned(store, ids)
            await _check_owned(store, ids)
            assert await store.list_threads(0, LIST_ALL) == sorted(ids)  # all at time 0
            for thread_id in ids[::2]:
                await store.delete_thread(thread_id)
            await _check_owned(store, ids[1::2])
            assert await store.list_threads(0, LIST_ALL) == sorted(ids[1::2])
            assert (await store.list_runs(RunQuery(limit=200))).total == len(ids[1::2])

        harness.with_store(scenario)

    @requirement("G-2")
    def test_random_adversarial_ids_never_share_storage(self, harness: H) -> None:
        """G-2: for random sets of separator-laden and non-ASCII ids, in a fresh store each
        time, every id keeps its own data, also after another one is deleted."""

        def check(ids: list[str]) -> None:
            async def scenario(store: Store) -> None:
                await _write_owned(store, ids)
                await _check_owned(store, ids)
                await store.delete_thread(ids[0])
                await _check_owned(store, ids[1:])
                assert sorted(await store.list_threads(0, LIST_ALL)) == sorted(ids[1:])

            harness.with_store(scenario, harness.new_context())

        harness.for_all(check, ids=st.lists(adversarial_ids(), min_size=2, max_size=4, unique=True))

    @requirement("G-3")
    def test_invalid_ids_are_rejected_and_nothing_written(self, harness: H) -> None:
        """G-3: an id outside the domain (empty, too long, NUL, lone surrogate, not a str)
        raises InvalidArgument from every operation that takes one, wherever it appears, and
        the store is unchanged."""
        with opened(harness) as store:
            harness.run(store.checkpoint("t", [Message.text("user", "x")], make_run("r", "t")))
            before = harness.run(store_snapshot(store))

            def check(bad: Any) -> None:
                for attempt in _id_attempts(store, bad):
                    with pytest.raises(InvalidArgument):
                        harness.run(attempt())
                assert_exact(harness.run(store_snapshot(store)), before, "store after bad ids")

            harness.for_all(check, bad=invalid_ids())

    @requirement("G-5", "G-14", "TR-3", "TR-11")
    def test_invalid_values_are_rejected_and_nothing_written(self, harness: H) -> None:
        """G-5, G-14, TR-3, TR-11: NaN, infinities, tuples, sets, bytes, non-str keys, lone
        surrogates and too-wide ints, alone or nested, in custom metadata, run state or
        messages raise InvalidArgument; nothing of the operation is written."""
        with opened(harness) as store:
            harness.run(store.checkpoint("t", [Message.text("user", "x")], make_run("r", "t")))
            before = harness.run(store_snapshot(store))

            def check(bad: Any) -> None:
                for attempt in _value_attempts(store, bad):
                    with pytest.raises(InvalidArgument):
                        harness.run(attempt())
                assert_exact(harness.run(store_snapshot(store)), before, "store after bad values")

            harness.for_all(check, bad=invalid_json_values())

    @requirement("G-19")
    def test_namespaces_on_one_root_are_isolated(self, harness: H) -> None:
        """G-19: two stores on different namespaces of one directory or database file share
        nothing: the same ids hold different data, run ids are not taken across them, and a
        delete in one leaves the other alone."""
        other = harness.new_context(root=harness.context.root)

        async def scenario(mine: Store) -> None:
            async with harness.open(other) as theirs:
                for store, owner in ((mine, "mine"), (theirs, "theirs")):
                    await store.checkpoint(
                        "t", [Message.text("user", owner)], make_run("r", "t", agent_id=owner)
                    )
                    await store.save_thread(Thread(f"only-{owner}"))
                for store, owner in ((mine, "mine"), (theirs, "theirs")):
                    assert await store.list_threads(0, LIST_ALL) == ["t", f"only-{owner}"]
                    assert_exact(await store.load_messages("t"), [Message.text("user", owner)])
                    assert_exact(await store.load_run("r"), make_run("r", "t", agent_id=owner))
                    assert (await store.list_runs(RunQuery())).total == 1
                await mine.create_run(make_run("fresh", "t"))
                await theirs.create_run(make_run("fresh", "t", agent_id="theirs"))
                await mine.delete_thread("t")
                assert await mine.load_thread("t") is None
                assert await theirs.load_thread("t") is not None
                assert_exact(await theirs.load_run("r"), make_run("r", "t", agent_id="theirs"))
                assert (await theirs.list_runs(RunQuery(thread_id="t"))).total == 2

        harness.with_store(scenario)

    @requirement("G-10")
    def test_errors_are_store_errors_of_the_documented_kinds(self, harness: H) -> None:
        """G-10: failures raise StoreError subclasses: NotFound is also a KeyError,
        InvalidArgument also a ValueError, Conflict carries expected and actual."""

        async def scenario(store: Store) -> None:
            await store.checkpoint("t", [], make_run("r", "t", status=RunStatus.DONE))
            with pytest.raises(NotFound) as not_found:
                await store.delete_messages("missing")
            with pytest.raises(InvalidArgument) as invalid:
                await store.list_threads(-1, 1)
            with pytest.raises(AlreadyExists) as exists:
                await store.create_run(make_run("r", "t"))
            with pytest.raises(Conflict) as conflict:
                await store.checkpoint("t", [], make_run("r", "t"))
            assert isinstance(not_found.value, KeyError)
            assert isinstance(invalid.value, ValueError)
            for raised in (not_found, invalid, exists, conflict):
                assert isinstance(raised.value, StoreError)
            assert (conflict.value.expected, conflict.value.actual) == (
                RunStatus.RUNNING,
                RunStatus.DONE,
            )

        harness.with_store(scenario)

    @requirement("G-16")
    def test_close_may_be_called_twice(self, harness: H) -> None:
        """G-16: close() releases the store and a second (and third) call raises nothing."""

        async def scenario(store: Store) -> None:
            await store.save_thread(Thread("t"))
            await store.close()
            await store.close()

        harness.with_store(scenario)  # the opener closes it once more


Attempt = Callable[[], Awaitable[Any]]


def _id_attempts(store: Store, bad: Any) -> list[Attempt]:
    """Every place an id goes, filled with ``bad``; None only where None is not allowed."""
    said = [Message.text("user", "x")]
    attempts: list[Attempt] = [
        lambda: store.load_thread(bad),
        lambda: store.save_thread(Thread(bad)),
        lambda: store.delete_thread(bad),
        lambda: store.load_messages(bad),
        lambda: store.save_messages(bad, said),
        lambda: store.delete_messages(bad),
        lambda: store.update_thread_metadata(bad, ThreadMetadata()),
        lambda: store.create_run(make_run(bad, "t")),
        lambda: store.create_run(make_run("r2", bad)),
        lambda: store.create_run(make_run("r2", "t", agent_id=bad)),
        lambda: store.load_run(bad),
        lambda: store.latest_run(bad),
        lambda: store.checkpoint(bad, said, make_run("r2", bad)),
        lambda: store.checkpoint("t", said, make_run(bad, "t")),
        lambda: store.checkpoint("new", said, make_run("r2", "new", agent_id=bad)),
    ]
    if bad is not None:  # these ids are optional
        attempts += [
            lambda: store.create_run(make_run("r2", "t", parent_run_id=bad)),
            lambda: store.list_runs(RunQuery(thread_id=bad)),
            lambda: store.save_messages("t", [Message("user", id=bad)]),
            lambda: store.checkpoint("t", [Message("user", id=bad)], make_run("r", "t")),
        ]
    return attempts


def _value_attempts(store: Store, bad: Any) -> list[Attempt]:
    """Every place a JSON value goes, holding ``bad``."""
    custom = ThreadMetadata(custom={"k": bad})
    state = PersistedState(revision=1, extensions={"k": bad})
    in_metadata = [Message("user", metadata={"k": bad})]
    in_part = [Message("user", ({"type": "tool_request", "args": bad},))]
    return [
        lambda: store.save_thread(Thread("t", custom)),
        lambda: store.save_thread(Thread("new", custom)),
        lambda: store.update_thread_metadata("t", custom),
        lambda: store.create_run(make_run("r2", "t", state=state)),
        lambda: store.checkpoint("t", [], make_run("r", "t", state=state)),
        lambda: store.checkpoint("new", [], make_run("r2", "new", state=state)),
        lambda: store.save_messages("t", in_metadata),
        lambda: store.save_messages("t", in_part),
        lambda: store.checkpoint("t", in_part, make_run("r", "t", steps=5)),
        lambda: store.checkpoint("new", in_metadata, make_run("r2", "new")),
    ]
