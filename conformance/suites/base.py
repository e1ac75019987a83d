"""The base of every family suite: the fixtures a backend provides and the ones it never touches.

Fixtures a backend's test module overrides:

* ``backend`` (required unless ``--agentstores-backend`` is given): returns the
  :class:`~agentstores.conformance.Backend` under test.

Fixtures the suite provides and a backend never overrides:

* ``harness``: a :class:`~agentstores.conformance.harness.Harness` for the suite's family, with a
  fresh context; it skips the test as "not claimed" when the backend does not implement the
  family or does not declare a capability the test needs, and fails it when the store wrote a
  file outside its context's directory (G-2).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from ..backend import Backend, Capability, Family
from ..harness import Harness, iter_markers_args
from ..markers import CAPABILITY_MARKER, NOT_CLAIMED_PREFIX
from ..plugin import backend_from_config, lifespans, settings_from_config

__all__ = ["SuiteBase"]


class SuiteBase:
    """Mixin base of the family suites; subclasses set :attr:`family`."""

    family: ClassVar[Family]

    @pytest.fixture
    def backend(self, request: pytest.FixtureRequest) -> Backend:
        """The backend under test. Override it, or run pytest with ``--agentstores-backend``."""
        return backend_from_config(request.config)

    @pytest.fixture
    def harness(
        self,
        backend: Backend,
        request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory,
    ) -> Iterator[Harness[Any]]:
        if self.family not in backend.families:
            pytest.skip(f"{NOT_CLAIMED_PREFIX}family {self.family.value}")
        for capability in iter_markers_args(request.node, CAPABILITY_MARKER):
            if not backend.claims(Capability(capability)):
                pytest.skip(f"{NOT_CLAIMED_PREFIX}{Capability(capability).value}")
        lifespans(request.config).ensure(backend)
        with Harness[Any](
            backend,
            self.family,
            make_dir=lambda: tmp_path_factory.mktemp(self.family.value, numbered=True),
            settings=settings_from_config(request.config),
        ) as harness:
            yield harness
            # G-2 for every test: whatever ids it used, nothing may land outside the stores'
            # directories (the sandbox keeps such files inside this test's own tree).
            escaped = harness.files_outside_contexts()
            if escaped:
                shown = ", ".join(str(path.relative_to(harness.sandbox)) for path in escaped[:5])
                pytest.fail(f"G-2: the store wrote outside its directory: {shown}", pytrace=False)
