"""The thread/run suite on the three reference backends and on the in-memory model backend."""

from __future__ import annotations

import pytest

from agentstores.conformance.backend import Backend
from agentstores.conformance.suites.thread_run import ThreadRunSuite

from .memory_thread_run import MEMORY


class TestReferencesThreadRun(ThreadRunSuite):
    """``json``, ``sqlite`` and ``redis`` (select one with ``-k sqlite``)."""

    @pytest.fixture
    def backend(self, reference_backend: Backend) -> Backend:
        return reference_backend


class TestMemoryThreadRun(ThreadRunSuite):
    """The executable model behind the async protocol: a check of the suite itself (a test
    that fails here is wrong, or the model is)."""

    @pytest.fixture
    def backend(self) -> Backend:
        return MEMORY
