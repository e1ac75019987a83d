"""Making SQLite under the SQLite stores fail, for the kit's ``engine_faults`` check.

:func:`inject_engine_faults` is the ``fault_injection`` hook of the ``sqlite`` backend: while it
is entered, connections made by ``sqlite3.connect`` consult the switch before every
``execute`` and ``executemany`` (``COMMIT`` included), and the statement it fails raises
``sqlite3.OperationalError("disk I/O error")`` before it runs.

Only statements run in the stores' worker threads (named ``agentstores-sqlite...``) are counted.
The hook must be entered before the stores are opened, since a store makes its connection on
first use (the kit enters it before it opens any store of the test).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from agentstores.conformance.backend import Family
from agentstores.conformance.engine_faults import FaultSwitch

__all__ = ["inject_engine_faults"]

#: The name prefix of the threads in which the SQLite stores run their statements.
_WORKER_PREFIX = "agentstores-sqlite"


@contextmanager
def inject_engine_faults(family: Family, switch: FaultSwitch) -> Iterator[None]:
    """While entered, the statements of new SQLite connections consult ``switch``."""

    class FaultyConnection(sqlite3.Connection):
        def _check(self) -> None:
            in_store = threading.current_thread().name.startswith(_WORKER_PREFIX)
            if in_store and switch.hit():
                raise sqlite3.OperationalError("disk I/O error (injected)")

        def execute(self, *args: Any, **kwargs: Any) -> sqlite3.Cursor:
            self._check()
            return super().execute(*args, **kwargs)

        def executemany(self, *args: Any, **kwargs: Any) -> sqlite3.Cursor:
            self._check()
            return super().executemany(*args, **kwargs)

    original = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        kwargs.setdefault("factory", FaultyConnection)
        connection: sqlite3.Connection = original(*args, **kwargs)
        return connection

    sqlite3.connect = connect  # type: ignore[assignment]
    try:
        yield
    finally:
        sqlite3.connect = original
