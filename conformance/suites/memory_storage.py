"""The memory-storage suite (``spec/memory_storage.md``, IDs ``MS-n``).

Subclass :class:`MemoryStorageSuite` in a test module and give it a ``backend`` fixture whose
backend has an opener for ``Family.MEMORY_STORAGE``.

Context options the suite passes to the opener (``StoreContext.options``):

* ``"embedder"``: an :class:`~agentstores.spec.memory_storage.Embedder` the store must use for
  ``semantic`` retrieval (MS-7). Contexts without the key must give a store without semantic
  retrieval, which raises NotSupported for it. The kit's embedder is
  :class:`~agentstores.conformance.embedding.HashingEmbedder`; the MS-8 tests pass a
  :class:`~agentstores.conformance.embedding.BrokenEmbedder`.

Tests of ``semantic`` ranking are marked ``@needs(Capability.SEMANTIC_SEARCH)``; the refusal
without an embedder is core (every backend). Durability needs ``Capability.DURABLE``.
"""

from __future__ import annotations

from hypothesis.stateful import run_state_machine_as_test

from ..backend import Capability, Family
from ..embedding import HashingEmbedder
from ..markers import needs, requirement
from .base import SuiteBase
from .engine_faults import EngineFaultTests
from .memory_storage_bad_input import MemoryStorageBadInput
from .memory_storage_faults import MemoryStorageFaultTests
from .memory_storage_machine import machine_class
from .memory_storage_memories import MemoryTests
from .memory_storage_messages import MessageTests
from .memory_storage_robust import RobustnessTests
from .memory_storage_support import H

__all__ = ["MemoryStorageSuite"]

#: The requirements the state machine compares with the model.
_MACHINE_REQUIREMENTS = (*(f"MS-{n}" for n in range(2, 25) if n != 8), "G-2", "G-9")


class MemoryStorageSuite(
    MemoryTests,
    MessageTests,
    RobustnessTests,
    MemoryStorageBadInput,
    MemoryStorageFaultTests,
    EngineFaultTests,
    SuiteBase,
):
    """Conformance tests of the memory-storage family; see the module docstring.

    The tests live in mixins by topic: :class:`MemoryTests` (MS-2 .. MS-13),
    :class:`MessageTests` (MS-14 .. MS-23), :class:`RobustnessTests` (MS-24 .. MS-30) and
    :class:`MemoryStorageBadInput` (G-3, MS-1); the state machines are here.
    """

    family = Family.MEMORY_STORAGE

    @requirement(*_MACHINE_REQUIREMENTS)
    def test_state_machine(self, harness: H) -> None:
        """MS-2 .. MS-7, MS-9 .. MS-24, G-2, G-9: random sequences of every operation, the
        clock moving both ways, agree with the model in every result and every error; each write
        is read back at once (semantic retrieval without an embedder must raise NotSupported).
        """
        run_state_machine_as_test(machine_class(harness), settings=harness.settings)

    @needs(Capability.SEMANTIC_SEARCH)
    @requirement("MS-7", "MS-9", "MS-10", "MS-12", "MS-13", "MS-24")
    def test_state_machine_with_an_embedder(self, harness: H) -> None:
        """MS-7, MS-9, MS-10, MS-12, MS-13, MS-24: the same random sequences on a store with
        the kit's HashingEmbedder; semantic retrieval ranks as the model does."""
        machine = machine_class(harness, HashingEmbedder())
        run_state_machine_as_test(machine, settings=harness.settings)
