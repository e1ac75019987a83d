"""``agentstores bench``: the standard workloads on a backend, with flags and bars.

:func:`run_bench` opens each store of the backend on a fresh context (a temporary directory and
a unique namespace, the backend's lifespan entered, as the conformance kit does), runs the
workloads of :mod:`.bench_workloads` for each family the backend implements, and returns a
:class:`BenchReport`: median and p99 microseconds per operation, the memory an operation
allocates, the process's peak resident size, and

* a :class:`Flag` for each family whose append at the largest history costs more than
  :data:`GROWTH_FLAG` times its append at 10 (cost growing with history is the most common
  performance bug of session stores);
* with ``baselines=True`` (reference backends only), the :class:`Bar` results of issue 8:
  append at 10,000 within 1.3x of append at 10, newest 20 of 100,000 within 1.5x of newest 20
  of 100, and append within 2x of the raw engine operation of :mod:`.bench_baselines`, each
  raw baseline timed in turn with the appends it is compared with.

Timings depend on the machine and its load: nothing here belongs in a test with a threshold
(the flag is meant for growth by orders of magnitude, not for noise).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agentstores.spec.values import system_clock

from .backend import Backend, BackendLoadError, Family, StoreContext, load_backend, new_namespace
from .bench_baselines import ENGINES, raw_append
from .bench_stats import Recorder, Result, machine, peak_rss_kib
from .bench_workloads import (
    BASELINE_FAMILY,
    TRACED,
    WORKLOADS,
    BenchRun,
    Sizes,
    Workload,
    run_workload,
)

__all__ = [
    "APPEND_BAR",
    "FORMAT",
    "GROWTH_FLAG",
    "NEWEST_BAR",
    "RAW_BAR",
    "Bar",
    "BenchReport",
    "Flag",
    "UsageError",
    "growth_flags",
    "reference_bars",
    "run_bench",
]

#: The ``format`` field of the JSON report, and its version.
FORMAT = "agentstores.bench"
VERSION = 1
#: Flag a backend whose append at the largest history costs more than this times append at 10.
GROWTH_FLAG = 2.0
#: Bars of the references (issue 8): append growth, newest-20 growth, append over raw engine.
APPEND_BAR = 1.3
NEWEST_BAR = 1.5
RAW_BAR = 2.0


class UsageError(Exception):
    """The bench was asked for something that cannot be: the message says what to fix."""


@dataclass(frozen=True)
class Flag:
    """A family whose append cost grows with the history (ratio of medians above the limit)."""

    family: str
    small_size: int
    large_size: int
    ratio: float
    limit: float = GROWTH_FLAG

    def message(self) -> str:
        """One line for people."""
        return (
            f"FLAG {self.family}: append at {self.large_size:,} history costs "
            f"{self.ratio:.1f}x its append at {self.small_size:,} (more than {self.limit:g}x: "
            "the cost grows with the history)"
        )


@dataclass(frozen=True)
class Bar:
    """One bar of issue 8 measured on a reference: ``ratio`` must be at most ``limit``."""

    name: str
    family: str
    ratio: float
    limit: float
    detail: str

    @property
    def passed(self) -> bool:
        """Whether the bar holds."""
        return self.ratio <= self.limit

    def message(self) -> str:
        """One line for people."""
        verdict = "ok" if self.passed else "MISSED"
        return (
            f"{verdict:6} {self.family} {self.name}: {self.ratio:.2f}x "
            f"(bar {self.limit:g}x; {self.detail})"
        )


def _medians(results: Iterable[Result], family: str, operation: str) -> dict[int, float]:
    return {
        r.size: r.median_us
        for r in results
        if r.family == family and r.operation == operation and r.median_us > 0
    }


def _ends(medians: Mapping[int, float]) -> tuple[int, int] | None:
    if len(medians) < 2:
        return None
    return min(medians), max(medians)


def growth_flags(results: Iterable[Result], *, limit: float = GROWTH_FLAG) -> list[Flag]:
    """A :class:`Flag` per family whose append median at its largest size exceeds ``limit``
    times its append median at its smallest size."""
    results = list(results)
    flags = []
    for family in dict.fromkeys(r.family for r in results if r.operation == "append"):
        medians = _medians(results, family, "append")
        ends = _ends(medians)
        if ends is None:
            continue
        small, large = ends
        ratio = medians[large] / medians[small]
        if ratio > limit:
            flags.append(Flag(family, small, large, ratio, limit))
    return flags


def reference_bars(results: Iterable[Result], baselines: Mapping[str, Result]) -> list[Bar]:
    """The bars of issue 8 for each family measured in ``results``.

    ``baselines`` maps a family to the raw engine result it is compared with.
    """
    results = list(results)
    bars = []
    families = dict.fromkeys(r.family for r in results if r.family != BASELINE_FAMILY)
    for family in families:
        appends = _medians(results, family, "append")
        ends = _ends(appends)
        if ends is not None:
            small, large = ends
            bars.append(
                Bar(
                    "append growth",
                    family,
                    appends[large] / appends[small],
                    APPEND_BAR,
                    f"append at {large:,} over append at {small:,}",
                )
            )
        reads = _medians(results, family, "newest_20")
        read_ends = _ends(reads)
        if read_ends is not None:
            small, large = read_ends
            bars.append(
                Bar(
                    "newest-20 growth",
                    family,
                    reads[large] / reads[small],
                    NEWEST_BAR,
                    f"newest 20 of {large:,} over newest 20 of {small:,}",
                )
            )
        baseline = baselines.get(family)
        if appends and baseline is not None and baseline.median_us > 0:
            large = max(appends)
            bars.append(
                Bar(
                    "append vs raw engine",
                    family,
                    appends[large] / baseline.median_us,
                    RAW_BAR,
                    f"append at {large:,} over {baseline.method} ({baseline.median_us:.1f} us)",
                )
            )
    return bars


@dataclass
class BenchReport:
    """What one ``agentstores bench`` run measured.

    Attributes:
        backend: the backend's name.
        scale: the ``--scale`` of the run.
        samples: operations timed per point (a tenth of that for slow workloads).
        results: every workload's figures, in the order measured.
        flags: families whose append cost grows with the history.
        bars: with baselines, the bars of issue 8.
        skipped: families asked for that the backend does not implement.
        machine: see :func:`.bench_stats.machine`.
        peak_rss_kib: the process's peak resident size at the end of the run.
        command: the command that reproduces the run.
        started_at: when the run started (UTC, ISO 8601).
    """

    backend: str
    scale: float
    samples: int
    results: list[Result] = field(default_factory=list)
    flags: list[Flag] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=machine)
    peak_rss_kib: int = 0
    command: str = ""
    started_at: str = ""

    def to_json(self) -> dict[str, Any]:
        """The report as a versioned JSON object."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "backend": self.backend,
            "scale": self.scale,
            "samples": self.samples,
            "started_at": self.started_at,
            "command": self.command,
            "machine": self.machine,
            "peak_rss_kib": self.peak_rss_kib,
            "results": [r.to_json() for r in self.results],
            "flags": [asdict(f) for f in self.flags],
            "bars": [{**asdict(b), "passed": b.passed} for b in self.bars],
            "skipped": self.skipped,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> BenchReport:
        """Rebuild a report from :meth:`to_json` output; ValueError if it is not one."""
        if obj.get("format") != FORMAT or obj.get("version") != VERSION:
            raise ValueError(f"not an {FORMAT} version {VERSION} document")
        return cls(
            backend=obj["backend"],
            scale=obj["scale"],
            samples=obj["samples"],
            results=[Result.from_json(r) for r in obj["results"]],
            flags=[Flag(**f) for f in obj["flags"]],
            bars=[Bar(**{k: v for k, v in b.items() if k != "passed"}) for b in obj["bars"]],
            skipped=list(obj["skipped"]),
            machine=dict(obj["machine"]),
            peak_rss_kib=obj["peak_rss_kib"],
            command=obj["command"],
            started_at=obj["started_at"],
        )

    def to_text(self) -> str:
        """The report as a table for a terminal."""
        m = self.machine
        lines = [
            f"backend {self.backend}, scale {self.scale:g}, {self.samples} samples per point; "
            f"{m.get('nproc')} CPUs ({m.get('cpu_model')}), Python {m.get('python')}",
            "",
            f"{'family':16} {'operation':11} {'size':>9} {'samples':>7} {'median us':>11} "
            f"{'p99 us':>11} {'peak KiB':>9}  method",
        ]
        for r in self.results:
            peak = "" if r.peak_kib is None else f"{r.peak_kib:.0f}"
            lines.append(
                f"{r.family:16} {r.operation:11} {r.size:>9,} {r.samples:>7} "
                f"{r.median_us:>11.1f} {r.p99_us:>11.1f} {peak:>9}  {r.method}"
            )
        lines.append("")
        lines += [f.message() for f in self.flags] or [
            f"no flag: no append costs more than {GROWTH_FLAG:g}x at the largest history"
        ]
        if self.bars:
            lines += ["", "bars of the references (issue 8):"]
            lines += ["  " + b.message() for b in self.bars]
        if self.skipped:
            lines += ["", "not implemented by the backend: " + ", ".join(self.skipped)]
        lines += ["", f"peak resident size of the process: {self.peak_rss_kib / 1024:.0f} MiB"]
        return "\n".join(lines)


def _resolve(backend: Backend | str) -> Backend:
    if isinstance(backend, Backend):
        return backend
    try:
        return load_backend(backend)
    except BackendLoadError as exc:
        raise UsageError(str(exc)) from exc
    except Exception as exc:  # the backend's own module raised while loading
        raise UsageError(
            f"loading backend {backend!r} failed: {type(exc).__name__}: {exc}"
        ) from exc


def _families(selected: Iterable[Family | str] | None) -> list[Family]:
    chosen = []
    for value in selected or list(Family):
        try:
            chosen.append(Family(value))
        except ValueError:
            known = ", ".join(f.value for f in Family)
            raise UsageError(f"unknown family {value!r}: choose from {known}") from None
    return list(dict.fromkeys(chosen))


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_bench(
    backend: Backend | str,
    *,
    families: Iterable[Family | str] | None = None,
    scale: float = 1.0,
    samples: int = 200,
    baselines: bool = False,
    directory: Path | str | None = None,
    progress: Callable[[str], None] | None = _stderr,
    command: str = "",
    json_path: Path | str | None = None,
) -> BenchReport:
    """Run the standard workloads on ``backend`` and return the report.

    Args:
        backend: a :class:`Backend`, a registered name (``sqlite``) or ``module:attr``.
        families: the families to measure (default: every family the backend implements).
        scale: shrink every size by this factor (0 < scale <= 1), e.g. 0.01 for a smoke run.
        samples: operations timed per point (a tenth of it, at least 3, for slow workloads).
        baselines: also time the raw engine operation and compute the bars (reference
            backends ``json``, ``sqlite``, ``redis`` only); adds reads at 100 and 100,000.
        directory: where the temporary store directories go (default: the system's temp
            directory). Put it on the disk you want measured.
        progress: called with a line per finished workload (default: print to stderr).
        command: the command line to record as the way to reproduce the run.
        json_path: also write the JSON report there.

    Raises:
        UsageError: an unknown backend or family, a bad scale or sample count, or baselines
            asked for a backend that is not a reference.
        BenchError: the backend did something a workload cannot measure.
    """
    resolved = _resolve(backend)
    wanted = _families(families)
    try:
        sizes = Sizes.scaled(scale, samples=samples, bars=baselines)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if baselines and resolved.name not in ENGINES:
        raise UsageError(
            f"baselines exist for the reference backends ({', '.join(ENGINES)}), "
            f"not for {resolved.name!r}"
        )
    report = BenchReport(
        backend=resolved.name,
        scale=scale,
        samples=samples,
        command=command,
        started_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    )
    report.skipped = [f.value for f in wanted if f not in resolved.families]
    recorder = Recorder(progress)
    paired: dict[str, Result] = {}
    with contextlib.ExitStack() as stack:
        if resolved.lifespan is not None:
            stack.enter_context(resolved.lifespan())
        tmp = Path(
            stack.enter_context(
                tempfile.TemporaryDirectory(dir=directory, prefix="agentstores-bench-")
            )
        )
        runner = stack.enter_context(asyncio.Runner())
        for family in (f for f in wanted if f in resolved.families):
            for workload in WORKLOADS[family]:
                root = tmp / f"{family.value}-{workload.name}"
                root.mkdir()
                context = StoreContext(root=root, namespace=new_namespace(), clock=system_clock)
                before = len(recorder.results)
                runner.run(
                    _run_one(resolved, family, workload, context, recorder, sizes, baselines)
                )
                for result in recorder.results[before:]:
                    if result.family == BASELINE_FAMILY:
                        paired[family.value] = result
    report.results = list(recorder.results)
    report.flags = growth_flags(r for r in report.results if r.family != BASELINE_FAMILY)
    if baselines:
        report.bars = reference_bars(report.results, paired)
    report.peak_rss_kib = peak_rss_kib()
    if json_path is not None:
        Path(json_path).write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
    return report


async def _run_one(
    backend: Backend,
    family: Family,
    workload: Workload,
    context: StoreContext,
    recorder: Recorder,
    sizes: Sizes,
    baselines: bool,
) -> None:
    opened = backend.open(family, context)
    if not (baselines and workload.name == "append"):
        await run_workload(workload, opened, BenchRun(recorder, sizes))
        return
    # The raw engine append is timed with the family's appends, in turn (see
    # Recorder.measure_together), next to the store's files.
    async with raw_append(backend.name, context.root, appends=sizes.samples + 2 * TRACED) as raw:
        await run_workload(workload, opened, BenchRun(recorder, sizes, raw))


def parse_families(values: Sequence[str] | None) -> list[Family] | None:
    """``--family`` values as families (None for all); UsageError for an unknown one."""
    return None if not values else _families(values)
