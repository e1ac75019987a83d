"""The zygote of the fault checks: ``python -m agentstores.conformance.faults_child``.

It reads one job from stdin (the parent's ``sys.path`` and a pickled
:class:`~agentstores.conformance.faults.Job`), imports what the job needs, and then forks one
child per command it receives:

* ``("crash", start)``: open the store and apply the job's operations from ``start`` on, one by
  one, reporting ``start i`` before and ``ack i <outcome>`` after each; the parent kills it.
* ``("process", worker, go_path, result_path, rounds)``: open the store, report ``ready``, wait
  for ``go_path`` to exist, run the workload's ``process`` and pickle its result to
  ``result_path``.
* ``("quit",)``: exit.

Forking from this single-threaded process (never from the parent, which runs event loops and
worker threads) makes each child cheap and safe. Reports go to the parent on the original
stdout as lines ``"<pid> <what> ..."`` (see :mod:`.faults_pool`); stdout itself is pointed at
stderr, so that prints cannot garble them. The zygote reaps its children and reports
``exit <code>`` for each.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from contextlib import AbstractContextManager
from pathlib import Path
from types import FrameType
from typing import Any

_report_fd = -1


def _report(line: str) -> None:
    # One write() per line: the zygote and its children share the pipe, and writes of less
    # than PIPE_BUF bytes are never interleaved.
    data = f"{os.getpid()} {line}".replace("\n", " | ").encode("utf-8", "replace")
    os.write(_report_fd, data[:3000].decode("utf-8", "ignore").encode() + b"\n")


def _read_exact(count: int) -> bytes | None:
    chunks: list[bytes] = []
    while count:
        chunk = os.read(0, count)
        if not chunk:
            return None
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def _read_frame() -> Any:
    header = _read_exact(8)
    if header is None:
        return None
    data = _read_exact(int.from_bytes(header, "big"))
    return None if data is None else pickle.loads(data)


def _reap(signum: int, frame: FrameType | None) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _report_as(pid, f"exit {os.waitstatus_to_exitcode(status)}")


def _report_as(pid: int, line: str) -> None:
    os.write(_report_fd, f"{pid} {line}\n".encode())


def _lifespan(backend: Any) -> AbstractContextManager[object]:
    return backend.lifespan() if backend.lifespan is not None else contextlib.nullcontext()


async def _crash(job: Any, backend: Any, start: int) -> None:
    from agentstores.spec.errors import StoreError

    from .clock import ManualClock
    from .faults import outcome_of

    clock = ManualClock(job.base_time + start)
    async with backend.open(job.family, job.context(clock)) as store:
        scope = await job.workload.resume(store)
        _report("ready")
        for index in range(start, len(job.operations)):
            clock.set(job.base_time + index)
            _report(f"start {index}")
            error: StoreError | None = None
            try:
                await job.workload.apply_to_store(store, job.operations[index], scope)
            except StoreError as caught:
                error = caught
            _report(f"ack {index} {outcome_of(error)}")


async def _process(job: Any, backend: Any, worker: int, go: str, rounds: int) -> object:
    from .clock import ManualClock

    clock = ManualClock(job.base_time)
    async with backend.open(job.family, job.context(clock)) as store:
        _report("ready")
        await asyncio.to_thread(_wait_for, go)
        return await job.workload.process(store, worker, rounds, clock)


def _wait_for(path: str) -> None:
    while not os.path.exists(path):
        time.sleep(0.001)


def _save(value: object, path: str) -> None:
    temp = Path(f"{path}.tmp")
    temp.write_bytes(pickle.dumps(value))
    os.replace(temp, path)


def _child(job: Any, backend: Any, command: tuple[Any, ...]) -> None:
    """The body of a forked child; never returns."""
    code = 0
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        os.close(0)
        with _lifespan(backend):
            if command[0] == "crash":
                asyncio.run(_crash(job, backend, int(command[1])))
            else:
                _, worker, go, result, rounds = command
                _save(asyncio.run(_process(job, backend, worker, go, rounds)), result)
        _report("done")
    except BaseException as error:
        traceback.print_exc()
        sys.stderr.flush()
        _report(f"error {type(error).__name__}: {error}")
        code = 1
    finally:
        os._exit(code)


def main() -> None:
    """Load the job, then fork a child per command until told to quit."""
    global _report_fd
    _report_fd = os.dup(1)
    os.dup2(2, 1)
    frame = _read_frame()
    if frame is None:
        return
    path, job_data = frame
    sys.path[:] = list(dict.fromkeys([*path, *sys.path]))
    job = pickle.loads(job_data)
    backend = job.load_backend()
    if threading.active_count() != 1:
        names = [t.name for t in threading.enumerate()]
        raise SystemExit(f"fault-test zygote: threads {names} started at import; cannot fork")
    signal.signal(signal.SIGCHLD, _reap)
    _report("hello")
    while True:
        command = _read_frame()
        if command is None or command[0] == "quit":
            break
        # SIGCHLD waits until "forked" is out, so the parent never hears of an exit first.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        pid = os.fork()
        if pid == 0:
            _child(job, backend, command)
        _report_as(pid, "forked")
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    with contextlib.suppress(ChildProcessError):
        while True:
            os.wait()


if __name__ == "__main__":
    main()
