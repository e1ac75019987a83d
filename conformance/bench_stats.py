"""Timing and memory measurement for ``agentstores bench``: one :class:`Result` per workload.

A :class:`Recorder` awaits each operation of a workload with the clock running and nothing
else traced (tracemalloc slows Python code several times over, which would distort the
figures), then awaits a few extra operations of the same kind with tracemalloc on and keeps
the largest rise of traced memory over one operation: what the operation itself allocated,
e.g. a whole history loaded to return its newest 20 messages. Allocations made by C code
outside Python's allocator (SQLite's page cache) are not traced; the process's peak resident
size, reported once per run, covers them.
"""

from __future__ import annotations

import gc
import math
import os
import platform
import random
import resource
import statistics
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "Call",
    "Channel",
    "Recorder",
    "Result",
    "machine",
    "peak_rss_kib",
    "percentile",
    "traced_peak",
]

#: One operation of a workload, ready to be awaited.
Call = Callable[[], Awaitable[object]]


@dataclass(frozen=True)
class Result:
    """The figures of one workload on one store.

    Attributes:
        family: the store family (``session_store``...), or ``baseline`` for a raw engine
            operation, or a third-party store's label in the side-by-side comparison.
        operation: what was timed: ``append``, ``newest_20``, ``list_page``, ``search``,
            ``checkpoint``, ``save_state``, ``load_state``, ``raw_append``.
        size: the workload's size (history length, sessions listed, messages searched,
            messages checkpointed, state bytes), after ``--scale``.
        samples: how many operations were timed.
        median_us: the median time of one operation, in microseconds.
        p99_us: the 99th percentile (nearest rank), in microseconds.
        peak_kib: the largest rise of traced Python memory during one operation, in KiB
            (None if not measured).
        method: the method timed, e.g. ``add_message``.
    """

    family: str
    operation: str
    size: int
    samples: int
    median_us: float
    p99_us: float
    peak_kib: float | None = None
    method: str = ""

    @classmethod
    def from_samples(
        cls,
        family: str,
        operation: str,
        size: int,
        nanoseconds: Iterable[int],
        *,
        peak_bytes: int | None = None,
        method: str = "",
    ) -> Result:
        """Summarise timings given in nanoseconds (at least one)."""
        values = sorted(nanoseconds)
        if not values:
            raise ValueError(f"{family} {operation}: no operation was timed")
        return cls(
            family=family,
            operation=operation,
            size=size,
            samples=len(values),
            median_us=statistics.median(values) / 1000,
            p99_us=percentile(values, 99) / 1000,
            peak_kib=None if peak_bytes is None else peak_bytes / 1024,
            method=method,
        )

    def to_json(self) -> dict[str, Any]:
        """The result as a JSON object (the fields above)."""
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Result:
        """Rebuild a result from :meth:`to_json` output."""
        return cls(**obj)


def percentile(sorted_values: list[int] | list[float], pct: float) -> float:
    """The ``pct`` percentile of ascending ``sorted_values`` by the nearest-rank method."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return float(sorted_values[rank - 1])


async def traced_peak(call: Call) -> int:
    """Bytes of traced memory one awaited ``call`` allocated at its peak, above the start."""
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        await call()
        return max(0, tracemalloc.get_traced_memory()[1] - before)
    finally:
        if started:
            tracemalloc.stop()


@dataclass(frozen=True)
class Channel:
    """One series of a :meth:`Recorder.measure_together`: what is timed and how to label it."""

    family: str
    operation: str
    size: int
    calls: Sequence[Call]
    traced: Sequence[Call] = ()
    method: str = ""


class Recorder:
    """Times workloads and keeps their :class:`Result` objects in :attr:`results`.

    Args:
        progress: called with one line per finished workload (e.g. to show a long run's
            progress on stderr), or None.
    """

    def __init__(self, progress: Callable[[str], None] | None = None) -> None:
        self.results: list[Result] = []
        self._progress = progress

    async def measure(
        self,
        family: str,
        operation: str,
        size: int,
        calls: Iterable[Call],
        *,
        traced: Iterable[Call] = (),
        method: str = "",
    ) -> Result:
        """Await each of ``calls`` timed, then each of ``traced`` under tracemalloc.

        Garbage left by the build phase is collected first, so a collection it would trigger
        does not land in the timed operations.
        """
        gc.collect()
        timings: list[int] = []
        clock = time.perf_counter_ns
        for call in calls:
            start = clock()
            await call()
            timings.append(clock() - start)
        peaks = [await traced_peak(call) for call in traced]
        result = Result.from_samples(
            family,
            operation,
            size,
            timings,
            peak_bytes=max(peaks) if peaks else None,
            method=method,
        )
        self._keep(result)
        return result

    async def measure_together(self, channels: Sequence[Channel]) -> list[Result]:
        """Time the calls of several channels in turn, one call of each per round.

        Interleaving makes the channels share the machine's state (a disk that is busy with
        another process's writes, a CPU that changed speed), so their ratios stay meaningful
        on a machine that is not idle. The order within each round is shuffled (with a fixed
        seed, so runs repeat), so no channel always follows the same neighbour: a channel
        after an fsync-heavy one would otherwise pay for its flushes every time. Then each
        channel's ``traced`` calls run under tracemalloc.
        """
        gc.collect()
        timings: list[list[int]] = [[] for _ in channels]
        clock = time.perf_counter_ns
        rounds = max((len(c.calls) for c in channels), default=0)
        order = list(range(len(channels)))
        shuffler = random.Random(0)
        for index in range(rounds):
            shuffler.shuffle(order)
            for k in order:
                calls = channels[k].calls
                if index < len(calls):
                    start = clock()
                    await calls[index]()
                    timings[k].append(clock() - start)
        results = []
        for channel, measured in zip(channels, timings, strict=True):
            peaks = [await traced_peak(call) for call in channel.traced]
            result = Result.from_samples(
                channel.family,
                channel.operation,
                channel.size,
                measured,
                peak_bytes=max(peaks) if peaks else None,
                method=channel.method,
            )
            self._keep(result)
            results.append(result)
        return results

    def _keep(self, result: Result) -> None:
        self.results.append(result)
        if self._progress is not None:
            self._progress(
                f"{result.family} {result.operation} @{result.size}: median "
                f"{result.median_us:.1f} us, p99 {result.p99_us:.1f} us ({result.samples} samples)"
            )

    def add(self, result: Result) -> None:
        """Keep a result measured elsewhere."""
        self.results.append(result)


def peak_rss_kib() -> int:
    """The peak resident set size of this process so far, in KiB (Linux reports KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # macOS reports bytes


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """Where the figures were measured: CPUs, CPU model, Python, operating system."""
    return {
        "nproc": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "system": f"{platform.system()} {platform.release()}",
    }
