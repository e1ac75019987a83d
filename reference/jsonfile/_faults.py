"""Making the file system under the JSON stores fail, for the kit's ``engine_faults`` check.

:func:`inject_engine_faults` is the ``fault_injection`` hook of the ``json`` backend: while it is
entered, the ``os`` calls the stores make in their worker threads (``open``, ``write``,
``pwrite``, ``fsync``, ``ftruncate``, ``replace``, ``unlink``) consult the switch, and the one
it fails raises ``OSError(EIO)``: a disk that fails part-way through a write.

Only calls made in the stores' worker threads (named ``agentstores-json...``) are counted, so
the test's own file-system calls never fail. Nothing here runs unless a test enters the hook.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from agentstores.conformance.backend import Family
from agentstores.conformance.engine_faults import FaultSwitch

__all__ = ["INJECTED_CALLS", "inject_engine_faults"]

#: The ``os`` functions whose calls fail: every one that writes, syncs or opens a file.
INJECTED_CALLS = ("open", "write", "pwrite", "fsync", "ftruncate", "replace", "unlink")
#: The name prefix of the threads in which the JSON stores touch the file system.
_WORKER_PREFIX = "agentstores-json"


@contextmanager
def inject_engine_faults(family: Family, switch: FaultSwitch) -> Iterator[None]:
    """While entered, the JSON stores' file-system calls consult ``switch`` (any family)."""
    originals: dict[str, Callable[..., Any]] = {name: getattr(os, name) for name in INJECTED_CALLS}

    def wrap(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            in_store = threading.current_thread().name.startswith(_WORKER_PREFIX)
            if in_store and switch.hit():
                raise OSError(errno.EIO, f"injected failure of os.{name}")
            return original(*args, **kwargs)

        return call

    for name, original in originals.items():
        setattr(os, name, wrap(name, original))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(os, name, original)
