"""The thread/run state machine: random sequences of every operation, run on a backend and on
the executable model side by side.

Each rule performs one operation on both and requires the same result, exactly, or an error of
the same G-10 kind (for a forbidden status transition, also the same ``expected``/``actual``).
Ids come from tiny alphabets, so operations keep meeting the same threads and runs; ids that a
rule created go into bundles, and deleting a thread consumes its id. After every call the
machine scribbles over what it passed and what it got back, so a store that keeps references
instead of copies (G-7) diverges from the model on a later read.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

from hypothesis import note
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from agentstores.spec.errors import Conflict, StoreError
from agentstores.spec.messages import Message
from agentstores.spec.thread_run import (
    LIST_RUNS_MAX_LIMIT,
    RunPage,
    RunQuery,
    RunRecord,
    RunStatus,
    Thread,
    ThreadMetadata,
    ThreadRunStore,
)

from ..clock import ManualClock
from ..harness import Harness
from ..markers import requirement
from ..models.thread_run import ThreadRunModel
from ..strategies import messages, plain_ids
from .thread_run_support import (
    LIST_ALL,
    assert_exact,
    error_kind,
    model_snapshot,
    run_queries,
    run_records,
    run_statuses,
    scribble,
    store_snapshot,
    thread_metadatas,
)

__all__ = ["MachineTests", "ThreadRunMachine", "machine_ids"]


def machine_ids() -> st.SearchStrategy[str]:
    """Six ids ("a", "b", "c", "A", "a/b", "é"): operations keep meeting the same threads and
    runs, and the ids' code-point order differs from their alphabetical one."""
    return st.one_of(plain_ids(max_size=1), st.sampled_from(["A", "a/b", "é"]))


def message_lists() -> st.SearchStrategy[list[Message]]:
    """Short message lists (G-14), empty ones included."""
    return st.lists(messages(), max_size=2)


class ThreadRunMachine(RuleBasedStateMachine):
    """A fresh store (new context) and a fresh model, driven by the same random operations."""

    threads = Bundle("threads")
    runs = Bundle("runs")
    any_thread = st.one_of(threads, machine_ids())
    any_run = st.one_of(runs, machine_ids())

    def __init__(self, harness: Harness[ThreadRunStore]) -> None:
        super().__init__()
        self.harness = harness
        self.clock = ManualClock()
        self.model = ThreadRunModel(self.clock)
        self.context = harness.new_context(clock=self.clock)
        self._manager = harness.open(self.context)
        self.store: ThreadRunStore = harness.run(self._manager.__aenter__())

    @initialize(target=threads, thread_id=machine_ids(), metadata=thread_metadatas())
    def start_with_a_thread(self, thread_id: str, metadata: ThreadMetadata) -> str:
        """Most rules need a thread to be interesting; begin with one."""
        self.call("save_thread", Thread(thread_id, metadata))
        return thread_id

    @initialize(target=runs, run=run_records(run_ids=machine_ids(), thread_ids=machine_ids()))
    def start_with_a_run(self, run: RunRecord) -> str:
        """And with a run, checkpointed, so that its thread exists too."""
        self.call("checkpoint", run.thread_id, [], run)
        return run.run_id

    def teardown(self) -> None:
        self.harness.run(self._manager.__aexit__(None, None, None))

    def call(self, method: str, *args: Any) -> Any:
        """Run ``method(*args)`` on the model and on the store; require the same outcome."""
        expected: Any = None
        expected_error: StoreError | None = None
        try:
            expected = getattr(self.model, method)(*args)
        except StoreError as error:
            expected_error = error
        given = copy.deepcopy(args)  # the store's own arguments, scribbled on afterwards
        try:
            actual = self.harness.run(getattr(self.store, method)(*given))
        except Exception as error:
            self._check_error(method, error, expected, expected_error)
            scribble(given)
            return None
        if expected_error is not None:
            raise AssertionError(
                f"{method} returned {actual!r}, but the spec raises "
                f"{type(expected_error).__name__} ({expected_error})"
            )
        assert_exact(actual, expected, method)
        note(f"{method} -> {actual!r}")
        scribble(given)
        scribble(actual)
        return actual

    def read_back(self, thread_id: str) -> None:
        """After a write, read the thread and its messages back (TR-1, TR-7): a write that
        stored the wrong thing fails right here, not at some later read."""
        self.call("load_thread", thread_id)
        self.call("load_messages", thread_id)

    def _check_error(
        self, method: str, error: Exception, expected: Any, expected_error: StoreError | None
    ) -> None:
        if expected_error is None:
            raise AssertionError(
                f"{method} raised {error!r}, but the spec returns {expected!r}"
            ) from error
        if error_kind(error) is not error_kind(expected_error):
            raise AssertionError(
                f"{method} raised {error!r}, but the spec raises "
                f"{type(expected_error).__name__} ({expected_error}) (G-10)"
            ) from error
        if isinstance(expected_error, Conflict) and isinstance(expected_error.expected, RunStatus):
            assert isinstance(error, Conflict)
            got = (error.expected, error.actual)
            want = (expected_error.expected, expected_error.actual)
            assert got == want, (
                f"{method}: Conflict (expected, actual) is {got}, not {want} (TR-20)"
            )
        note(f"{method} -> {type(error).__name__}: {error}")

    # --- threads and messages ------------------------------------------------------------

    @rule(target=threads, thread_id=machine_ids(), metadata=thread_metadatas())
    def save_thread(self, thread_id: str, metadata: ThreadMetadata) -> str:
        self.call("save_thread", Thread(thread_id, metadata))
        self.read_back(thread_id)
        return thread_id

    @rule(thread_id=any_thread)
    def load_thread(self, thread_id: str) -> None:
        self.call("load_thread", thread_id)

    @rule(thread_id=st.one_of(consumes(threads), machine_ids()))
    def delete_thread(self, thread_id: str) -> None:
        self.call("delete_thread", thread_id)
        self.read_back(thread_id)

    @rule(
        offset=st.integers(min_value=0, max_value=3),
        limit=st.one_of(st.integers(min_value=0, max_value=3), st.just(LIST_ALL)),
    )
    def list_threads(self, offset: int, limit: int) -> None:
        self.call("list_threads", offset, limit)

    @rule(thread_id=any_thread, saved=message_lists())
    def save_messages(self, thread_id: str, saved: list[Message]) -> None:
        self.call("save_messages", thread_id, saved)
        self.read_back(thread_id)

    @rule(thread_id=any_thread)
    def load_messages(self, thread_id: str) -> None:
        self.call("load_messages", thread_id)

    @rule(thread_id=any_thread)
    def delete_messages(self, thread_id: str) -> None:
        self.call("delete_messages", thread_id)
        self.read_back(thread_id)

    @rule(thread_id=any_thread, metadata=thread_metadatas())
    def update_thread_metadata(self, thread_id: str, metadata: ThreadMetadata) -> None:
        self.call("update_thread_metadata", thread_id, metadata)
        self.read_back(thread_id)

    # --- runs and checkpoints ------------------------------------------------------------

    @rule(target=runs, run=run_records(run_ids=any_run, thread_ids=any_thread))
    def create_run(self, run: RunRecord) -> str:
        self.call("create_run", run)
        return run.run_id

    @rule(run_id=any_run)
    def load_run(self, run_id: str) -> None:
        self.call("load_run", run_id)

    @rule(thread_id=any_thread)
    def latest_run(self, thread_id: str) -> None:
        self.call("latest_run", thread_id)

    @rule(query=run_queries(thread_ids=any_thread))
    def list_runs(self, query: RunQuery) -> None:
        self.call("list_runs", query)

    @rule(offset=st.sampled_from([-1, 0]), limit=st.sampled_from([-1, 0]))
    def negative_paging(self, offset: int, limit: int) -> None:
        """G-8: InvalidArgument for any negative value (and nothing odd for 0, 0)."""
        self.call("list_threads", offset, limit)
        self.call("list_runs", RunQuery(offset=offset, limit=limit))

    @rule(
        target=runs,
        thread_id=any_thread,
        saved=message_lists(),
        run=run_records(run_ids=any_run),
        mismatch=st.sampled_from([False, False, False, True]),
    )
    def checkpoint(
        self, thread_id: str, saved: list[Message], run: RunRecord, mismatch: bool
    ) -> str:
        """Any run on any thread; with ``mismatch`` the run names another thread (TR-21)."""
        run_thread = thread_id + "~" if mismatch else thread_id
        self.call("checkpoint", thread_id, saved, replace(run, thread_id=run_thread))
        self.read_back(thread_id)
        return run.run_id

    @rule(
        run_id=runs,
        saved=message_lists(),
        status=run_statuses(),
        elsewhere=st.one_of(st.none(), any_thread),
    )
    def checkpoint_stored_run(
        self, run_id: str, saved: list[Message], status: RunStatus, elsewhere: str | None
    ) -> None:
        """A stored run again, in a random status, on its own thread (TR-20 transitions) or,
        given ``elsewhere``, on that thread (TR-21: Conflict unless it is its own)."""
        stored = self.model.load_run(run_id)
        if stored is None:
            note(f"run {run_id!r} is gone; nothing to checkpoint")
            return
        thread_id = stored.thread_id if elsewhere is None else elsewhere
        run = replace(stored, thread_id=thread_id, status=status, steps=stored.steps // 2 + 1)
        self.call("checkpoint", thread_id, saved, run)
        self.read_back(thread_id)

    @rule(ms=st.integers(min_value=0, max_value=3))
    def advance_clock(self, ms: int) -> None:
        self.clock.advance(ms)

    @rule()
    def compare_everything(self) -> None:
        """Every thread, message list, run and latest run, read back through the API."""
        actual = self.harness.run(store_snapshot(self.store))
        assert_exact(actual, model_snapshot(self.model), "snapshot")

    @invariant()
    def listings_agree(self) -> None:
        """TR-5, TR-15, TR-16: the full thread and run listings equal the model's, and the page
        arithmetic holds."""
        query = RunQuery(limit=LIST_RUNS_MAX_LIMIT)

        async def read() -> tuple[list[str], RunPage]:
            return await self.store.list_threads(0, LIST_ALL), await self.store.list_runs(query)

        threads, page = self.harness.run(read())
        assert_exact(threads, self.model.list_threads(0, LIST_ALL), "list_threads(all)")
        assert page.has_more == (len(page.items) < page.total), page
        assert_exact(page, self.model.list_runs(query), "list_runs(all)")


class MachineTests:
    """The state machine as a test."""

    @requirement(
        "TR-1",
        "TR-2",
        "TR-4",
        "TR-5",
        "TR-6",
        "TR-7",
        "TR-8",
        "TR-9",
        "TR-10",
        "TR-11",
        "TR-12",
        "TR-13",
        "TR-14",
        "TR-15",
        "TR-16",
        "TR-18",
        "TR-20",
        "TR-21",
        "G-4",
        "G-6",
        "G-7",
        "G-8",
        "G-9",
        "G-10",
        "G-14",
    )
    def test_random_operations_agree_with_the_model(self, harness: Harness[ThreadRunStore]) -> None:
        """TR-1, TR-2, TR-4 .. TR-16, TR-18, TR-20, TR-21, G-4, G-6 .. G-10, G-14: random
        sequences of every operation give exactly the model's results and errors, and the full
        listings agree after every step."""

        def machine() -> ThreadRunMachine:
            return ThreadRunMachine(harness)

        # hypothesis documents factories here, though its annotation asks for a class
        run_state_machine_as_test(machine, settings=harness.settings)  # type: ignore[arg-type]
