"""Requirement tests of run records (TR-11 .. TR-17, G-8, G-9).

Readable examples, one behaviour each; the state machine in ``thread_run_machine`` covers the
same rules with random operation sequences.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import strategies as st

from agentstores.spec.errors import AlreadyExists, InvalidArgument
from agentstores.spec.thread_run import (
    PersistedState,
    RunQuery,
    RunRecord,
    RunStatus,
    ThreadRunStore,
)
from agentstores.spec.values import MAX_ID_LENGTH, MAX_U64

from ..harness import Harness
from ..markers import requirement
from .thread_run_support import (
    LIST_ALL,
    assert_exact,
    make_run,
    opened,
    rich_json_object,
    run_records,
)

__all__ = ["RunTests", "invalid_runs"]

Store = ThreadRunStore
H = Harness[ThreadRunStore]


def invalid_runs(thread_id: str = "t") -> list[Any]:
    """Run records with one field outside its domain each (TR-11, G-3, G-5), and non-records."""

    def broken(**fields: Any) -> RunRecord:
        return replace(make_run("bad", thread_id), **fields)

    return [
        broken(run_id=""),
        broken(run_id="x" * (MAX_ID_LENGTH + 1)),
        broken(run_id=None),
        broken(agent_id="a\x00b"),
        broken(agent_id="\ud800"),
        broken(parent_run_id=""),
        broken(status="paused"),
        broken(status=None),
        broken(termination_code=5),
        broken(created_at=-1),
        broken(created_at=None),
        broken(updated_at=1.5),
        broken(steps=-1),
        broken(steps="1"),
        broken(input_tokens=MAX_U64 + 1),
        broken(output_tokens=True),
        broken(state=PersistedState(revision=-1)),
        broken(state=PersistedState(revision=MAX_U64 + 1)),
        broken(state=PersistedState(extensions={"x": float("nan")})),
        broken(state=PersistedState(extensions={"x": {1, 2}})),
        broken(state=PersistedState(extensions=[])),  # type: ignore[arg-type]
        broken(state={"revision": 1, "extensions": {}}),
        {"run_id": "bad", "thread_id": thread_id},
    ]


def rich_run(run_id: str = "run/1:é", thread_id: str = "t") -> RunRecord:
    """A run with every field set, at the edges of its domain (TR-11)."""
    return RunRecord(
        run_id=run_id,
        thread_id=thread_id,
        agent_id="agent ✓",
        parent_run_id="../parent",
        status=RunStatus.WAITING,
        termination_code="",  # empty, which is not None
        created_at=0,
        updated_at=2**63 - 1,
        steps=MAX_U64,
        input_tokens=2**63,
        output_tokens=0,
        state=PersistedState(revision=MAX_U64, extensions=rich_json_object()),
    )


class RunTests:
    """Run records: validation, creation, lookup, latest run, listing and paging."""

    @requirement("TR-13")
    def test_missing_run_loads_as_none(self, harness: H) -> None:
        """TR-13: a run id never stored loads as None."""

        async def scenario(store: Store) -> None:
            assert await store.load_run("missing") is None
            await store.create_run(make_run("r"))
            assert await store.load_run("R") is None
            assert await store.load_run("r ") is None

        harness.with_store(scenario)

    @requirement("TR-11", "TR-13", "TR-14", "TR-15", "G-4")
    def test_run_round_trips_exactly(self, harness: H) -> None:
        """TR-11, TR-13, TR-14, TR-15, G-4: every field comes back exactly through load_run,
        latest_run and list_runs: u64 extremes, "" next to None, an empty state next to no
        state, JSON extensions with big ints and -0.0."""
        runs = [
            rich_run(),
            make_run("minimal", created_at=1, updated_at=1),
            make_run("empty-state", created_at=2, updated_at=0, state=PersistedState()),
        ]

        async def scenario(store: Store) -> None:
            for run in runs:
                await store.create_run(run)
            for run in runs:
                assert_exact(await store.load_run(run.run_id), run, f"load_run({run.run_id!r})")
            assert_exact(await store.latest_run("t"), runs[0], "latest_run")
            assert_exact((await store.list_runs(RunQuery())).items, tuple(runs), "list_runs")

        harness.with_store(scenario)

    @requirement("TR-11", "TR-18")
    def test_any_valid_run_round_trips(self, harness: H) -> None:
        """TR-11, TR-18: random valid runs round-trip exactly, created by create_run and by a
        checkpoint alike."""
        unique = itertools.count()
        with opened(harness) as store:

            def check(run: RunRecord) -> None:
                created = replace(run, run_id=f"{next(unique)}:{run.run_id}")
                harness.run(store.create_run(created))
                assert_exact(harness.run(store.load_run(created.run_id)), created, "create_run")
                upserted = replace(run, run_id=f"{next(unique)}:{run.run_id}")
                harness.run(store.checkpoint(run.thread_id, [], upserted))
                assert_exact(harness.run(store.load_run(upserted.run_id)), upserted, "checkpoint")

            harness.for_all(check, run=run_records())

    @requirement("TR-11", "TR-21", "G-3", "G-5")
    def test_invalid_runs_are_rejected_and_nothing_written(self, harness: H) -> None:
        """TR-11, TR-21, G-3, G-5: a run with any field outside its domain raises
        InvalidArgument from create_run and from checkpoint (before any thread check); no run,
        thread or message is written."""

        async def scenario(store: Store) -> None:
            for bad in invalid_runs("t"):
                with pytest.raises(InvalidArgument):
                    await store.create_run(bad)
                with pytest.raises(InvalidArgument):
                    await store.checkpoint("t", [], bad)
            assert (await store.list_runs(RunQuery())).total == 0
            assert await store.list_threads(0, LIST_ALL) == []
            assert await store.load_messages("t") is None

        harness.with_store(scenario)

    @requirement("TR-12", "TR-20")
    def test_create_run_takes_any_status_and_needs_no_thread(self, harness: H) -> None:
        """TR-12, TR-20: create_run stores a run in any status, also in ``done``, on a thread
        that does not exist; it stores the run and nothing else."""
        runs = [
            make_run(f"r-{s.value}", "ghost", status=s, created_at=n)
            for n, s in enumerate(RunStatus)
        ]

        async def scenario(store: Store) -> None:
            for run in runs:
                await store.create_run(run)
            for run in runs:
                assert_exact(await store.load_run(run.run_id), run)
            assert_exact((await store.list_runs(RunQuery(thread_id="ghost"))).items, tuple(runs))
            assert await store.load_thread("ghost") is None
            assert await store.list_threads(0, LIST_ALL) == []

        harness.with_store(scenario)

    @requirement("TR-12")
    def test_create_run_of_a_taken_id_raises_already_exists(self, harness: H) -> None:
        """TR-12: a run id already stored, on this thread or any other, raises AlreadyExists
        and the stored run is unchanged."""
        first = make_run("r", "t1", agent_id="first")

        async def scenario(store: Store) -> None:
            await store.create_run(first)
            for thread_id in ("t1", "t2"):
                with pytest.raises(AlreadyExists):
                    await store.create_run(make_run("r", thread_id, agent_id="second", steps=5))
            assert_exact(await store.load_run("r"), first)
            assert (await store.list_runs(RunQuery())).total == 1
            assert (await store.list_runs(RunQuery(thread_id="t2"))).total == 0
            await store.checkpoint("t3", [], make_run("made-by-checkpoint", "t3"))
            with pytest.raises(AlreadyExists):
                await store.create_run(make_run("made-by-checkpoint", "t3"))

        harness.with_store(scenario)

    @requirement("TR-14")
    def test_latest_run_breaks_ties_by_created_at_then_run_id(self, harness: H) -> None:
        """TR-14: the highest updated_at wins; ties go to the higher created_at, then to the
        higher run_id (code points); other threads' runs never count."""
        steps: list[tuple[RunRecord, str]] = [
            (make_run("a", created_at=1, updated_at=5), "a"),
            (make_run("b", created_at=2, updated_at=9), "b"),
            (make_run("old-but-updated", created_at=0, updated_at=8), "b"),
            (make_run("c", created_at=3, updated_at=9), "c"),  # tie on updated_at: created_at
            (make_run("d", created_at=3, updated_at=9), "d"),  # tie on both: higher run_id
            (make_run("D", created_at=3, updated_at=9), "d"),  # "D" < "d"
            (make_run("other", "elsewhere", created_at=9, updated_at=99), "d"),
            (make_run("é", created_at=3, updated_at=9), "é"),  # "é" > "d"
        ]

        async def scenario(store: Store) -> None:
            assert await store.latest_run("t") is None
            for run, latest in steps:
                await store.create_run(run)
                found = await store.latest_run("t")
                assert found is not None and found.run_id == latest, f"after {run.run_id}"
            await store.checkpoint("t", [], make_run("a", created_at=1, updated_at=10))
            assert_exact(await store.latest_run("t"), make_run("a", created_at=1, updated_at=10))
            assert await store.latest_run("nothing") is None

        harness.with_store(scenario)

    @requirement("TR-15", "G-9")
    def test_list_runs_filters_and_orders(self, harness: H) -> None:
        """TR-15, G-9: filters by thread and status (None selects all), orders by created_at
        then run_id ascending whatever the insertion order, and totals the selection."""
        by_id = {
            run.run_id: run
            for run in [
                make_run("r3", "t1", created_at=1),
                make_run("r1", "t2", created_at=1, status=RunStatus.DONE),
                make_run("é", "t1", created_at=1),
                make_run("r2", "t1", created_at=1, status=RunStatus.DONE),
                make_run("r0", "t1", created_at=2, status=RunStatus.WAITING),
                make_run("R9", "t2", created_at=0),
            ]
        }
        cases: list[tuple[RunQuery, list[str]]] = [
            (RunQuery(), ["R9", "r1", "r2", "r3", "é", "r0"]),
            (RunQuery(thread_id="t1"), ["r2", "r3", "é", "r0"]),
            (RunQuery(status=RunStatus.DONE), ["r1", "r2"]),
            (RunQuery(thread_id="t1", status=RunStatus.RUNNING), ["r3", "é"]),
            (RunQuery(status=RunStatus.WAITING), ["r0"]),
            (RunQuery(thread_id="t2", status=RunStatus.WAITING), []),
            (RunQuery(thread_id="t3"), []),
        ]

        async def scenario(store: Store) -> None:
            for run in by_id.values():
                await store.create_run(run)
            for query, ids in cases:
                page = await store.list_runs(query)
                expected = tuple(by_id[run_id] for run_id in ids)
                assert_exact(page.items, expected, f"list_runs({query}).items")
                assert (page.total, page.has_more) == (len(ids), False), query

        harness.with_store(scenario)

    @requirement("TR-16")
    def test_list_runs_pages_at_the_boundaries(self, harness: H) -> None:
        """TR-16: has_more is exactly ``offset + len(items) < total``; limit 0 means 1; an
        offset at or past the end gives no items but the full total; the offset counts within
        the filtered selection."""
        mine = [make_run(f"r{n}", "t", created_at=n) for n in range(1, 6)]
        others = [make_run(f"o{n}", "u", created_at=n, status=RunStatus.DONE) for n in range(5)]
        cases: list[tuple[RunQuery, list[RunRecord], bool]] = [
            (RunQuery(thread_id="t", limit=5), mine, False),
            (RunQuery(thread_id="t", limit=6), mine, False),
            (RunQuery(thread_id="t", limit=4), mine[:4], True),
            (RunQuery(thread_id="t", offset=4, limit=1), mine[4:], False),
            (RunQuery(thread_id="t", offset=3, limit=1), mine[3:4], True),
            (RunQuery(thread_id="t", offset=3, limit=2), mine[3:], False),
            (RunQuery(thread_id="t", offset=5), [], False),
            (RunQuery(thread_id="t", offset=99), [], False),
            (RunQuery(thread_id="t", limit=0), mine[:1], True),
            (RunQuery(thread_id="t", offset=2, limit=0), mine[2:3], True),
            (RunQuery(thread_id="t", offset=4, limit=0), mine[4:], False),
            (RunQuery(status=RunStatus.DONE, offset=1, limit=2), others[1:3], True),
            (RunQuery(status=RunStatus.RUNNING, offset=1, limit=10), mine[1:], False),
        ]

        async def scenario(store: Store) -> None:
            for run in others + mine:
                await store.create_run(run)
            for query, items, has_more in cases:
                page = await store.list_runs(query)
                assert_exact(page.items, tuple(items), f"list_runs({query}).items")
                assert (page.total, page.has_more) == (5, has_more), query

        harness.with_store(scenario)

    @requirement("TR-16")
    def test_list_runs_clamps_the_limit_to_200(self, harness: H) -> None:
        """TR-16: the default page is 50 runs; any limit above 200 gives 200."""
        runs = [make_run(f"r{n:03d}", created_at=n) for n in range(205)]
        cases: list[tuple[RunQuery, list[RunRecord], bool]] = [
            (RunQuery(), runs[:50], True),
            (RunQuery(limit=200), runs[:200], True),
            (RunQuery(limit=201), runs[:200], True),
            (RunQuery(limit=500), runs[:200], True),
            (RunQuery(offset=200, limit=500), runs[200:], False),
            (RunQuery(offset=199, limit=500), runs[199:], False),
            (RunQuery(offset=4, limit=2**40), runs[4:204], True),
        ]

        async def scenario(store: Store) -> None:
            for run in runs:
                await store.create_run(run)
            for query, items, has_more in cases:
                page = await store.list_runs(query)
                assert [r.run_id for r in page.items] == [r.run_id for r in items], query
                assert (page.total, page.has_more) == (205, has_more), query

        harness.with_store(scenario)

    @requirement("TR-16", "TR-17", "G-8")
    def test_list_runs_rejects_bad_queries(self, harness: H) -> None:
        """TR-16, TR-17, G-8: negative paging, a thread id outside the id domain, an unknown
        status, or no RunQuery at all raise InvalidArgument."""
        bad_queries: list[Any] = [
            RunQuery(offset=-1),
            RunQuery(limit=-1),
            RunQuery(offset="0"),  # type: ignore[arg-type]
            RunQuery(limit=1.5),  # type: ignore[arg-type]
            RunQuery(thread_id=""),
            RunQuery(thread_id="a\x00b"),
            RunQuery(thread_id=5),  # type: ignore[arg-type]
            RunQuery(status="paused"),  # type: ignore[arg-type]
            RunQuery(status=""),  # type: ignore[arg-type]
            None,
            {"offset": 0},
        ]

        async def scenario(store: Store) -> None:
            await store.create_run(make_run("r"))
            for query in bad_queries:
                with pytest.raises(InvalidArgument):
                    await store.list_runs(query)

        harness.with_store(scenario)

    @requirement("TR-15", "TR-16")
    def test_list_runs_pages_add_up(self, harness: H) -> None:
        """TR-15, TR-16: walking a filtered listing page by page (any page size) visits each
        selected run once, in order, with a constant total."""
        statuses = list(RunStatus)
        runs = [
            make_run(f"r{n % 7}-{n}", f"t{n % 2}", created_at=n % 4, status=statuses[n % 3])
            for n in range(23)
        ]
        queries = [RunQuery(), RunQuery(thread_id="t1"), RunQuery(status=RunStatus.DONE)]

        def selected(query: RunQuery) -> tuple[RunRecord, ...]:
            matching = [
                r
                for r in runs
                if query.thread_id in (None, r.thread_id) and query.status in (None, r.status)
            ]
            return tuple(sorted(matching, key=lambda r: (r.created_at, r.run_id)))

        with opened(harness) as store:
            for run in runs:
                harness.run(store.create_run(run))

            def check(query: RunQuery, limit: int) -> None:
                expected = selected(query)
                seen: list[RunRecord] = []
                while True:
                    paged = replace(query, offset=len(seen), limit=limit)
                    page = harness.run(store.list_runs(paged))
                    assert page.total == len(expected), paged
                    seen.extend(page.items)
                    if not page.has_more:
                        break
                assert_exact(tuple(seen), expected, f"pages of {limit} of {query}")

            harness.for_all(check, query=st.sampled_from(queries), limit=st.integers(0, 9))
