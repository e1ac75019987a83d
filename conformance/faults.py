"""Fault checks of every family: processes killed mid-operation (``crash_safe``, G-20) and
several processes on one storage (``multi_process``, G-21).

A family plugs in with a :class:`Workload`: the mutating operations it can replay on the store
and on its executable model, a read of everything the store holds, and what one process of a
multi-process run does and what must hold after all of them. The two checks are generic:

* :func:`check_crash_consistency` runs a seeded random list of operations in a child process,
  kills it with ``SIGKILL`` at a random moment (inside an operation, or while it opens the
  store), reopens the store and requires its contents to equal the model after ``k``
  operations for some ``k`` between the acknowledged and the started ones. The next child
  resumes at ``k`` on the same storage, so recovery is exercised again and again.
* :func:`check_processes` runs :meth:`Workload.process` in several child processes at once,
  each with its own store object on one context, then lets the workload check the result.

Children are forked from a *zygote* (:mod:`agentstores.conformance.faults_child`): one helper
interpreter per check that imports the backend once, so a kill costs a fork, not a start-up.
The backend reaches the zygote by pickle (openers and lifespan defined at module level) or,
failing that, as ``module:attr`` of a module that holds it. Its lifespan is entered in every
child, so a lifespan that provides a server must let children reach the same one through the
environment (the Redis reference exports ``AGENTSTORES_REDIS_URL``). POSIX only.
"""

from __future__ import annotations

import difflib
import os
import pickle
import pprint
import random
import signal
import sys
import time
import zlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import hypothesis

from agentstores.spec.errors import (
    AlreadyExists,
    Conflict,
    InvalidArgument,
    NotFound,
    NotSupported,
    StorageUnavailable,
    StoreError,
)
from agentstores.spec.messages import Message

from .backend import Backend, Family, StoreContext, load_backend
from .clock import DEFAULT_START_MS, ManualClock
from .compare import same_value
from .faults_pool import Child, Zygote
from .harness import Harness

__all__ = [
    "SEED_VARIABLE",
    "Job",
    "Operation",
    "Workload",
    "check_crash_consistency",
    "check_processes",
    "kill_count",
    "outcome_of",
    "process_rounds",
    "random_messages",
]

S = TypeVar("S")
M = TypeVar("M")

#: One mutating operation of a workload: its kind first (``("checkpoint", ...)``), then data.
Operation = tuple[Any, ...]

#: Set it to an integer to replay the kills of a failed run (the failure message names it).
SEED_VARIABLE = "AGENTSTORES_FAULT_SEED"

_ERROR_KINDS: tuple[type[StoreError], ...] = (
    NotFound,
    AlreadyExists,
    Conflict,
    InvalidArgument,
    NotSupported,
    StorageUnavailable,
)
#: How long a child may take to open its store or to make its next step, in seconds.
_STEP_TIMEOUT = 120.0
#: Operations a crash run starts its kill target within, counted from the resume point.
_SPAN = 6


def outcome_of(error: BaseException | None) -> str:
    """``"ok"``, or the G-10 class of a store error (``"NotFound"``); others by type name."""
    if error is None:
        return "ok"
    for kind in _ERROR_KINDS:
        if isinstance(error, kind):
            return kind.__name__
    return type(error).__name__


def kill_count(settings: hypothesis.settings) -> int:
    """Kills per crash check: a few under ``dev``/``ci``, hundreds under ``thorough``."""
    return max(6, min(300, settings.max_examples // 3))


def process_rounds(settings: hypothesis.settings) -> int:
    """Rounds each process of a multi-process check runs (scaled like :func:`kill_count`)."""
    return max(12, min(200, settings.max_examples // 2))


_WORDS = ("alpha", "beta", "gamma", "delta", "tool", "plan", "ünïcode", "日本", "x" * 40)


def random_messages(rng: random.Random, label: str, *, most: int = 20) -> list[Message]:
    """Up to ``most`` messages, each of a few hundred characters, the first text starting with
    ``label`` (so a test can tell which operation wrote a list); sometimes with metadata, an
    id, a time or a second part."""
    messages: list[Message] = []
    for n in range(rng.randint(0, most)):
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 60)))
        message = Message.text(
            rng.choice(("user", "assistant", "tool")),
            f"{label}.{n} {words}",
            created_at=rng.choice((None, rng.randrange(10**12))),
            id=rng.choice((None, f"{label}-m{n}")),
            metadata=rng.choice(({}, {"n": n, "f": 1.0, "neg": -0.0})),
        )
        if rng.random() < 0.2:
            extra = {"type": "tool_request", "args": {"n": n, "big": 2**70}}
            message = Message(message.role, (*message.content, extra), *_rest(message))
        messages.append(message)
    return messages


def _rest(message: Message) -> tuple[Any, ...]:
    return (message.created_at, message.id, message.metadata)


class Workload(ABC, Generic[S, M]):
    """What the fault checks do with one family; ``S`` is the store, ``M`` the model.

    A workload is sent to child processes by pickle: keep it a small object of a module-level
    class. Operations travel the same way, so they hold only records and plain values.
    """

    # --- crashes (G-20) ------------------------------------------------------------------

    @abstractmethod
    def operations(self, rng: random.Random, count: int) -> list[Operation]:
        """``count`` mutating operations, drawn from ``rng`` only (the same seed, the same list).

        Compound operations should be frequent and large enough that a kill often lands
        inside one."""

    @abstractmethod
    def new_model(self) -> M:
        """An empty model."""

    @abstractmethod
    def apply_to_model(self, model: M, operation: Operation, now: int) -> None:
        """Apply ``operation`` to the model at time ``now``; raise the store error it must."""

    async def resume(self, store: S) -> Any:
        """What a child needs to know before it continues the operations on an existing store
        (e.g. ids the store assigned); handed to :meth:`apply_to_store` as ``scope``."""
        return None

    @abstractmethod
    async def apply_to_store(self, store: S, operation: Operation, scope: Any) -> None:
        """Apply ``operation`` to the store (whose clock reads the same ``now``)."""

    @abstractmethod
    async def read_store(self, store: S) -> object:
        """Everything the store holds, read through the family's protocol, in a form that
        :func:`~agentstores.conformance.compare.same_value` compares (store-chosen ids that the
        model cannot know are replaced by stable names)."""

    @abstractmethod
    def read_model(self, model: M) -> object:
        """What :meth:`read_store` must give for a store in the model's state."""

    # --- several processes (G-21) -------------------------------------------------------

    async def prepare_processes(self, store: S) -> None:
        """Write what every process needs before they start (run once, in the parent)."""

    @abstractmethod
    async def process(self, store: S, worker: int, rounds: int, clock: ManualClock) -> object:
        """What process number ``worker`` does (``rounds`` times); returns what it saw
        (picklable), e.g. which of its racing writes succeeded."""

    @abstractmethod
    async def check_processes(self, store: S, results: Sequence[Any], rounds: int) -> None:
        """Assert what must hold after every process finished; ``results[w]`` is what
        :meth:`process` of worker ``w`` returned."""


@dataclass(frozen=True)
class Job:
    """What the zygote gets: the backend, the storage to open, the workload, the operations."""

    backend: bytes | str
    family: Family
    root: Path
    namespace: str
    options: Mapping[str, Any]
    base_time: int
    workload: Workload[Any, Any]
    operations: tuple[Operation, ...] = ()

    def load_backend(self) -> Backend:
        """The backend, unpickled or loaded by ``module:attr``."""
        if isinstance(self.backend, str):
            return load_backend(self.backend)
        loaded = pickle.loads(self.backend)
        if not isinstance(loaded, Backend):
            raise TypeError(f"the job's backend is a {type(loaded).__name__}")
        return loaded

    def context(self, clock: ManualClock) -> StoreContext:
        """The store context of this job with ``clock``."""
        return StoreContext(self.root, self.namespace, clock, dict(self.options))


def _portable(backend: Backend) -> bytes | str:
    """The backend as a pickle, or as ``module:attr`` of a loaded module that holds it."""
    try:
        data = pickle.dumps(backend)
        pickle.loads(data)
        return data
    except Exception as exc:
        problem = exc
    for name, module in list(sys.modules.items()):
        for attr, value in list(vars(module).items()):
            if value is backend:
                return f"{name}:{attr}"
    raise AssertionError(
        f"backend {backend.name!r} claims a fault capability, whose tests run it in child "
        f"processes, but it cannot be sent to one: pickling it failed ({problem}). Define its "
        "openers and lifespan at module level (functools.partial of module-level functions "
        "works), or keep the Backend in a module attribute so it can be named 'module:attr'"
    )


def _job(
    harness: Harness[Any], workload: Workload[Any, Any], operations: Sequence[Operation]
) -> Job:
    if not hasattr(os, "fork"):
        raise AssertionError("the fault checks need a POSIX system (fork and SIGKILL)")
    context: StoreContext = harness.new_context()
    try:
        pickle.dumps(dict(context.options))
    except Exception as exc:
        raise AssertionError(f"the context options cannot reach a child process: {exc}") from exc
    try:
        pickle.dumps((workload, tuple(operations)))
    except Exception as exc:
        raise AssertionError(
            f"the workload or its operations cannot reach a child process ({exc}): make the "
            "workload an instance of a module-level class, and its operations plain values "
            "and records"
        ) from exc
    return Job(
        backend=_portable(harness.backend),
        family=harness.family,
        root=context.root,
        namespace=context.namespace,
        options=dict(context.options),
        base_time=DEFAULT_START_MS,
        workload=workload,
        operations=tuple(operations),
    )


def _seed(settings: hypothesis.settings, family: Family) -> int:
    given = os.environ.get(SEED_VARIABLE, "").strip()
    if given:
        return int(given)
    if settings.derandomize:
        return zlib.crc32(family.value.encode())
    return random.randrange(2**32)


def _describe(operation: Operation, limit: int = 160) -> str:
    text = repr(operation)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _difference(actual: object, expected: object) -> str:
    """The first lines where two snapshots differ, as a unified diff of their pretty forms."""
    lines = difflib.unified_diff(
        pprint.pformat(expected, width=100).splitlines(),
        pprint.pformat(actual, width=100).splitlines(),
        "model",
        "store",
        lineterm="",
        n=2,
    )
    shown = list(lines)[:40]
    return "\n".join(shown) if shown else "(they print alike but differ in value types)"


@dataclass
class _Estimates:
    """How long opening and each kind of operation took so far, to aim kills inside them."""

    opening: list[float] = field(default_factory=list)
    by_kind: dict[str, list[float]] = field(default_factory=dict)

    def learn(self, child: Child, operations: Sequence[Operation]) -> None:
        if child.ready_at is not None:
            self.opening.append(child.ready_at - child.forked_at)
        for index, (_, acked_at) in child.acked.items():
            if index in child.started:
                kind = str(operations[index][0])
                self.by_kind.setdefault(kind, []).append(acked_at - child.started[index])

    @staticmethod
    def _median(values: list[float], default: float) -> float:
        return sorted(values)[len(values) // 2] if values else default

    def open_time(self) -> float:
        return self._median(self.opening, 0.05)

    def op_time(self, kind: str) -> float:
        return self._median(self.by_kind.get(kind, []), 0.005)


class _Expected:
    """The model after prefixes of the operations, and each operation's outcome, computed as
    the kills move forward (a model is only ever advanced; going back replays it)."""

    def __init__(self, workload: Workload[Any, Any], operations: Sequence[Operation], base: int):
        self._workload = workload
        self._operations = operations
        self._base = base
        self._model = workload.new_model()
        self._position = 0
        self._outcomes: list[str] = []
        self._states: dict[int, object] = {}

    def _advance(self, count: int) -> None:
        if count < self._position:  # never needed by the check, but correct if it is
            self._model, self._position = self._workload.new_model(), 0
        while self._position < count:
            operation = self._operations[self._position]
            try:
                self._workload.apply_to_model(self._model, operation, self._base + self._position)
                outcome = "ok"
            except StoreError as error:
                outcome = outcome_of(error)
            if self._position == len(self._outcomes):
                self._outcomes.append(outcome)
            self._position += 1

    def outcome(self, index: int) -> str:
        """What operation ``index`` gives after the ones before it."""
        if index >= len(self._outcomes):
            self._advance(index + 1)
        return self._outcomes[index]

    def state(self, count: int) -> object:
        """What the store must hold after the first ``count`` operations."""
        if count not in self._states:
            self._advance(count)
            self._states[count] = self._workload.read_model(self._model)
        return self._states[count]

    def forget_before(self, count: int) -> None:
        """Drop the states of prefixes shorter than ``count`` (no later kill can need them)."""
        for known in [k for k in self._states if k < count]:
            del self._states[known]


def _crash_once(
    zygote: Zygote, job: Job, start: int, rng: random.Random, estimates: _Estimates
) -> tuple[Child, str]:
    """Run the operations from ``start`` in a fresh child and kill it; say where."""
    count = len(job.operations)
    child = zygote.fork(("crash", start))
    if rng.random() < 0.15:  # while it opens (and recovers) the store
        time.sleep(rng.random() * estimates.open_time())
        where = "while opening the store"
    else:
        target = min(count - 1, start + rng.randrange(_SPAN))
        kind = str(job.operations[target][0])
        zygote.wait(
            lambda: child.exited or child.done or target in child.started,
            timeout=_STEP_TIMEOUT,
            what=f"the child to start operation #{target}",
        )
        time.sleep(rng.random() * estimates.op_time(kind))
        where = f"during or after operation #{target} ({kind})"
    zygote.kill(child)
    zygote.wait(lambda: child.exited, timeout=_STEP_TIMEOUT, what="the killed child to exit")
    return child, where


def check_crash_consistency(
    harness: Harness[Any], workload: Workload[Any, Any], *, kills: int | None = None
) -> None:
    """G-20: kill a child process running ``workload`` many times; after each kill the store
    holds the model's state after some prefix of the started operations that includes every
    acknowledged one, and acknowledged operations had the model's outcome.

    ``harness`` is the suite's :class:`~agentstores.conformance.harness.Harness`; its profile
    decides the number of kills (:func:`kill_count`) unless ``kills`` is given.
    """
    rounds = kills if kills is not None else kill_count(harness.settings)
    seed = _seed(harness.settings, harness.family)
    rng = random.Random(seed)
    operations = workload.operations(random.Random(rng.getrandbits(64)), rounds * 3 + _SPAN)
    job = _job(harness, workload, operations)
    expected = _Expected(workload, operations, job.base_time)
    estimates = _Estimates()
    reader = job.context(ManualClock(job.base_time + len(operations)))
    resume = 0
    with Zygote(job, Path(job.root) / "faults") as zygote:
        for round_number in range(rounds):
            if resume >= len(operations):
                break
            child, where = _crash_once(zygote, job, resume, rng, estimates)
            estimates.learn(child, operations)
            context = (
                f"(seed {seed}: set {SEED_VARIABLE}={seed} to replay; kill {round_number + 1} "
                f"of {rounds}, {where}, resumed at #{resume})"
            )
            if child.errors or child.status not in (0, -signal.SIGKILL):
                raise AssertionError(
                    f"G-20: the child running the operations from #{resume} failed (exit "
                    f"{child.status}): {'; '.join(child.errors)} {context}\n"
                    f"{zygote.stderr_tail()}"
                )
            for index in sorted(child.acked):
                got, want = child.acked[index][0], expected.outcome(index)
                assert got == want, (
                    f"G-20: operation #{index} {_describe(operations[index])} gave {got}, the "
                    f"model says {want} {context}"
                )
            acknowledged = max(child.acked, default=resume - 1) + 1
            started = max(child.started, default=resume - 1) + 1
            try:
                state = harness.with_store(workload.read_store, reader)
            except StoreError as error:
                raise AssertionError(
                    f"G-20: after the kill the store cannot be read back: "
                    f"{type(error).__name__}: {error} {context}"
                ) from error
            matches = [
                k
                for k in range(acknowledged, max(started, acknowledged) + 1)
                if same_value(state, expected.state(k))
            ]
            if not matches:
                raise AssertionError(
                    f"G-20: after the kill the store holds no prefix of the operations: "
                    f"{acknowledged} were acknowledged and {started} started {context}. "
                    f"Operation #{acknowledged}: "
                    f"{_describe(operations[min(acknowledged, len(operations) - 1)])}.\n"
                    f"Store vs. the model after the acknowledged ones:\n"
                    f"{_difference(state, expected.state(acknowledged))}"
                )
            resume = max(matches)
            expected.forget_before(resume)


def check_processes(
    harness: Harness[Any],
    workload: Workload[Any, Any],
    *,
    workers: int = 3,
    rounds: int | None = None,
) -> None:
    """G-21: ``workers`` child processes run :meth:`Workload.process` at once, each with its
    own store object on one context; then :meth:`Workload.check_processes` reads the result."""
    count = rounds if rounds is not None else process_rounds(harness.settings)
    job = _job(harness, workload, ())
    reader = job.context(ManualClock(job.base_time))
    harness.with_store(workload.prepare_processes, reader)
    directory = Path(job.root) / "faults"
    with Zygote(job, directory) as zygote:
        go = directory / "go"
        results = [directory / f"result-{worker}.pickle" for worker in range(workers)]
        children = [
            zygote.fork(("process", worker, str(go), str(results[worker]), count))
            for worker in range(workers)
        ]
        zygote.wait(
            lambda: all(c.ready_at is not None or c.exited for c in children),
            timeout=_STEP_TIMEOUT,
            what="every process to open its store",
        )
        go.touch()  # all start together, so that their operations overlap
        zygote.wait(
            lambda: all(c.exited for c in children),
            timeout=_STEP_TIMEOUT * 3,
            what=f"{workers} processes to finish {count} rounds (a deadlock?)",
        )
        failed = [c for c in children if c.errors or c.status != 0]
        if failed:
            details = "; ".join(f"exit {c.status}: {' '.join(c.errors)}" for c in failed)
            raise AssertionError(
                f"G-21: {len(failed)} of {workers} processes failed: {details}\n"
                f"{zygote.stderr_tail()}"
            )
        seen = [pickle.loads(path.read_bytes()) for path in results]

    async def check(store: Any) -> None:
        await workload.check_processes(store, seen, count)

    harness.with_store(check, reader)
