"""Fixtures of the kit's own tests: the three reference backends, Redis included."""

from __future__ import annotations

import os
import shutil

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
    message = (
        "no Redis: install redis-server (scripts/install-redis) or set AGENTSTORES_REDIS_URL"
    )
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
