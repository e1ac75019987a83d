"""A toy suite and toy backends for the kit's tests of its runner, reports and command line.

The toy "store" keeps int values under str keys. :class:`ToySuite` poses as the thread/run
suite (it cites real ``TR-`` and ``G-`` IDs, so reports list the real spec document), and the
backends below pass it, fail it in a property test, claim nothing of it, or fail to start.
Runs select it with ``run_suites(..., suites=TOY_SUITES)``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager

from hypothesis import strategies as st

from agentstores.conformance.backend import Backend, Capability, Family, Opener, StoreContext
from agentstores.conformance.harness import Harness
from agentstores.conformance.markers import needs, requirement
from agentstores.conformance.suites.base import SuiteBase

#: The runner's suite table for runs of the toy suite.
TOY_SUITES = {Family.THREAD_RUN: "tests.toy_backend:ToySuite"}

# Toy storage outlives a store object, keyed by context, so that reopening finds the data.
_STORAGE: dict[tuple[str, str], dict[str, int]] = {}


class ToyStore:
    """Ints under str keys; ``modulus`` (when set) is the toy's bug: big values wrap around."""

    def __init__(self, data: dict[str, int], modulus: int | None) -> None:
        self._data = data
        self._modulus = modulus

    async def put(self, key: str, value: int) -> None:
        """Store ``value`` under ``key``."""
        self._data[key] = value % self._modulus if self._modulus else value

    async def get(self, key: str) -> int | None:
        """The value under ``key``, or None."""
        return self._data.get(key)


def _opener(modulus: int | None = None) -> Opener:
    @asynccontextmanager
    async def open_store(context: StoreContext) -> AsyncIterator[ToyStore]:
        data = _STORAGE.setdefault((str(context.root), context.namespace), {})
        yield ToyStore(data, modulus)

    def opener(context: StoreContext) -> AbstractAsyncContextManager[ToyStore]:
        return open_store(context)

    return opener


class ToySuite(SuiteBase):
    """Three toy tests: an example, a property and a capability-gated one."""

    family = Family.THREAD_RUN

    @requirement("TR-1")
    def test_round_trip(self, harness: Harness[ToyStore]) -> None:
        """TR-1: a stored value reads back."""

        async def body(store: ToyStore) -> int | None:
            await store.put("k", 7)
            return await store.get("k")

        assert harness.with_store(body) == 7

    @requirement("TR-2", "G-4")
    def test_values_round_trip(self, harness: Harness[ToyStore]) -> None:
        """TR-2, G-4: every int reads back exactly."""

        def check(value: int) -> None:
            async def body(store: ToyStore) -> int | None:
                await store.put("k", value)
                return await store.get("k")

            assert harness.with_store(body) == value

        harness.for_all(check, value=st.integers())

    @requirement("TR-23")
    @needs(Capability.DURABLE)
    def test_durable(self, harness: Harness[ToyStore]) -> None:
        """TR-23: a value is there after reopening."""

        async def write(store: ToyStore) -> None:
            await store.put("k", 3)

        async def read(store: ToyStore) -> int | None:
            return await store.get("k")

        harness.with_store(write)
        assert harness.with_store(read) == 3


@contextmanager
def _failing_lifespan() -> Iterator[object]:
    raise RuntimeError("toy server failed to start")
    yield  # pragma: no cover - makes this a generator


#: Passes the toy suite (claims no capability, so TR-23 is "not claimed").
GOOD = Backend("toy", {Family.THREAD_RUN: _opener()}, description="toy backend that works")
#: Also claims ``durable``, so every toy test runs.
DURABLE = GOOD.with_capabilities({Capability.DURABLE})
#: Wraps values modulo 1000: the property test (TR-2, G-4) finds it, the example test does not.
BROKEN = Backend("toy-broken", {Family.THREAD_RUN: _opener(modulus=1000)})
#: Implements another family only: everything is "not claimed" and the run is empty.
OTHER_FAMILY = Backend("toy-other", {Family.STATE_SESSION: _opener()})
#: Its lifespan raises: every test errors in setup.
NO_START = Backend("toy-no-start", {Family.THREAD_RUN: _opener()}, lifespan=_failing_lifespan)


def make_good() -> Backend:
    """A factory, as ``module:attr`` may name one."""
    return GOOD


#: Not a backend at all (for the error message test).
NOT_A_BACKEND = 42
