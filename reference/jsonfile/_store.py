"""What every family's JSON-file store shares: its directory, ``async with`` and closing.

A family's store subclasses :class:`JSONStore` and sets ``self._dir`` (its
:class:`~._files.StoreDirectory`) in its ``__init__``, which keeps its public signature.
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

from .._lifecycle import ClosedOnExit
from ._files import StoreDirectory

__all__ = ["JSONStore"]


class JSONStore(ClosedOnExit):
    """The base of the family stores: the store's directory, ``async with`` (which opens the
    directory before the block runs, so that a bad path fails there) and an idempotent
    :meth:`close`."""

    _dir: StoreDirectory

    @property
    def directory(self) -> Path:
        """The store's directory (its layout is in its module's docstring): a back door to
        the raw files for tests."""
        return self._dir.path

    def _on_open(self) -> None:
        """Run, holding the directory's lock, when the store is entered: running anything
        creates and recovers the directory; a family may also load what it keeps in memory."""

    async def __aenter__(self) -> Self:
        await self._dir.run(self._on_open)
        return self

    async def close(self) -> None:
        """Wait for the running operation and refuse further ones; idempotent (G-16)."""
        await self._dir.close()
