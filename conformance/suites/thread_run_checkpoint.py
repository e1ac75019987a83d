"""Requirement tests of checkpoints (TR-18 .. TR-21, G-6, G-17).

A checkpoint upserts a thread, replaces its messages and upserts one run, all or nothing. Its
behaviour under concurrent readers is in ``thread_run_concurrency``.
"""

from __future__ import annotations

from typing import Any

import pytest

from agentstores.spec.errors import Conflict, InvalidArgument
from agentstores.spec.messages import Message
from agentstores.spec.thread_run import (
    RunQuery,
    RunStatus,
    Thread,
    ThreadMetadata,
    ThreadRunStore,
)

from ..harness import Harness
from ..markers import requirement
from .thread_run_support import LIST_ALL, assert_exact, make_run, rich_json_object

__all__ = ["CheckpointTests"]

Store = ThreadRunStore
H = Harness[ThreadRunStore]

RUNNING, WAITING, DONE = RunStatus.RUNNING, RunStatus.WAITING, RunStatus.DONE

#: TR-20, written out rather than taken from the spec module, so that the suite checks it.
ALLOWED_TRANSITIONS = {
    (RUNNING, RUNNING),
    (RUNNING, WAITING),
    (RUNNING, DONE),
    (WAITING, WAITING),
    (WAITING, RUNNING),
    (WAITING, DONE),
    (DONE, DONE),
}


def _said(text: str) -> list[Message]:
    return [Message.text("user", text)]


class CheckpointTests:
    """Checkpoints: stamping, upserts, status transitions, thread ownership, atomicity."""

    @requirement("TR-18", "G-6")
    def test_checkpoint_creates_the_thread_stamped_by_the_clock(self, harness: H) -> None:
        """TR-18, G-6: a checkpoint of a new thread creates it with created_at = updated_at =
        the store's clock, no title and no custom fields, with the messages and the run."""
        run = make_run("r", "t", status=WAITING, steps=3)
        said = [*_said("hello"), Message.text("assistant", "hi")]

        async def scenario(store: Store) -> None:
            harness.clock.set(1_234_567)
            await store.checkpoint("t", said, run)
            expected = Thread("t", ThreadMetadata(created_at=1_234_567, updated_at=1_234_567))
            assert_exact(await store.load_thread("t"), expected)
            assert_exact(await store.load_messages("t"), said)
            assert_exact(await store.load_run("r"), run)
            assert await store.list_threads() == ["t"]

        harness.with_store(scenario)

    @requirement("TR-18", "G-6")
    def test_checkpoint_of_an_existing_thread_moves_only_its_times(self, harness: H) -> None:
        """TR-18, G-6: an existing thread keeps its title, custom fields and created_at; its
        updated_at becomes now (even when that is earlier); a missing created_at becomes now."""
        custom = rich_json_object()
        before = {
            "full": ThreadMetadata(created_at=5, updated_at=6, title="kept", custom=custom),
            "no-created": ThreadMetadata(updated_at=3, title=""),
            "future": ThreadMetadata(created_at=10**13, updated_at=10**13),
        }
        now = 2_000_000
        after = {
            "full": ThreadMetadata(created_at=5, updated_at=now, title="kept", custom=custom),
            "no-created": ThreadMetadata(created_at=now, updated_at=now, title=""),
            "future": ThreadMetadata(created_at=10**13, updated_at=now),
        }

        async def scenario(store: Store) -> None:
            for thread_id, metadata in before.items():
                await store.save_thread(Thread(thread_id, metadata))
            harness.clock.set(now)
            for thread_id in before:
                await store.checkpoint(thread_id, _said(thread_id), make_run(thread_id, thread_id))
            for thread_id, metadata in after.items():
                assert_exact(await store.load_thread(thread_id), Thread(thread_id, metadata))

        harness.with_store(scenario)

    @requirement("TR-18")
    def test_checkpoint_replaces_messages_and_upserts_the_run(self, harness: H) -> None:
        """TR-18: a later checkpoint replaces the whole message list and overwrites its run;
        runs of other ids on the thread stay."""
        first = make_run("r", "t", steps=1)
        second = make_run("r", "t", status=WAITING, steps=2, updated_at=2, termination_code="x")
        other = make_run("r2", "t", created_at=5)

        async def scenario(store: Store) -> None:
            await store.checkpoint("t", [*_said("a"), *_said("b")], first)
            await store.checkpoint("t", _said("c"), second)
            assert_exact(await store.load_messages("t"), _said("c"))
            assert_exact(await store.load_run("r"), second)
            await store.checkpoint("t", [], other)
            assert await store.load_messages("t") == []
            assert_exact((await store.list_runs(RunQuery(thread_id="t"))).items, (second, other))

        harness.with_store(scenario)

    @requirement("TR-20", "TR-19", "G-17")
    def test_status_transitions_follow_the_table(self, harness: H) -> None:
        """TR-20, TR-19, G-17: running -> waiting|done, waiting -> running|done, done is terminal,
        the same status is always fine; a forbidden transition raises Conflict(expected=new,
        actual=stored) and writes nothing of the checkpoint (thread, messages, run)."""

        async def scenario(store: Store) -> None:
            for old in RunStatus:
                for new in RunStatus:
                    thread_id = f"{old}-{new}"
                    stored = make_run(thread_id, thread_id, status=old, steps=1)
                    await store.checkpoint(thread_id, _said("old"), stored)
                    thread = await store.load_thread(thread_id)
                    harness.clock.advance(1)
                    attempt = make_run(thread_id, thread_id, status=new, steps=2, updated_at=2)
                    if (old, new) in ALLOWED_TRANSITIONS:
                        await store.checkpoint(thread_id, _said("new"), attempt)
                        assert_exact(await store.load_run(thread_id), attempt)
                        continue
                    with pytest.raises(Conflict) as raised:
                        await store.checkpoint(thread_id, _said("new"), attempt)
                    assert (raised.value.expected, raised.value.actual) == (new, old)
                    assert_exact(await store.load_run(thread_id), stored)
                    assert_exact(await store.load_messages(thread_id), _said("old"))
                    assert_exact(await store.load_thread(thread_id), thread)

        harness.with_store(scenario)

    @requirement("TR-20", "TR-12")
    def test_transitions_apply_to_runs_made_by_create_run(self, harness: H) -> None:
        """TR-20, TR-12: create_run takes any status, and a checkpoint overwriting such a run
        obeys the transitions all the same."""

        async def scenario(store: Store) -> None:
            await store.create_run(make_run("r", "t", status=DONE))
            with pytest.raises(Conflict):
                await store.checkpoint("t", _said("x"), make_run("r", "t", status=WAITING))
            assert await store.load_thread("t") is None
            assert_exact(await store.load_run("r"), make_run("r", "t", status=DONE))
            await store.checkpoint("t", _said("x"), make_run("r", "t", status=DONE, steps=9))
            assert_exact(await store.load_run("r"), make_run("r", "t", status=DONE, steps=9))

        harness.with_store(scenario)

    @requirement("TR-21")
    def test_the_run_must_belong_to_the_checkpointed_thread(self, harness: H) -> None:
        """TR-21: run.thread_id other than the thread_id is InvalidArgument; a stored run of
        that id on another thread is Conflict; either way nothing is written."""

        async def scenario(store: Store) -> None:
            with pytest.raises(InvalidArgument):
                await store.checkpoint("t", _said("x"), make_run("r", "u"))
            assert await store.list_threads(0, LIST_ALL) == []
            assert (await store.list_runs(RunQuery())).total == 0

            await store.checkpoint("u", _said("u"), make_run("r", "u"))
            await store.save_thread(Thread("t", ThreadMetadata(title="t")))
            await store.save_messages("t", _said("t"))
            harness.clock.advance(5)
            for thread_id in ("t", "new"):
                with pytest.raises(Conflict):
                    await store.checkpoint(thread_id, _said("x"), make_run("r", thread_id))
            assert await store.load_thread("new") is None
            assert_exact(await store.load_thread("t"), Thread("t", ThreadMetadata(title="t")))
            assert_exact(await store.load_messages("t"), _said("t"))
            assert_exact(await store.load_run("r"), make_run("r", "u"))
            assert_exact(await store.load_messages("u"), _said("u"))

        harness.with_store(scenario)

    @requirement("TR-19", "G-17", "G-14")
    def test_a_rejected_checkpoint_writes_nothing(self, harness: H) -> None:
        """TR-19, G-17, G-14: a checkpoint whose messages, run or thread id are invalid raises
        InvalidArgument and changes neither the thread, nor its messages, nor any run."""
        bad_message: Any = Message(role="user", content=({"type": "text", "text": 1},))
        stored = make_run("r", "t", steps=1)

        async def scenario(store: Store) -> None:
            await store.checkpoint("t", _said("kept"), stored)
            thread = await store.load_thread("t")
            harness.clock.advance(10)
            attempts: list[tuple[Any, Any, Any]] = [
                ("t", [*_said("ok"), bad_message], make_run("r", "t", steps=2)),
                ("t", [*_said("ok"), bad_message], make_run("r-new", "t")),
                ("new", [bad_message], make_run("r-new", "new")),
                ("t", _said("ok"), make_run("r", "t", steps=-2)),
                ("", _said("ok"), make_run("r", "")),
                ("t", "not a list", make_run("r", "t")),
            ]
            for thread_id, said, run in attempts:
                with pytest.raises(InvalidArgument):
                    await store.checkpoint(thread_id, said, run)
            assert_exact(await store.load_thread("t"), thread)
            assert_exact(await store.load_messages("t"), _said("kept"))
            assert_exact((await store.list_runs(RunQuery())).items, (stored,))
            assert await store.list_threads(0, LIST_ALL) == ["t"]

        harness.with_store(scenario)
