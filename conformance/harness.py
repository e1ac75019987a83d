"""What a suite test works with: one backend, one family, an event loop and fresh contexts.

Suite tests are plain (synchronous) pytest functions that drive the async store through
:meth:`Harness.run`, so the kit works whatever async plugin (if any) a project uses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, ExitStack
from pathlib import Path
from typing import Any, Generic, TypeVar

import hypothesis
from hypothesis import strategies as st

from agentstores.spec.values import Clock

from .backend import Backend, Family, StoreContext, new_namespace
from .clock import ManualClock

__all__ = ["SANDBOX_LEVELS", "Harness", "LifespanRegistry"]

#: The directories between a test's sandbox and its context roots (see ``Harness.sandbox``).
SANDBOX_LEVELS = ("a", "b", "c", "d", "e", "f", "g", "h")

S = TypeVar("S")
T = TypeVar("T")


class LifespanRegistry:
    """Enters each backend's ``lifespan`` once and leaves them all at :meth:`close`."""

    def __init__(self) -> None:
        self._entered: dict[int, Backend] = {}
        self._stack = ExitStack()

    def ensure(self, backend: Backend) -> None:
        """Enter ``backend.lifespan`` unless this registry already did."""
        key = id(backend.lifespan) if backend.lifespan is not None else id(backend)
        if backend.lifespan is None or key in self._entered:
            return
        self._stack.enter_context(backend.lifespan())
        self._entered[key] = backend

    def close(self) -> None:
        self._stack.close()
        self._entered.clear()


class Harness(Generic[S]):
    """One test's access to a backend's stores of one family.

    Attributes:
        backend: the backend under test.
        family: the family the suite checks.
        settings: the hypothesis settings of the chosen profile.
        clock: the clock of :attr:`context` (a :class:`ManualClock`).
        context: this test's default context, fresh and empty.
    """

    def __init__(
        self,
        backend: Backend,
        family: Family,
        *,
        make_dir: Callable[[], Path],
        settings: hypothesis.settings,
    ) -> None:
        self.backend = backend
        self.family = family
        self.settings = settings
        #: This test's own directory. Context roots sit :data:`SANDBOX_DEPTH` levels below it,
        #: so that an id that climbs out of its store (``../../x``) still lands in here, where
        #: :meth:`files_outside_contexts` finds it, never in a directory the test does not own.
        self.sandbox = make_dir()
        self._roots: list[Path] = []
        self._runner = asyncio.Runner()
        self.clock = ManualClock()
        self.context = self.new_context(clock=self.clock)

    # --- contexts and stores -------------------------------------------------------------

    def new_context(
        self,
        *,
        clock: Clock | None = None,
        options: Mapping[str, Any] | None = None,
        root: Path | None = None,
    ) -> StoreContext:
        """A fresh, empty, isolated context (new directory, new namespace, its own clock).

        Pass ``root`` (another context's) to test namespace isolation on one shared directory
        or database file (G-19): the new namespace alone must keep the two stores apart.
        """
        return StoreContext(
            root=root if root is not None else self._new_root(),
            namespace=new_namespace(),
            clock=clock if clock is not None else ManualClock(),
            options=dict(options or {}),
        )

    def _new_root(self) -> Path:
        root = self.sandbox.joinpath(*SANDBOX_LEVELS, f"context{len(self._roots)}")
        root.mkdir(parents=True)
        self._roots.append(root)
        return root

    def files_outside_contexts(self) -> list[Path]:
        """Files in :attr:`sandbox` that are not inside any context root: what stores wrote
        outside their directories (G-2). Empty for a correct backend."""
        return sorted(
            path
            for path in self.sandbox.rglob("*")
            if not path.is_dir() and not any(path.is_relative_to(r) for r in self._roots)
        )

    def open(self, context: StoreContext | None = None) -> AbstractAsyncContextManager[S]:
        """Open a store for ``context`` (default: :attr:`context`); use in ``async with``."""
        manager: AbstractAsyncContextManager[S] = self.backend.open(
            self.family, context if context is not None else self.context
        )
        return manager

    def run(self, awaitable: Coroutine[Any, Any, T] | Awaitable[T]) -> T:
        """Run a coroutine on this test's event loop and return its result."""

        async def wrapper() -> T:
            return await awaitable

        return self._runner.run(wrapper())

    def with_store(
        self, body: Callable[[S], Awaitable[T]], context: StoreContext | None = None
    ) -> T:
        """Open a store for ``context``, run ``body(store)``, close the store, return the result."""

        async def scenario() -> T:
            async with self.open(context) as store:
                return await body(store)

        return self.run(scenario())

    # --- hypothesis ----------------------------------------------------------------------

    def for_all(self, check: Callable[..., None], **strategies: st.SearchStrategy[Any]) -> None:
        """Run ``check(**examples)`` for examples drawn from ``strategies`` under the profile."""
        hypothesis.settings(self.settings)(hypothesis.given(**strategies)(check))()

    def close(self) -> None:
        """Close the event loop (stores opened with :meth:`open` are closed by then)."""
        self._runner.close()

    def __enter__(self) -> Harness[S]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def iter_markers_args(node: Any, name: str) -> Iterator[Any]:
    """Every positional argument of every ``name`` marker on a pytest node."""
    for mark in node.iter_markers(name):
        yield from mark.args
