"""The one error hierarchy of every agentstores store (G-10, G-11).

Every failure a store reports is a :class:`StoreError`. Where the meaning matches a built-in
exception the class subclasses it too, so ``except KeyError`` keeps working for callers that
already use it. A backend translates its engine's exceptions (``sqlite3.OperationalError``,
``redis.ConnectionError``, ``OSError``) into these; none reaches a caller.
"""

from __future__ import annotations

__all__ = [
    "AlreadyExists",
    "Conflict",
    "InvalidArgument",
    "NotFound",
    "NotSupported",
    "StorageUnavailable",
    "StoreError",
]


class StoreError(Exception):
    """Root of every error an agentstores store raises."""


class NotFound(StoreError, KeyError):
    """The operation needs a record that does not exist (a thread, a session, a run)."""

    def __str__(self) -> str:  # KeyError quotes its argument; a message reads better plain.
        return str(self.args[0]) if self.args else ""


class AlreadyExists(StoreError):
    """The operation creates a record whose id is already taken."""


class Conflict(StoreError):
    """The stored state is not what the operation was made against.

    ``expected`` and ``actual`` say what the caller assumed and what the store holds (a
    version, a status, an owner), so that the caller can reload and retry.
    """

    def __init__(self, message: str, *, expected: object = None, actual: object = None) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class InvalidArgument(StoreError, ValueError):
    """An argument is outside its documented domain; nothing was written."""


class NotSupported(StoreError, NotImplementedError):
    """The store does not offer this operation or option (an undeclared capability)."""


class StorageUnavailable(StoreError, ConnectionError):
    """The engine could not be reached or failed part-way; the previous data is intact."""
