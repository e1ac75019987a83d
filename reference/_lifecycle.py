"""``async with`` for the reference stores: leaving the block closes the store (G-16)."""

from __future__ import annotations

from types import TracebackType
from typing import Self

__all__ = ["ClosedOnExit"]


class ClosedOnExit:
    """``async with store:`` enters as the store and awaits :meth:`close` on leaving, however
    the block ends. A subclass gives ``close`` and may open things in ``__aenter__``."""

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
