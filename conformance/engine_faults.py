"""Making a backend's engine fail on purpose, at a chosen call: the :class:`FaultSwitch`.

A backend that claims ``engine_faults`` gives the kit a *fault injection* hook (see
:attr:`~agentstores.conformance.backend.Backend.fault_injection`): a context manager that,
while entered, makes every engine call of the stores the backend opens (a statement, a file
system call, a request to a server) ask the switch first, and fail as the engine would when
:meth:`FaultSwitch.hit` says so::

    @contextmanager
    def inject(family: Family, switch: FaultSwitch) -> Iterator[None]:
        original = Driver.execute

        def execute(self, *args):
            if switch.hit():
                raise DriverIOError("injected")  # what the driver raises when the disk fails
            return original(self, *args)

        Driver.execute = execute
        try:
            yield
        finally:
            Driver.execute = original

The kit enters the hook before it opens any store of the test, and arms the switch around
one operation at a time (:mod:`agentstores.conformance.engine_fault_check`). The hook should
count only the calls the stores make (the reference backends tell them by the name of their
worker threads, or by the connections only the stores use), and must not depend on being
entered in a particular thread.

This module imports nothing but the standard library, so that production code can name the
switch in its hook without pulling in the test tooling.
"""

from __future__ import annotations

import threading

__all__ = ["FaultSwitch"]


class FaultSwitch:
    """Counts engine calls while armed and says which must fail (thread-safe).

    Attributes:
        at: the call that fails, counted from the last :meth:`arm` (1-based; 0: none).
        persistent: whether every call after :attr:`at` fails too (an engine that stays gone).
        calls: engine calls counted since the last :meth:`arm` or :meth:`watch`.
        fired: whether a call has been failed since then.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed = False
        self.at = 0
        self.persistent = False
        self.calls = 0
        self.fired = False

    def arm(self, at: int, *, persistent: bool = False) -> None:
        """Fail the ``at``-th call from now (1-based); with ``persistent``, every later one too."""
        if at < 1:
            raise ValueError(f"at counts engine calls from 1, not {at}")
        with self._lock:
            self._armed, self.at, self.persistent = True, at, persistent
            self.calls, self.fired = 0, False

    def watch(self) -> None:
        """Count calls from now on without failing any (how many can an operation fail at?)."""
        with self._lock:
            self._armed, self.at, self.persistent = True, 0, False
            self.calls, self.fired = 0, False

    def disarm(self) -> None:
        """Let every call through uncounted again (the engine is back)."""
        with self._lock:
            self._armed = False

    def hit(self) -> bool:
        """Count one engine call; True if it must fail. Hooks call it before each engine call."""
        with self._lock:
            if not self._armed:
                return False
            self.calls += 1
            fail = self.at > 0 and (
                self.calls == self.at or (self.persistent and self.calls > self.at)
            )
            self.fired = self.fired or fail
            return fail
