"""Run ``agentstores check`` on agentscope's JSONSession and RedisSession, then re-confirm
every finding with the scripts in ``repro/``.

Usage (from the repository root, in an environment with agentscope 1.0.x installed; the tox
environment ``agentscope`` does exactly this)::

    python examples/agentscope/check.py [--out DIR] [--json-out DIR] [--profile ci]
                                        [--no-repro] [--keep]

``--out`` is where ``report-json.md`` and ``report-redis.md`` go, ``--json-out`` the JSON
reports (default: the same place). ``--out examples/agentscope --json-out /tmp/agentscope``
regenerates the committed Markdown reports. agentscope does not conform, so
both checks are expected to FAIL (``agentstores check`` exits 1). This script exits 0 when
both checks ran to the end (exit status 0 or 1) and wrote their reports, and every
reproduction script confirmed its finding; it exits 1 otherwise (a check could not run, a
report is missing, or a finding no longer reproduces, which means README.md needs updating).

The JSON backend lets ids escape their directory (that is one of the findings), so the suites
run with pytest's ``--basetemp`` five directories deep inside a scratch directory: whatever
escapes lands in the scratch tree, which is deleted afterwards (``--keep`` keeps it).
``$AGENTSTORES_REDIS_URL`` is removed from the checks' environment so that the Redis check
runs on a disposable server (the adapter's listing scans, which the kit never does on a
server it did not start).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BACKENDS = {"json": "JSON_BACKEND", "redis": "REDIS_BACKEND"}
#: agentstores check: 0 everything claimed passed, 1 a test failed; anything else is an error.
CHECK_RAN = (0, 1)


def _say(text: str) -> None:
    # Flushed, so that our lines and the subprocesses' output appear in order in a pipe.
    print(text, flush=True)


def run_check(name: str, out: Path, json_out: Path, profile: str, sandbox: Path) -> bool:
    """Check one backend; True if the check ran to the end and wrote both reports."""
    markdown, report = out / f"report-{name}.md", json_out / f"report-{name}.json"
    for path in (markdown, report):
        path.unlink(missing_ok=True)
    basetemp = sandbox / name / "a" / "b" / "c" / "d" / "basetemp"
    basetemp.parent.mkdir(parents=True)
    env = dict(os.environ)
    env.pop("AGENTSTORES_REDIS_URL", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    command = [
        sys.executable,
        "-m",
        "agentstores.conformance.cli",
        "check",
        f"examples.agentscope.adapter:{BACKENDS[name]}",
        "--family",
        "state_session",
        "--profile",
        profile,
        "--markdown",
        str(markdown),
        "--report",
        str(report),
        "--",
        f"--basetemp={basetemp}",
    ]
    _say(f"$ {' '.join(command)}")
    status = subprocess.run(command, cwd=ROOT, env=env, check=False).returncode
    written = markdown.is_file() and report.is_file()
    if status not in CHECK_RAN or not written:
        _say(f"agentscope-{name}: the check did not run through (exit {status})")
        return False
    verdict = json.loads(report.read_text(encoding="utf-8"))["verdict"]
    _say(f"agentscope-{name}: exit {status}, verdict {verdict}; reports {markdown}, {report}\n")
    return True


def run_repros() -> bool:
    """Run every ``repro/*.py``; True if each confirmed its finding (exit 0)."""
    confirmed = True
    for script in sorted((HERE / "repro").glob("[!_]*.py")):
        status = subprocess.run([sys.executable, str(script)], check=False).returncode
        confirmed &= status == 0
    return confirmed


def main() -> int:
    """Run both checks and the reproductions; 0 if all ran and every finding reproduced."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "agentscope")
    parser.add_argument("--json-out", type=Path, help="where the JSON reports go (default: --out)")
    parser.add_argument("--profile", default="ci", help="hypothesis profile (default: ci)")
    parser.add_argument("--no-repro", action="store_true", help="skip the repro/ scripts")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    options = parser.parse_args()
    out = options.out.resolve()
    json_out = (options.json_out or options.out).resolve()
    for directory in (out, json_out):
        directory.mkdir(parents=True, exist_ok=True)
    sandbox = Path(tempfile.mkdtemp(prefix="agentscope-check-"))
    try:
        ran = [run_check(name, out, json_out, options.profile, sandbox) for name in BACKENDS]
    finally:
        if options.keep:
            _say(f"scratch directory kept: {sandbox}")
        else:
            shutil.rmtree(sandbox, ignore_errors=True)
    confirmed = options.no_repro or run_repros()
    if not all(ran):
        _say("FAILED: a check did not run through; see above")
        return 1
    if not confirmed:
        _say("FAILED: a finding no longer reproduces; update examples/agentscope/README.md")
        return 1
    _say("OK: both checks ran (agentscope fails them, as expected) and every finding reproduced")
    return 0


if __name__ == "__main__":
    sys.exit(main())
