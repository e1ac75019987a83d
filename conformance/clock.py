"""A manual clock, so that tests drive every time a store stamps (G-6)."""

from __future__ import annotations

import threading

__all__ = ["ManualClock"]

#: 2023-11-14T22:13:20Z: a recent, round instant; tests never depend on the real date.
DEFAULT_START_MS = 1_700_000_000_000


class ManualClock:
    """A clock that moves only when told; calling it returns integer ms since the epoch."""

    def __init__(self, start_ms: int = DEFAULT_START_MS) -> None:
        self._now = start_ms
        self._lock = threading.Lock()  # stores may call the clock from worker threads

    def __call__(self) -> int:
        with self._lock:
            return self._now

    def advance(self, ms: int = 1) -> int:
        """Move forward by ``ms`` (>= 0) and return the new time."""
        if ms < 0:
            raise ValueError("a ManualClock never goes back")
        with self._lock:
            self._now += ms
            return self._now

    def set(self, ms: int) -> None:
        """Jump to ``ms`` (tests of ordering may set any time)."""
        with self._lock:
            self._now = ms
