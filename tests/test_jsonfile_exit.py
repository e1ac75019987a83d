"""The JSON reference's worker threads at interpreter exit (reference/jsonfile/_files.py,
``_WorkerPool.drain``): work handed to them still completes before the process ends, instead of
being cut like a crash."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

_CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from agentstores.reference.jsonfile import _files

    def job():
        time.sleep(0.5)  # a slow write, in flight when the program ends
        Path(sys.argv[1]).write_text("done")
        return lambda: None

    _files._pool.submit(job)
    print("exiting", flush=True)
    """
)


def test_work_in_flight_at_exit_completes(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(marker)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "exiting"
    assert marker.read_text() == "done"
