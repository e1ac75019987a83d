"""What the reproduction scripts share: a state module, a private redis-server, the verdict.

The scripts use agentscope and redis-py only (no agentstores code), so each finding can be
checked by anyone with ``pip install agentscope==1.0.21 'mcp<2' redis`` and ``redis-server``.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import agentscope.session  # noqa: F401  (sets agentscope's logger up, which we then quiet)

# agentscope logs every save and load at INFO; keep the scripts' output to the point.
logging.getLogger("as").setLevel(logging.WARNING)


class Module:
    """The smallest agentscope state module: ``state_dict`` / ``load_state_dict``."""

    def __init__(self, state: Any = None) -> None:
        self.state = {} if state is None else state
        self.loaded = False

    def state_dict(self) -> Any:
        return self.state

    def load_state_dict(self, state_dict: Any, strict: bool = True) -> None:
        self.state = state_dict
        self.loaded = True


@contextmanager
def redis_port() -> Iterator[int]:
    """A private ``redis-server`` on a free loopback port, without persistence; its port."""
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (apt-get install redis-server)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as directory:
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", directory],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(500):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.01)
            yield port
        finally:
            process.terminate()
            process.wait(timeout=5)


def exists(*parts: str) -> bool:
    """Whether the file at the joined path exists (synchronous, for the async scripts)."""
    return os.path.exists(os.path.join(*parts))


def read_text(*parts: str) -> str | None:
    """The file's text, or None if there is no file."""
    path = os.path.join(*parts)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return handle.read()


class Verdict:
    """Collects the checks of one script; :meth:`exit` ends it with 0 if all were confirmed."""

    def __init__(self, title: str) -> None:
        print(f"== {title}")
        self.failed = 0

    def check(self, confirmed: bool, what: str) -> None:
        """Record one claim about agentscope's behaviour and whether it reproduced."""
        print(f"  {'CONFIRMED' if confirmed else 'NOT REPRODUCED'}: {what}")
        self.failed += not confirmed

    def exit(self) -> None:
        sys.exit(1 if self.failed else 0)
