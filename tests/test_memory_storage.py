"""The memory-storage suite on the reference backends and on the in-memory model backend."""

from __future__ import annotations

import pytest

from agentstores.conformance.backend import Backend
from agentstores.conformance.suites.memory_storage import MemoryStorageSuite

from .memory_memory_storage import MEMORY


class TestMemoryMemoryStorage(MemoryStorageSuite):
    """The model behind the async protocol: the suite agrees with its own model."""

    @pytest.fixture
    def backend(self) -> Backend:
        return MEMORY


class TestReferencesMemoryStorage(MemoryStorageSuite):
    """The JSON, SQLite and Redis references (``reference_backend`` is parametrised)."""

    @pytest.fixture
    def backend(self, reference_backend: Backend) -> Backend:
        return reference_backend
