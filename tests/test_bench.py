"""``agentstores bench``: flags and bars on given figures, smoke runs, usage errors.

Nothing here asserts a timing of a correct store: the flag logic is tested on synthetic
figures, the command on tiny runs whose only timing check is that the exit status agrees with
the flags in the JSON, and one store that rewrites its whole history on every append, whose
append at 2,000 messages is hundreds of times slower than at 10, must be flagged.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from agentstores.conformance import cli
from agentstores.conformance.backend import Backend, Family, StoreContext
from agentstores.conformance.bench import (
    GROWTH_FLAG,
    BenchReport,
    Flag,
    growth_flags,
    reference_bars,
)
from agentstores.conformance.bench_stats import Recorder, Result, percentile
from agentstores.conformance.bench_workloads import (
    BenchRun,
    SessionStoreHistory,
    Sizes,
    history_workloads,
)
from agentstores.conformance.models.session_store import SessionStoreModel
from agentstores.spec.errors import StorageUnavailable
from agentstores.spec.messages import Message, message_to_json
from agentstores.spec.values import dump_json
from tests.conftest import require_redis
from tests.memory_session_store import MemorySessionStore


def result(family: str, operation: str, size: int, median: float) -> Result:
    return Result(family, operation, size, samples=10, median_us=median, p99_us=median * 2)


# --- the flag and the bars on given figures ---------------------------------------------------


def test_flag_needs_more_than_twice_the_cost_at_the_largest_history() -> None:
    figures = [
        result("flat", "append", 10, 100.0),
        result("flat", "append", 10_000, 190.0),
        result("double", "append", 10, 100.0),
        result("double", "append", 10_000, 200.0),  # exactly 2x: not more than twice
        result("linear", "append", 10, 100.0),
        result("linear", "append", 1_000, 900.0),
        result("linear", "append", 10_000, 8_000.0),
        result("linear", "newest_20", 10, 1.0),  # reads never flag
        result("linear", "newest_20", 10_000, 100.0),
        result("one-size", "append", 10, 100.0),
    ]
    flags = growth_flags(figures)
    assert flags == [Flag("linear", 10, 10_000, 80.0, GROWTH_FLAG)]
    assert "append at 10,000 history costs 80.0x its append at 10" in flags[0].message()


def test_flag_compares_the_smallest_and_largest_size_in_any_order() -> None:
    figures = [result("s", "append", 5_000, 500.0), result("s", "append", 50, 100.0)]
    assert [f.ratio for f in growth_flags(figures)] == [5.0]
    assert growth_flags(figures, limit=5.0) == []


def test_bars_of_the_references() -> None:
    figures = [
        result("session_store", "append", 10, 100.0),
        result("session_store", "append", 10_000, 120.0),
        result("session_store", "newest_20", 100, 50.0),
        result("session_store", "newest_20", 100_000, 100.0),
        result("baseline", "raw_append", 0, 40.0),
    ]
    baseline = Result("baseline", "raw_append", 0, 10, 40.0, 80.0, method="sqlite INSERT+COMMIT")
    bars = {bar.name: bar for bar in reference_bars(figures, {"session_store": baseline})}
    assert set(bars) == {"append growth", "newest-20 growth", "append vs raw engine"}
    assert bars["append growth"].ratio == pytest.approx(1.2)
    assert bars["append growth"].passed
    assert bars["newest-20 growth"].ratio == pytest.approx(2.0)
    assert not bars["newest-20 growth"].passed
    assert bars["append vs raw engine"].ratio == pytest.approx(3.0)  # 120 / 40
    assert not bars["append vs raw engine"].passed
    assert "MISSED" in bars["append vs raw engine"].message()
    assert all(bar.family == "session_store" for bar in bars.values())


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 201))
    assert percentile(values, 99) == 198
    assert percentile(values, 50) == 100
    assert percentile([7], 99) == 7


def test_sizes_scale_the_large_end_only() -> None:
    full = Sizes.scaled()
    assert full.append == (10, 1_000, 10_000) and full.read == (10_000,)
    assert Sizes.scaled(bars=True).read == (100, 10_000, 100_000)
    small = Sizes.scaled(0.01, samples=5, bars=True)
    assert small.append == (10, 100)
    assert small.read == (100, 1_000)
    assert small.slow_samples == 3
    with pytest.raises(ValueError):
        Sizes.scaled(0)
    with pytest.raises(ValueError):
        Sizes.scaled(1.5)


# --- a store whose append rewrites the whole history -------------------------------------------


class RewritingSessionStore(MemorySessionStore):
    """The bug the flag is for: every append reads the history and writes all of it back."""

    async def add_message(self, session_id: str, message: Message) -> None:
        session = await self.get_session(session_id, include_messages=True)
        history = [*(session.conversation or ()), message]
        dump_json([message_to_json(m) for m in history])  # what a file rewrite would cost
        await self.replace_conversation(session_id, history)


_REWRITING: dict[tuple[str, str], SessionStoreModel] = {}


@asynccontextmanager
async def open_rewriting(ctx: StoreContext) -> AsyncIterator[RewritingSessionStore]:
    model = _REWRITING.setdefault((str(ctx.root), ctx.namespace), SessionStoreModel(ctx.clock))
    store = RewritingSessionStore(model)
    try:
        yield store
    finally:
        await store.close()
        _REWRITING.pop((str(ctx.root), ctx.namespace), None)


#: A backend for ``agentstores bench tests.test_bench:REWRITING``.
REWRITING = Backend(name="rewriting", openers={Family.SESSION_STORE: open_rewriting})


def test_a_store_rewriting_its_history_on_append_is_flagged(tmp_path: Path) -> None:
    sizes = Sizes(append=(10, 2_000), read=(), samples=5)
    recorder = Recorder()

    async def scenario() -> None:
        context = StoreContext(root=tmp_path, namespace="t1", clock=lambda: 1_000)
        async with open_rewriting(context) as store:
            await history_workloads(
                SessionStoreHistory(store), BenchRun(recorder, sizes), family="session_store"
            )

    asyncio.run(scenario())
    measured = {(r.operation, r.size): r for r in recorder.results}
    assert set(measured) == {("append", 10), ("append", 2_000)}
    assert all(r.samples == 5 and r.peak_kib is not None for r in recorder.results)
    flags = growth_flags(recorder.results)
    assert [f.family for f in flags] == ["session_store"], recorder.results
    assert flags[0].large_size == 2_000


# --- the command --------------------------------------------------------------------------


def bench(tmp_path: Path, *args: str) -> tuple[int, BenchReport]:
    path = tmp_path / "bench.json"
    code = cli.main(["bench", *args, "--json", str(path), "--dir", str(tmp_path)])
    document = json.loads(path.read_text(encoding="utf-8"))
    return code, BenchReport.from_json(document)


def keys(report: BenchReport) -> set[tuple[str, str, int]]:
    return {(r.family, r.operation, r.size) for r in report.results}


def assert_consistent(code: int, report: BenchReport) -> None:
    assert code == (1 if report.flags else 0)
    assert report.results
    for r in report.results:
        assert r.samples >= 1 and 0 < r.median_us <= r.p99_us, r


def test_bench_runs_every_family_of_a_reference_with_baselines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = bench(tmp_path, "sqlite", "--scale", "0.01", "--samples", "4", "--baselines")
    assert_consistent(code, report)
    assert report.backend == "sqlite" and report.scale == 0.01 and report.skipped == []
    assert keys(report) >= {
        ("thread_run", "checkpoint", 10),
        ("thread_run", "list_page", 100),
        ("session_store", "append", 10),
        ("session_store", "append", 100),
        ("session_store", "search", 1_000),
        ("session_service", "append", 100),
        ("session_service", "newest_20", 100),
        ("session_service", "newest_20", 1_000),
        ("session_service", "list_page", 100),
        ("memory_storage", "append", 100),
        ("memory_storage", "newest_20", 1_000),
        ("state_session", "save_state", 10_000),
        ("state_session", "load_state", 10_000),
        ("state_session", "list_page", 100),
        ("baseline", "raw_append", 0),
    }
    names = {(bar.family, bar.name) for bar in report.bars}
    for family in ("session_store", "session_service", "memory_storage"):
        assert (family, "append growth") in names
        assert (family, "append vs raw engine") in names
    assert ("memory_storage", "newest-20 growth") in names
    assert report.machine["nproc"] >= 1 and report.peak_rss_kib > 0
    assert report.command.startswith("agentstores bench sqlite")
    out = capsys.readouterr().out
    assert "bars of the references (issue 8):" in out
    assert "memory_storage   append" in out


def test_bench_runs_a_module_attr_backend(tmp_path: Path) -> None:
    code, report = bench(
        tmp_path, "tests.memory_session_store:MEMORY", "--scale", "0.01", "--samples", "3"
    )
    assert_consistent(code, report)
    assert report.backend == "memory-session-store"
    assert {r.family for r in report.results} == {"session_store"}
    assert ("session_store", "append", 100) in keys(report)
    assert report.bars == []
    assert set(report.skipped) == {f.value for f in Family} - {"session_store"}


def test_bench_on_redis_times_the_rpush_baseline(tmp_path: Path) -> None:
    require_redis()
    code, report = bench(
        tmp_path,
        "redis",
        "--family",
        "memory_storage",
        "--scale",
        "0.01",
        "--samples",
        "3",
        "--baselines",
    )
    assert_consistent(code, report)
    baselines = [r for r in report.results if r.family == "baseline"]
    assert [r.method for r in baselines] == ["redis RPUSH"]


def test_bench_exits_1_and_prints_the_flag_for_a_rewriting_backend(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = bench(tmp_path, "tests.test_bench:REWRITING", "--scale", "0.2", "--samples", "3")
    assert code == 1
    assert [f.family for f in report.flags] == ["session_store"]
    assert "FLAG session_store: append at 2,000 history" in capsys.readouterr().out


class FailingSessionStore(MemorySessionStore):
    """A store whose engine is down: the bench reports it instead of timing nothing."""

    async def add_message(self, session_id: str, message: Message) -> None:
        raise StorageUnavailable("engine down")


@asynccontextmanager
async def open_failing(ctx: StoreContext) -> AsyncIterator[FailingSessionStore]:
    store = FailingSessionStore(SessionStoreModel(ctx.clock))
    try:
        yield store
    finally:
        await store.close()


#: A backend for ``agentstores bench tests.test_bench:FAILING``.
FAILING = Backend(name="failing", openers={Family.SESSION_STORE: open_failing})


def test_bench_exits_1_when_the_backend_fails_a_workload(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["bench", "tests.test_bench:FAILING", "--scale", "0.01", "--samples", "2"]
    assert cli.main([*args, "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "the backend failed a workload" in err and "engine down" in err


@pytest.mark.parametrize(
    "args",
    [
        ("no-such-backend",),
        ("tests.memory_session_store:NOPE",),
        ("tests.memory_session_store:MEMORY", "--baselines"),
        ("sqlite", "--scale", "0"),
        ("sqlite", "--samples", "0"),
        ("sqlite", "--family", "nope"),
    ],
)
def test_bench_usage_errors_exit_2(
    args: Sequence[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["bench", *args, "--dir", str(tmp_path)]) == 2
    assert "error" in capsys.readouterr().err


def test_report_round_trips_through_json() -> None:
    report = BenchReport(
        backend="x",
        scale=0.5,
        samples=3,
        results=[result("session_store", "append", 10, 5.0)],
        flags=[Flag("session_store", 10, 100, 3.0)],
        command="agentstores bench x",
        started_at="2025-01-01T00:00:00+00:00",
    )
    document: dict[str, Any] = json.loads(json.dumps(report.to_json()))
    assert document["format"] == "agentstores.bench"
    assert BenchReport.from_json(document) == report
    with pytest.raises(ValueError):
        BenchReport.from_json({**document, "version": 99})
