"""The session-service suite against the in-memory service (the model behind the API)."""

from __future__ import annotations

import pytest

from agentstores.conformance.backend import Backend
from agentstores.conformance.suites.session_service import SessionServiceSuite

from .memory_session_service import BACKEND


class TestMemorySessionService(SessionServiceSuite):
    @pytest.fixture
    def backend(self) -> Backend:
        return BACKEND
