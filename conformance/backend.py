"""The plug-in API: how a backend tells the kit what it offers and how to open its stores.

A backend is one :class:`Backend` object. For each store family it implements it gives an
*opener*: a callable that takes a :class:`StoreContext` and returns an async context manager
yielding an open store. Opening twice with one context must reach the same storage (that is how
durability and multi-handle concurrency are tested); a new context is a fresh, empty store
isolated from every other.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import uuid
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from agentstores.spec.values import Clock

from .engine_faults import FaultSwitch

__all__ = [
    "ENTRY_POINT_GROUP",
    "Backend",
    "BackendLoadError",
    "Capability",
    "Family",
    "FaultInjector",
    "Opener",
    "StoreContext",
    "load_backend",
    "new_namespace",
    "registered_backends",
]

#: The entry-point group under which installed backends register (``name = "module:attr"``).
ENTRY_POINT_GROUP = "agentstores.backends"


class Family(StrEnum):
    """The store families of the spec; each value names its spec module and document."""

    THREAD_RUN = "thread_run"
    """Threads, messages, runs and atomic checkpoints (seed 001)."""
    SESSION_STORE = "session_store"
    """Coding-agent sessions with conversations, tokens, search, export/import (seed 000)."""
    SESSION_SERVICE = "session_service"
    """Sessions of (app, user) with append-only events and prefix-scoped state (seed 002)."""
    MEMORY_STORAGE = "memory_storage"
    """User memories, session summaries, messages and retention (seed 003)."""
    STATE_SESSION = "state_session"
    """Saved state dicts of named modules per (user, session) (seed 004)."""


class Capability(StrEnum):
    """What a backend may offer beyond the core contract; closed unless declared."""

    DURABLE = "durable"
    """Data written before ``close()`` is there after reopening with the same context."""
    MULTI_PROCESS = "multi_process"
    """Several processes, each with its own store on one storage, keep every rule."""
    CRASH_SAFE = "crash_safe"
    """A process killed at any moment leaves the state of a prefix of its operations."""
    TTL = "ttl"
    """Records can expire after a configured time (families with TTL)."""
    SEMANTIC_SEARCH = "semantic_search"
    """Retrieval ranked by an embedder's similarity (families that have it)."""
    CLUSTER = "cluster"
    """Runs on a Redis Cluster, each compound operation within one slot."""
    ENGINE_FAULTS = "engine_faults"
    """An engine failing at any call (a statement, a file write, a request or its reply) makes
    that operation raise ``StorageUnavailable`` having taken effect whole or not at all, and
    the same store object works again once the engine does (G-11, G-17, G-23). Claiming it
    requires :attr:`Backend.fault_injection`, through which the kit makes the engine fail."""


def new_namespace() -> str:
    """A fresh namespace: lowercase letters and digits, safe as a table or key prefix."""
    return "t" + uuid.uuid4().hex[:15]


@dataclass(frozen=True)
class StoreContext:
    """Where and how one store lives during a test.

    Attributes:
        root: a fresh directory this store may use (the JSON backend keeps its files there).
        namespace: a unique prefix (letters and digits) for keys or tables on a shared engine.
        clock: the clock the store must use for every time it stamps (G-6).
        options: family-specific settings a test asks for, e.g. ``{"ttl_seconds": 1}``; each
            family's suite documents the keys it uses. Unknown keys may be ignored.
    """

    root: Path
    namespace: str
    clock: Clock
    options: Mapping[str, Any] = field(default_factory=dict)


#: Opens one store of a family for a context; the store is closed when the manager exits.
Opener = Callable[[StoreContext], AbstractAsyncContextManager[Any]]

#: While entered, makes every engine call of the backend's stores of a family consult the
#: switch and fail when it says so (see :mod:`agentstores.conformance.engine_faults`).
FaultInjector = Callable[[Family, FaultSwitch], AbstractContextManager[object]]


class BackendLoadError(Exception):
    """A backend could not be found or is not a valid :class:`Backend`; the message says why."""


@dataclass(frozen=True)
class Backend:
    """A backend under test.

    Attributes:
        name: a short name for reports.
        openers: one opener per implemented family; families left out are "not claimed".
        capabilities: the :class:`Capability` values claimed; everything else is not claimed.
        lifespan: optional; entered once before the first store is opened and left at the end
            of the run (start a server here, e.g. a disposable ``redis-server``). The fault
            checks (``crash_safe``, ``multi_process``) enter it again in each child process
            they start, which inherits the environment: a lifespan that starts a server should
            put its address there, so that the children reach the same one.
        description: one line for ``agentstores list`` and reports.
        fault_injection: how the kit makes the engine fail, required to claim
            ``engine_faults`` (optional otherwise): a :data:`FaultInjector`, called with the
            family and a :class:`~agentstores.conformance.engine_faults.FaultSwitch`, whose
            context manager makes the engine calls of the stores opened while it is entered
            consult the switch. An engine that can fail in several ways gives a mapping of a
            name to an injector per way (Redis: ``{"request lost": ..., "reply lost": ...}``);
            the kit checks each. Module-level functions keep the backend picklable for the
            checks in child processes.
    """

    name: str
    openers: Mapping[Family, Opener]
    capabilities: frozenset[Capability] = frozenset()
    lifespan: Callable[[], AbstractContextManager[object]] | None = None
    description: str = ""
    fault_injection: FaultInjector | Mapping[str, FaultInjector] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise BackendLoadError("Backend.name must be a non-empty str")
        if not self.openers:
            raise BackendLoadError(
                f"backend {self.name!r} opens no family: give Backend(openers={{Family.X: opener}})"
            )
        for family, opener in self.openers.items():
            if not isinstance(family, Family):
                raise BackendLoadError(
                    f"backend {self.name!r}: opener key {family!r} is not a Family; "
                    f"use one of {[f.name for f in Family]}"
                )
            if not callable(opener):
                raise BackendLoadError(
                    f"backend {self.name!r}: opener for {family} is not callable"
                )
        for capability in self.capabilities:
            if not isinstance(capability, Capability):
                known = ", ".join(c.value for c in Capability)
                raise BackendLoadError(
                    f"backend {self.name!r}: unknown capability {capability!r}; "
                    f"declare Capability members ({known})"
                )
        object.__setattr__(self, "capabilities", frozenset(self.capabilities))
        self._check_fault_injection()

    def _check_fault_injection(self) -> None:
        injection = self.fault_injection
        if isinstance(injection, Mapping):
            for key, injector in injection.items():
                if not isinstance(key, str) or not key or not callable(injector):
                    raise BackendLoadError(
                        f"backend {self.name!r}: fault_injection maps a name (str) to an "
                        f"injector, a callable (family, switch) -> context manager; "
                        f"got {key!r}: {injector!r}"
                    )
        elif injection is not None and not callable(injection):
            raise BackendLoadError(
                f"backend {self.name!r}: fault_injection must be a callable "
                f"(family, switch) -> context manager, not {type(injection).__name__}"
            )
        if self.claims(Capability.ENGINE_FAULTS) and not self.fault_injectors:
            raise BackendLoadError(
                f"backend {self.name!r} claims engine_faults but gives no fault_injection: "
                "pass Backend(fault_injection=inject), where inject(family, switch) returns a "
                "context manager that, while entered, makes every engine call of the stores "
                "fail when switch.hit() is True (see agentstores.conformance.engine_faults)"
            )

    @property
    def fault_injectors(self) -> Mapping[str, FaultInjector]:
        """Each way the kit can make the engine fail, by name (empty: none given)."""
        injection = self.fault_injection
        if injection is None:
            return {}
        if isinstance(injection, Mapping):
            return dict(injection)
        return {"engine": injection}

    @property
    def families(self) -> frozenset[Family]:
        """The families this backend implements."""
        return frozenset(self.openers)

    def claims(self, capability: Capability) -> bool:
        """Whether the backend declared ``capability``."""
        return capability in self.capabilities

    def open(self, family: Family, context: StoreContext) -> AbstractAsyncContextManager[Any]:
        """Open a store of ``family`` for ``context``; NotImplementedError if not implemented."""
        try:
            opener = self.openers[family]
        except KeyError:
            raise NotImplementedError(
                f"backend {self.name!r} does not implement {family}"
            ) from None
        return opener(context)

    def with_capabilities(self, capabilities: Iterable[Capability]) -> Backend:
        """A copy of this backend declaring ``capabilities`` instead."""
        return Backend(
            self.name,
            self.openers,
            frozenset(capabilities),
            self.lifespan,
            self.description,
            self.fault_injection,
        )


def registered_backends() -> dict[str, str]:
    """Installed backends: entry-point name to its ``module:attr`` value."""
    entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    return {ep.name: ep.value for ep in sorted(entry_points, key=lambda ep: ep.name)}


def load_backend(spec: str) -> Backend:
    """Find a backend by registered name (``sqlite``) or as ``module:attr``.

    ``attr`` may be a :class:`Backend` or a callable with no arguments that returns one.
    Raises :class:`BackendLoadError` with a message that says how to fix the spec.
    """
    if ":" in spec:
        target = spec
    else:
        registered = registered_backends()
        if spec not in registered:
            names = ", ".join(registered) or "none"
            raise BackendLoadError(
                f"unknown backend {spec!r}: registered backends are {names}; "
                "or name one as 'package.module:attribute'"
            )
        target = registered[spec]
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise BackendLoadError(f"backend spec {spec!r} must look like 'package.module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = ""
        if exc.name == "redis":
            hint = " (install the driver: pip install 'agentstores[redis]')"
        raise BackendLoadError(f"cannot import {module_name!r}: {exc}{hint}") from exc
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise BackendLoadError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(obj, Backend) and callable(obj):
        obj = obj()
    if not isinstance(obj, Backend):
        raise BackendLoadError(
            f"{target} is a {type(obj).__name__}, not an agentstores.conformance.Backend"
        )
    return obj
