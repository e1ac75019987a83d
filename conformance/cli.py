"""The ``agentstores`` command: check a backend against the spec, time it, list backends.

Exit codes of ``agentstores check``: 0 when everything the backend claims passed and at least
one test ran, 1 when a test failed (or nothing ran), 2 for usage errors (an unknown backend or
family, a module that cannot be imported, bad options). ``agentstores bench`` (see
:mod:`.bench`): 0, or 1 when an append cost grows with the history or a workload failed, 2 for
usage errors.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence

from agentstores import __version__

from .backend import Family, load_backend, registered_backends
from .profiles import Profile
from .report import Verdict

__all__ = ["build_parser", "main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

_DESCRIPTION = """\
Check a storage backend for AI agents against the agentstores spec.

The conformance suites run through pytest (with hypothesis); the result is printed per family
and per requirement ID: passed, failed, not claimed (the backend does not declare the family or
capability) or not run.
"""

_CHECK_EPILOG = """\
BACKEND is a registered name (see 'agentstores list') or 'package.module:attribute' naming an
agentstores.conformance.Backend, or a function returning one. The current directory is
importable.

Arguments after '--' go to pytest unchanged, e.g. '-- -n 4' (pytest-xdist) or
'-- --junitxml=out.xml'.

exit status: 0 everything claimed passed; 1 a test failed or nothing ran; 2 usage error.

examples:
  agentstores check sqlite
  agentstores check mypkg.stores:BACKEND --family thread_run --report report.json
  agentstores check json --requirement TR-19 -x --profile thorough
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``agentstores``."""
    parser = argparse.ArgumentParser(
        prog="agentstores",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"agentstores {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    check = commands.add_parser(
        "check",
        help="run the conformance suites on a backend and print the report",
        description="Run the conformance suites on BACKEND and print a table per family and "
        "requirement.",
        epilog=_CHECK_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("backend", metavar="BACKEND", help="registered name or module:attr")
    check.add_argument(
        "--family",
        action="append",
        choices=[f.value for f in Family],
        metavar="FAMILY",
        help="check only this family (repeatable; default: all). One of: "
        + ", ".join(f.value for f in Family),
    )
    check.add_argument(
        "--requirement",
        action="append",
        metavar="ID",
        help="run only the tests that cite this requirement ID, e.g. TR-19 (repeatable)",
    )
    check.add_argument(
        "--profile",
        choices=[p.value for p in Profile],
        help="hypothesis effort: dev (fast), ci (derandomised; default when $CI is set), "
        "thorough (thousands of examples)",
    )
    check.add_argument("--report", metavar="PATH.json", help="write the report as JSON")
    check.add_argument("--markdown", metavar="PATH.md", help="write the report as Markdown")
    check.add_argument(
        "-k", metavar="EXPR", dest="keyword", help="only tests matching EXPR (as pytest -k)"
    )
    check.add_argument(
        "-x", "--exitfirst", action="store_true", help="stop at the first failure (as pytest -x)"
    )
    check.add_argument(
        "-v", "--verbose", action="store_true", help="show pytest's own output as well"
    )

    _add_bench(commands)

    commands.add_parser(
        "list",
        help="list the installed backends with their families and capabilities",
        description="List the backends registered under the entry-point group "
        "'agentstores.backends', with their families and capabilities.",
    )
    return parser


_BENCH_EPILOG = """\
Workloads, per family the backend implements: append one message/event at history 10, 1,000
and 10,000; the newest 20 of 10,000; 10,000 sessions listed page by page; search over 100,000
messages; a checkpoint of 1,000 messages; save and load of a 1 MB state. Each store gets a
fresh temporary directory and namespace. Full scale takes minutes on disks that fsync slowly;
--scale 0.05 gives a quick look.

exit status: 0 no flag; 1 a family's append at the largest history costs more than twice its
append at 10 (flagged), or the backend failed a workload; 2 usage error. With --baselines the
bars are printed, not enforced.

examples:
  agentstores bench sqlite --family memory_storage --scale 0.1
  agentstores bench mypkg.stores:BACKEND --json bench.json
  agentstores bench redis --baselines
"""


def _add_bench(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = commands.add_parser(
        "bench",
        help="time the standard workloads on a backend (append, newest, list, search, state)",
        description="Time the standard workloads on BACKEND: median and p99 microseconds per "
        "operation, memory, and a flag when appends get slower as the history grows.",
        epilog=_BENCH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument("backend", metavar="BACKEND", help="registered name or module:attr")
    bench.add_argument(
        "--family",
        action="append",
        choices=[f.value for f in Family],
        metavar="FAMILY",
        help="measure only this family (repeatable; default: all the backend implements)",
    )
    bench.add_argument("--json", metavar="PATH.json", help="write the results as JSON")
    bench.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="shrink the sizes by this factor, 0 < SCALE <= 1 (default 1: full sizes)",
    )
    bench.add_argument(
        "--samples",
        type=int,
        default=200,
        help="operations timed per point (default 200; a tenth for slow workloads)",
    )
    bench.add_argument(
        "--baselines",
        action="store_true",
        help="references only: also time the raw engine append (RPUSH, INSERT+COMMIT, "
        "append+fsync), read at 100 and 100,000, and print the bars of issue 8",
    )
    bench.add_argument(
        "--dir",
        metavar="DIR",
        help="create the temporary stores under DIR (default: the system temp directory)",
    )


def _bench(options: argparse.Namespace, argv: Sequence[str]) -> int:
    from agentstores.spec.errors import StoreError

    from .bench import UsageError, run_bench
    from .bench_workloads import BenchError

    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        report = run_bench(
            options.backend,
            families=options.family,
            scale=options.scale,
            samples=options.samples,
            baselines=options.baselines,
            directory=options.dir,
            command="agentstores " + " ".join(argv),
            json_path=options.json,
        )
    except UsageError as exc:
        print(f"agentstores: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (BenchError, StoreError) as exc:
        # A benchmark measures a working store; one that fails a workload is reported as such.
        print(f"agentstores: error: the backend failed a workload: {exc!r}", file=sys.stderr)
        return EXIT_FAILED
    print(report.to_text())
    if options.json:
        print(f"JSON written to {options.json}")
    return EXIT_FAILED if report.flags else EXIT_OK


def _check(options: argparse.Namespace, extra: Sequence[str]) -> int:
    from .runner import UsageError, run_suites  # imports pytest: only when checking

    pytest_args: list[str] = []
    if options.keyword:
        pytest_args += ["-k", options.keyword]
    if options.exitfirst:
        pytest_args.append("-x")
    pytest_args += extra
    # Like `python -m`, let a backend module in the current directory be named.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        report = run_suites(
            options.backend,
            families=options.family,
            requirements=options.requirement,
            profile=options.profile,
            pytest_args=pytest_args,
            json_path=options.report,
            markdown_path=options.markdown,
            quiet=not options.verbose,
        )
    except UsageError as exc:
        print(f"agentstores: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(report.to_table(width=shutil.get_terminal_size((100, 24)).columns))
    for label, path in (("JSON", options.report), ("Markdown", options.markdown)):
        if path:
            print(f"{label} report written to {path}")
    return EXIT_OK if report.verdict is Verdict.PASS else EXIT_FAILED


def _list() -> int:
    registered = registered_backends()
    if not registered:
        print("no backends registered under the entry-point group 'agentstores.backends'")
        return EXIT_OK
    for name, target in registered.items():
        try:
            backend = load_backend(name)
        except Exception as exc:  # one broken backend must not hide the others
            print(f"{name}  ({target})  cannot load: {exc}")
            continue
        families = ", ".join(sorted(f.value for f in backend.families)) or "none"
        capabilities = ", ".join(sorted(c.value for c in backend.capabilities)) or "none"
        print(f"{name}  ({target})  {backend.description}".rstrip())
        print(f"    families: {families}")
        print(f"    capabilities: {capabilities}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``agentstores`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in arguments:
        split = arguments.index("--")
        arguments, extra = arguments[:split], arguments[split + 1 :]
    parser = build_parser()
    try:
        options = parser.parse_args(arguments)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if extra and options.command != "check":
        print("agentstores: error: only 'check' takes pytest arguments after '--'", file=sys.stderr)
        return EXIT_USAGE
    if options.command == "check":
        return _check(options, extra)
    if options.command == "bench":
        return _bench(options, arguments)
    return _list()


if __name__ == "__main__":
    sys.exit(main())
