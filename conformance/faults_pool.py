"""The parent's side of the fault checks' child processes (see :mod:`.faults`).

:class:`Zygote` starts ``python -m agentstores.conformance.faults_child``, sends it a job, and
asks it to fork children. Everything the children and the zygote say arrives on one pipe as
lines ``"<pid> <what> [<details>]"``; :class:`Child` keeps what each child said:

* ``forked`` (from the zygote), ``exit <code>`` (from the zygote, after reaping the child;
  ``-9`` after SIGKILL);
* ``ready`` (the store is open), ``start <i>`` and ``ack <i> <outcome>`` around operation ``i``,
  ``done`` (finished and closed), ``error <text>`` (the child failed and exits).

Frames to the zygote are 8-byte big-endian lengths followed by a pickle.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .faults import Job

__all__ = ["Child", "Zygote", "write_frame"]

#: How long the zygote may take to start and load the job (imports on a loaded machine).
_START_TIMEOUT = 120.0


def write_frame(fd: int, value: object) -> None:
    """Send ``value`` pickled, length first, on the file descriptor ``fd``."""
    data = pickle.dumps(value)
    payload = len(data).to_bytes(8, "big") + data
    view = memoryview(payload)
    while view:
        view = view[os.write(fd, view) :]


@dataclass
class Child:
    """What one forked child reported so far (times are ``time.monotonic()``)."""

    pid: int
    forked_at: float = field(default_factory=time.monotonic)
    ready_at: float | None = None
    started: dict[int, float] = field(default_factory=dict)
    acked: dict[int, tuple[str, float]] = field(default_factory=dict)
    done: bool = False
    errors: list[str] = field(default_factory=list)
    status: int | None = None

    @property
    def exited(self) -> bool:
        """Whether the zygote reaped it."""
        return self.status is not None


class Zygote:
    """A helper process that holds the job and forks children on request.

    Use it as a context manager; leaving it stops the zygote and kills any child still alive.
    """

    def __init__(self, job: Job, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._stderr_path = directory / "children.log"
        self._children: dict[int, Child] = {}
        self._forked: list[int] = []
        self._buffer = b""
        self._zygote_pid: int | None = None
        with open(self._stderr_path, "wb") as stderr:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "agentstores.conformance.faults_child"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        assert self._process.stdin is not None and self._process.stdout is not None
        self._in = self._process.stdin.fileno()
        self._out = self._process.stdout.fileno()
        try:
            write_frame(self._in, (list(sys.path), pickle.dumps(job)))
            self.wait(lambda: self._zygote_pid is not None, _START_TIMEOUT, "the zygote to start")
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Zygote:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- talking to the zygote -----------------------------------------------------------

    def fork(self, command: tuple[Any, ...]) -> Child:
        """Have the zygote fork a child that runs ``command``; return its record."""
        write_frame(self._in, command)
        self.wait(lambda: bool(self._forked), _START_TIMEOUT, "the zygote to fork")
        return self._child(self._forked.pop(0))

    def _child(self, pid: int, *, exiting: bool = False) -> Child:
        known = self._children.get(pid)
        # A pid is reused only after its process was reaped and reported as exited, and the
        # zygote reports "forked" before "exit": an exited record of this pid is an old child.
        if known is None or (known.exited and not exiting):
            known = self._children[pid] = Child(pid)
        return known

    def _line(self, line: str) -> None:
        pid_text, _, rest = line.partition(" ")
        what, _, details = rest.partition(" ")
        pid = int(pid_text)
        if what == "hello":
            self._zygote_pid = pid
        elif what == "forked":
            self._child(pid)  # a record of its own, even if an old child had this pid
            self._forked.append(pid)
        elif what == "exit":
            self._child(pid, exiting=True).status = int(details)
        elif what == "ready":
            self._child(pid).ready_at = time.monotonic()
        elif what == "start":
            self._child(pid).started[int(details)] = time.monotonic()
        elif what == "ack":
            index, _, outcome = details.partition(" ")
            self._child(pid).acked[int(index)] = (outcome, time.monotonic())
        elif what == "done":
            self._child(pid).done = True
        elif what == "error":
            self._child(pid).errors.append(details)
        else:
            raise AssertionError(f"unexpected line from a fault-test child: {line!r}")

    def _pump(self, timeout: float) -> None:
        """Read what has arrived, waiting up to ``timeout`` seconds for the first bytes."""
        ready, _, _ = select.select([self._out], [], [], max(0.0, timeout))
        if not ready:
            return
        data = os.read(self._out, 1 << 16)
        if not data:
            raise AssertionError(f"the fault-test zygote exited unexpectedly\n{self.stderr_tail()}")
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self._line(line.decode("utf-8", "replace"))

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Read reports until ``predicate()`` holds; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out after {timeout:.0f} s waiting for {what}\n{self.stderr_tail()}"
                )
            self._pump(min(remaining, 0.5))

    def kill(self, child: Child) -> None:
        """SIGKILL ``child`` unless it already exited or is exiting by itself."""
        self._pump(0)
        if child.exited or child.done:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGKILL)

    def stderr_tail(self, limit: int = 4000) -> str:
        """The end of what the zygote and its children wrote to stderr."""
        try:
            text = self._stderr_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        text = text.strip()
        if not text:
            return "(the children wrote nothing to stderr)"
        return "children's stderr:\n" + text[-limit:]

    def close(self) -> None:
        """Stop the zygote; kill children that are still running."""
        for child in self._children.values():
            if not child.exited:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            write_frame(self._in, ("quit",))
        with contextlib.suppress(OSError):
            self._process.stdin.close()  # type: ignore[union-attr]
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        with contextlib.suppress(OSError):
            self._process.stdout.close()  # type: ignore[union-attr]
