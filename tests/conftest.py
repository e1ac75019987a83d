"""Fixtures of the kit's own tests: the three reference backends, Redis included."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import hypothesis
import pytest

from agentstores.conformance.backend import Backend, load_backend

REFERENCES = ("json", "sqlite", "redis")


def in_ci() -> bool:
    """Whether we run under CI, where a missing Redis server is a failure, never a skip."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_redis() -> None:
    """Skip (locally) or fail (under CI) when no Redis server can be had."""
    if os.environ.get("AGENTSTORES_REDIS_URL") or shutil.which("redis-server"):
        return
    message = "no Redis: install redis-server (scripts/install-redis) or set AGENTSTORES_REDIS_URL"
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session", params=REFERENCES)
def reference_backend(request: pytest.FixtureRequest) -> Backend:
    """Each reference backend in turn (``json``, ``sqlite``, ``redis``)."""
    name: str = request.param
    if name == "redis":
        require_redis()
    return load_backend(name)


@pytest.fixture
def no_shrinking() -> Iterator[None]:
    """Hypothesis without its shrink phase, for runs that only need to see a broken backend fail.

    Shrinking a failing state machine can take minutes; the kit's own tests of broken backends
    need the failure, not its smallest example. The suites' settings inherit this from the
    loaded profile, so it reaches the nested run too.
    """
    previous = hypothesis.settings.default
    hypothesis.settings.register_profile(
        "agentstores-no-shrinking",
        phases=[p for p in hypothesis.Phase if p is not hypothesis.Phase.shrink],
    )
    hypothesis.settings.load_profile("agentstores-no-shrinking")
    try:
        yield
    finally:
        hypothesis.settings.register_profile("agentstores-restored", previous)
        hypothesis.settings.load_profile("agentstores-restored")
