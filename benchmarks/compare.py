"""Side by side: the reference backends next to the session stores people use today.

Run it in the benchmark environment, never in the kit's own (the third-party packages are not
dependencies of agentstores)::

    bash benchmarks/run.sh            # makes /tmp/benchvenv, installs, runs, writes RESULTS.md
    tox -e compare                    # the same through tox

For each engine (JSON files, SQLite, Redis) it opens, on fresh directories and key prefixes,
the references' three append families (``session_store.add_message``,
``session_service.append_event``, ``memory_storage.save_message``) and the third-party stores
on that engine (``third_party.py``), builds every conversation first, then times all their
appends in turn (one append of each series per round, so they share the machine's state),
then all their newest-20 reads the same way, next to the raw engine append of the
``--baselines`` bench. The workloads, sizes and messages are those of ``agentstores bench``.
It writes a Markdown table (with the machine and the command) and the raw figures as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import re
import sys
import tempfile
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from third_party import ADAPTERS, Adapter, available, version  # noqa: E402

from agentstores.conformance.backend import Family, StoreContext, load_backend, new_namespace  # noqa: E402
from agentstores.conformance.bench import BenchReport  # noqa: E402
from agentstores.conformance.bench_baselines import raw_append  # noqa: E402
from agentstores.conformance.bench_stats import Channel, Recorder, Result, machine  # noqa: E402
from agentstores.conformance.bench_workloads import (  # noqa: E402
    TRACED,
    BenchRun,
    MemoryStorageHistory,
    SessionServiceHistory,
    SessionStoreHistory,
    Sizes,
    history_channels,
)
from agentstores.spec.values import system_clock  # noqa: E402

ENGINES = ("json", "sqlite", "redis")
_REFERENCE_HISTORIES = {
    Family.SESSION_STORE: SessionStoreHistory,
    Family.SESSION_SERVICE: SessionServiceHistory,
    Family.MEMORY_STORAGE: MemoryStorageHistory,
}
_DURABILITY = {
    "json": "fsync of every write (default)",
    "sqlite": "WAL, synchronous FULL (default)",
    "redis": "one round trip per operation (MULTI/EXEC or Lua)",
}


@dataclass
class Row:
    """One store of the table: where it runs, what it calls, and its figures or why none."""

    engine: str
    label: str
    method: str
    durability: str
    results: list[Result] = field(default_factory=list)
    problem: str = ""


async def _engine(
    engine: str, sizes: Sizes, root: Path, redis_url: str, rows: list[Row], progress: bool
) -> None:
    recorder = Recorder(
        (lambda line: print(line, file=sys.stderr, flush=True)) if progress else None
    )
    backend = load_backend(engine)
    run = BenchRun(recorder, sizes)
    appends: list[Channel] = []
    reads: list[Channel] = []
    mine: list[tuple[Row, str]] = []
    async with contextlib.AsyncExitStack() as stack:
        for family, history_class in _REFERENCE_HISTORIES.items():
            directory = root / f"{engine}-{family.value}"
            directory.mkdir()
            context = StoreContext(directory, new_namespace(), system_clock)
            store = await stack.enter_async_context(backend.open(family, context))
            history = history_class(store)
            label = f"agentstores {engine} {family.value}"
            row = Row(engine, label, history.method, _DURABILITY[engine])
            channels = await history_channels(history, run, family=family.value, label=label)
            appends += channels.appends
            reads += channels.reads
            rows.append(row)
            mine.append((row, label))
        for adapter in (a for a in ADAPTERS if a.engine == engine):
            await _third_party(adapter, stack, run, root, redis_url, rows, mine, appends, reads)
        directory = root / f"{engine}-raw"
        directory.mkdir()
        raw = await stack.enter_async_context(
            raw_append(engine, directory, appends=sizes.samples + 2 * TRACED)
        )
        raw_row = Row(engine, f"raw {engine} engine", raw.method, "as the reference")
        rows.append(raw_row)
        mine.append((raw_row, "raw"))
        appends.append(
            Channel("raw", "append", 0, [raw.call] * sizes.samples, [raw.call] * TRACED, raw.method)
        )
        print(f"{engine}: built; timing {len(appends)} append series", file=sys.stderr)
        await recorder.measure_together(appends)
        await recorder.measure_together(reads)
    for row, label in mine:
        row.results = [r for r in recorder.results if r.family == label]


async def _third_party(
    adapter: Adapter,
    stack: contextlib.AsyncExitStack,
    run: BenchRun,
    root: Path,
    redis_url: str,
    rows: list[Row],
    mine: list[tuple[Row, str]],
    appends: list[Channel],
    reads: list[Channel],
) -> None:
    found = available(adapter)
    label = f"{adapter.label} {found}" if found else adapter.label
    row = Row(adapter.engine, label, "", adapter.durability)
    rows.append(row)
    if found is None:
        row.problem = f"not installed ({adapter.distribution})"
        return
    directory = root / f"{adapter.engine}-{adapter.distribution}-{len(rows)}"
    directory.mkdir()
    try:
        history = await stack.enter_async_context(adapter.opener(directory, redis_url))
        row.method = history.method
        channels = await history_channels(history, run, family=label, label=label)
    except Exception as exc:  # report a store that cannot run here; never invent figures
        row.problem = f"failed: {type(exc).__name__}: {exc}".splitlines()[0][:200]
        traceback.print_exc()
        return
    appends += channels.appends
    reads += channels.reads
    mine.append((row, label))


def _cell(results: Sequence[Result], operation: str, size: int | None) -> str:
    for r in results:
        if r.operation == operation and (size is None or r.size == size):
            return f"{r.median_us:,.0f} ({r.p99_us:,.0f})"
    return "-"


def _growth(results: Sequence[Result]) -> str:
    appends = {r.size: r.median_us for r in results if r.operation == "append" and r.size > 0}
    if len(appends) < 2:
        return "-"
    return f"{appends[max(appends)] / appends[min(appends)]:.2f}x"


def markdown(rows: Sequence[Row], sizes: Sizes, meta: dict[str, Any]) -> str:
    """The Markdown table of the comparison, with the machine and the command."""
    m = meta["machine"]
    appends = sizes.append
    read = max(sizes.read)
    header = (
        ["engine", "store", "append call"]
        + [f"append @ {n:,}" for n in appends]
        + [f"growth {appends[-1]:,} / {appends[0]:,}", f"newest 20 of {read:,}", "durability"]
    )
    lines = [
        "# Side by side: agentstores references and the stores people use today",
        "",
        f"Measured {meta['date']} on {m['nproc']} CPUs ({m['cpu_model']}), "
        f"{m['system']}, Python {m['python']}; the disk is the one holding the system's "
        "temporary directory. Reproduce with:",
        "",
        "```sh",
        meta["command"],
        "```",
        "",
        "Each cell is the median time of one operation in microseconds, with the 99th "
        f"percentile in parentheses, over {sizes.samples} operations. `append @ N` persists "
        "one more message in a conversation of N messages (at 10: one append on each of "
        f"{sizes.samples} conversations of 10; at the larger sizes, {sizes.samples} appends to "
        "one conversation of that size). `growth` is the median at the largest history over "
        "the median at 10: 1.00x means the cost does not grow with the history. `newest 20` "
        "reads the 20 newest messages (where the store can). Every store of one engine was "
        "built first and then timed in turn, one operation of each per round, so they shared "
        "the machine's state; `raw` is the cheapest engine operation that persists the same "
        "append (`agentstores bench --baselines`).",
        "",
        "agentscope's sessions save whole state dicts: its way to persist one more message is "
        "to add it to an `InMemoryMemory` and save the memory, so the cost grows with the "
        "history by design. Packages: "
        + ", ".join(f"{name} {ver}" for name, ver in meta["packages"].items()),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for row in rows:
        if row.problem:
            cells = [row.engine, row.label, row.method or "-"]
            cells += [row.problem] + ["-"] * (len(appends) + 1) + [row.durability]
        else:
            cells = [row.engine, row.label, f"`{row.method}`"]
            if row.label.startswith("raw"):
                raw = _cell(row.results, "append", 0)
                cells += [raw] * len(appends) + ["-", "-"]
            else:
                cells += [_cell(row.results, "append", n) for n in appends]
                cells += [_growth(row.results), _cell(row.results, "newest_20", read)]
            cells.append(row.durability)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def bars_section(paths: Sequence[str]) -> str:
    """A Markdown section with the bars of issue 8 from ``agentstores bench --baselines`` JSON."""
    lines = [
        "",
        "## Bars of the references (`agentstores bench BACKEND --baselines`)",
        "",
        "Each reference measured alone, every size and the raw engine append timed in turn in "
        "one run: append at the largest history within 1.3x of append at 10; newest 20 of the "
        "largest history within 1.5x of newest 20 of 100; append within 2x of the raw engine "
        "append.",
        "",
        "| backend | family | bar | ratio | limit | holds | what |",
        "|---|---|---|---|---|---|---|",
    ]
    commands = []
    for path in paths:
        report = BenchReport.from_json(json.loads(Path(path).read_text(encoding="utf-8")))
        commands.append(re.sub(r" --json \S+", "", report.command))
        for bar in report.bars:
            lines.append(
                f"| {report.backend} | {bar.family} | {bar.name} | {bar.ratio:.2f}x | "
                f"{bar.limit:g}x | {'yes' if bar.passed else '**no**'} | {bar.detail} |"
            )
        for flag in report.flags:
            lines.append(
                f"| {report.backend} | {flag.family} | FLAG | {flag.ratio:.2f}x | "
                f"{flag.limit:g}x | **no** | append growth flag |"
            )
    lines += ["", "Commands:", "", "```sh", *commands, "```"]
    return "\n".join(lines) + "\n"


#: The kit's own bar (issue 8): every family's suite against one reference, ci profile.
KIT_CHECK_LIMIT_SECONDS = 180.0


def kit_check_section(seconds: float, status: int, summary: str) -> str:
    """A Markdown section with the kit's own bar: the wall time of ``agentstores check sqlite
    --profile ci`` (all five families, one process) against 3 minutes."""
    holds = seconds <= KIT_CHECK_LIMIT_SECONDS and status == 0
    return "\n".join(
        [
            "",
            "## The kit's own bar",
            "",
            "`agentstores check sqlite --profile ci`: every family's suite against the SQLite "
            "reference, timed whole (start of the process to its exit), in the same run as "
            "the tables above.",
            "",
            "| command | tests | exit status | wall time | limit | holds |",
            "|---|---|---|---|---|---|",
            f"| `agentstores check sqlite --profile ci` | {summary} | {status} | "
            f"{seconds:.0f} s | {KIT_CHECK_LIMIT_SECONDS:.0f} s | "
            f"{'yes' if holds else '**no**'} |",
            "",
        ]
    )


def _command(args: Sequence[str]) -> str:
    """The run.sh command line that reproduces this run (run.sh adds the options it measured:
    --bench-json and the --kit-check-* ones)."""
    added = ("--bench-json", "--kit-check-seconds", "--kit-check-status", "--kit-check-summary")
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in added:
            skip = True
        elif not arg.startswith(tuple(option + "=" for option in added)):
            kept.append(arg)
    bench_args = os.environ.get("BENCH_ARGS", "").strip()
    prefix = f'BENCH_ARGS="{bench_args}" ' if bench_args else ""
    return f"{prefix}bash benchmarks/run.sh {' '.join(kept)}".rstrip()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison; write the Markdown table and the JSON figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="shrink sizes (default 1)")
    parser.add_argument("--samples", type=int, default=200, help="operations per point")
    parser.add_argument("--engine", action="append", choices=ENGINES, help="default: all")
    parser.add_argument("--output", default=str(HERE / "RESULTS.md"), help="Markdown file")
    parser.add_argument("--json", help="also write the figures as JSON")
    parser.add_argument("--dir", help="where the temporary stores go")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument(
        "--bench-json",
        action="append",
        default=[],
        metavar="PATH",
        help="a JSON report of 'agentstores bench BACKEND --baselines' whose bars to include",
    )
    parser.add_argument(
        "--kit-check-seconds",
        type=float,
        metavar="S",
        help="wall time of 'agentstores check sqlite --profile ci' (run.sh measures it)",
    )
    parser.add_argument("--kit-check-status", type=int, default=0, help="its exit status")
    parser.add_argument("--kit-check-summary", default="", help="its 'tests:' line")
    options = parser.parse_args(argv)
    sizes = Sizes.scaled(options.scale, samples=options.samples)
    engines = options.engine or list(ENGINES)
    args = list(sys.argv[1:] if argv is None else argv)
    meta: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "command": _command(args),
        "packages": {
            name: version(name) or "not installed"
            for name in ("agentstores", "agentscope", "openai-agents", "google-adk", "redis")
        },
    }
    rows: list[Row] = []
    from agentstores.reference.redis.server import current_url, kit_lifespan

    with kit_lifespan(), tempfile.TemporaryDirectory(dir=options.dir) as tmp:
        for engine in engines:
            root = Path(tmp) / engine
            root.mkdir()
            asyncio.run(_engine(engine, sizes, root, current_url(), rows, not options.quiet))
    text = markdown(rows, sizes, meta) + bars_section(options.bench_json)
    if options.kit_check_seconds is not None:
        text += kit_check_section(
            options.kit_check_seconds, options.kit_check_status, options.kit_check_summary
        )
    Path(options.output).write_text(text, encoding="utf-8")
    print(text)
    if options.json:
        document = {
            **meta,
            "sizes": {"append": sizes.append, "read": sizes.read, "samples": sizes.samples},
            "rows": [
                {
                    "engine": row.engine,
                    "label": row.label,
                    "method": row.method,
                    "problem": row.problem,
                    "results": [r.to_json() for r in row.results],
                }
                for row in rows
            ],
        }
        Path(options.json).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
