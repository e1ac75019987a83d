"""What every family's SQLite store shares: its database, its clock and its life cycle.

A family's store subclasses :class:`SQLiteStore`, names its schema in the class attributes
``_family`` and ``_migrations``, and calls ``super().__init__`` from its own ``__init__``
(which keeps its public signature and documents its arguments).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import ClassVar, Self

from agentstores.spec.values import Clock

from .._lifecycle import ClosedOnExit
from ._db import Database, Migration, Synchronous

__all__ = ["SQLiteStore"]


class SQLiteStore(ClosedOnExit):
    """The base of the family stores: one :class:`~._db.Database`, a clock, ``async with``
    and an idempotent :meth:`close`.

    Nothing touches the file until the first operation or ``async with``, which opens the
    database (and migrates its schema) before the block runs.
    """

    #: The name the family's schema version is kept under (e.g. ``"thread_run"``).
    _family: ClassVar[str]
    #: The family's schema steps (its module's ``MIGRATIONS``).
    _migrations: ClassVar[Sequence[Migration]]

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        prefix: str,
        clock: Clock,
        synchronous: Synchronous,
        busy_timeout: float,
    ) -> None:
        self._db = Database(
            path,
            prefix=prefix,
            family=self._family,
            migrations=self._migrations,
            synchronous=synchronous,
            busy_timeout=busy_timeout,
        )
        self._clock = clock

    async def __aenter__(self) -> Self:
        try:
            await self._db.open()
        except BaseException:
            # A failed open must not leave the worker thread behind.
            await self._db.close()
            raise
        return self

    async def close(self) -> None:
        """Close the database connection; idempotent (G-16)."""
        await self._db.close()

    @property
    def database(self) -> Database:
        """The store's :class:`~._db.Database`: a back door to the raw rows for tests.

        The store's class docstring names its tables, ``database.table(name)`` (see its
        module's ``MIGRATIONS``); writing them directly bypasses every rule of the spec.
        """
        return self._db
