"""Run the family suites on a backend, in-process through pytest, and return the report.

:func:`run_suites` writes a tiny test module that subclasses each selected family's suite,
runs pytest on it with a :class:`~agentstores.conformance.collector.ReportCollector`, and returns
the :class:`~agentstores.conformance.report.Report`. The pytest items are the same as in the
library way (subclassing a suite in one's own tests), so pytest options such as ``-k``, ``-x``
or xdist's ``-n`` work when passed in ``pytest_args``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from .backend import Backend, BackendLoadError, Family, load_backend
from .collector import ReportCollector
from .markers import REQUIREMENT_ID
from .plugin import use_backend
from .profiles import Profile, default_profile
from .report import Report
from .spec_docs import all_requirements

__all__ = ["SUITES", "UsageError", "available_suites", "parse_family", "run_suites"]

#: Where each family's suite class lives (``module:Class``). A family whose module does not
#: exist (yet) is left out of a run, and its requirements are reported as "not run".
SUITES: dict[Family, str] = {
    Family.THREAD_RUN: "agentstores.conformance.suites.thread_run:ThreadRunSuite",
    Family.SESSION_STORE: "agentstores.conformance.suites.session_store:SessionStoreSuite",
    Family.SESSION_SERVICE: "agentstores.conformance.suites.session_service:SessionServiceSuite",
    Family.MEMORY_STORAGE: "agentstores.conformance.suites.memory_storage:MemoryStorageSuite",
    Family.STATE_SESSION: "agentstores.conformance.suites.state_session:StateSessionSuite",
}

#: Options of pytest that start xdist workers, which cannot receive a Backend object.
_XDIST_OPTIONS = ("-n", "--numprocesses", "--dist", "-d", "--tx")


class UsageError(Exception):
    """The run was asked for something that cannot be: the message says what to fix."""


def parse_family(value: Family | str) -> Family:
    """``value`` as a :class:`Family`; UsageError naming the known families otherwise."""
    try:
        return Family(value)
    except ValueError:
        known = ", ".join(f.value for f in Family)
        raise UsageError(f"unknown family {value!r}: choose from {known}") from None


def available_suites(
    families: Iterable[Family], suites: Mapping[Family, str] | None = None
) -> dict[Family, tuple[str, str]]:
    """The ``(module, class)`` of each family's suite whose module can be found."""
    table = SUITES if suites is None else suites
    found: dict[Family, tuple[str, str]] = {}
    for family in families:
        target = table.get(family)
        if target is None:
            continue
        module, _, cls = target.partition(":")
        try:
            spec = importlib.util.find_spec(module)
        except ModuleNotFoundError:  # a parent package is missing
            spec = None
        if spec is not None:
            found[family] = (module, cls)
    return found


def _resolve_backend(backend: Backend | str) -> Backend:
    if isinstance(backend, Backend):
        return backend
    try:
        return load_backend(backend)
    except BackendLoadError as exc:
        hint = ""
        if isinstance(exc.__cause__, ImportError):
            hint = (
                "; check the module name, and that it is importable from here "
                "(pip install its package, or run from its project directory)"
            )
        raise UsageError(f"{exc}{hint}") from exc
    except Exception as exc:  # the backend's own module raised while loading
        raise UsageError(
            f"loading backend {backend!r} failed: {type(exc).__name__}: {exc}"
        ) from exc


def _check_requirements(requirements: Iterable[str]) -> tuple[str, ...]:
    wanted = tuple(dict.fromkeys(requirements))
    known = all_requirements()
    for requirement_id in wanted:
        if not REQUIREMENT_ID.match(requirement_id):
            raise UsageError(f"{requirement_id!r} is not a requirement ID like 'TR-3' or 'G-1'")
        if requirement_id not in known:
            raise UsageError(
                f"unknown requirement {requirement_id!r}: it is in no spec document "
                "(see spec/general.md and spec/<family>.md)"
            )
    return wanted


def _class_name(family: Family) -> str:
    return "Test" + "".join(part.capitalize() for part in family.value.split("_"))


def _test_module(suites: Mapping[Family, tuple[str, str]]) -> str:
    # xdist workers start with the sys.path the controller had when xdist was imported, which
    # may lack entries added since (by the CLI, or by a test runner): append this process's.
    entries = (os.path.abspath(entry or os.curdir) for entry in sys.path)
    paths = [entry for entry in dict.fromkeys(entries) if os.path.isdir(entry)]
    lines = [
        '"""Generated by agentstores.conformance.runner: the suites of one run."""',
        "",
        "import sys",
        "",
        f"sys.path.extend(p for p in {paths!r} if p not in sys.path)",
        "",
    ]
    for family, (module, cls) in suites.items():
        lines.append(f"from {module} import {cls} as _{family.value}_suite")
    for family in suites:
        lines += ["", "", f"class {_class_name(family)}(_{family.value}_suite):"]
        lines.append(f'    """The {family.value} suite on the backend of this run."""')
    return "\n".join(lines) + "\n"


class _UseBackend:
    """Hands the backend object to the suites' ``backend`` fixture (through the plugin)."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    def pytest_configure(self, config: pytest.Config) -> None:
        use_backend(config, self._backend)


@contextlib.contextmanager
def _output(quiet: bool) -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    if not quiet:
        yield buffer
        return
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        yield buffer


def _forget_modules(directory: Path) -> None:
    # The generated module must not linger in sys.modules (a later run writes a new one).
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if file and Path(file).is_relative_to(directory):
            del sys.modules[name]


def _uses_xdist(pytest_args: Sequence[str]) -> bool:
    return any(
        arg == option or arg.startswith(option + "=") or (option == "-n" and arg.startswith("-n"))
        for arg in pytest_args
        for option in _XDIST_OPTIONS
    )


def run_suites(
    backend: Backend | str,
    *,
    families: Iterable[Family | str] | None = None,
    requirements: Iterable[str] | None = None,
    profile: Profile | str | None = None,
    pytest_args: Sequence[str] = (),
    json_path: Path | str | None = None,
    markdown_path: Path | str | None = None,
    quiet: bool = True,
    suites: Mapping[Family, str] | None = None,
) -> Report:
    """Run the conformance suites on ``backend`` and return the report.

    Args:
        backend: a :class:`Backend`, a registered name (``sqlite``) or ``module:attr``.
        families: the families to check (default: all); families the backend does not
            implement are reported as "not claimed".
        requirements: run only the tests citing one of these requirement IDs.
        profile: the hypothesis profile (default: ``ci`` if ``$CI`` is set, else ``dev``).
        pytest_args: more pytest arguments, e.g. ``["-x"]``, ``["-k", "paging"]``.
        json_path: also write the JSON report there.
        markdown_path: also write the Markdown report there.
        quiet: hide pytest's own output.
        suites: replaces :data:`SUITES` (family to ``module:Class``), e.g. for a suite of one's
            own family.

    Raises:
        UsageError: an unknown backend, family, profile or requirement, or pytest arguments
            pytest rejects. The message says what to fix.
    """
    resolved = _resolve_backend(backend)
    selected = list(dict.fromkeys(parse_family(f) for f in (families or list(Family))))
    wanted = _check_requirements(requirements or ())
    try:
        chosen = Profile(profile) if profile is not None else default_profile()
    except ValueError:
        known = ", ".join(p.value for p in Profile)
        raise UsageError(f"unknown profile {profile!r}: choose from {known}") from None
    xdist = _uses_xdist(pytest_args)
    if xdist and not isinstance(backend, str):
        raise UsageError(
            "xdist workers cannot receive a Backend object: name the backend as "
            "'package.module:attribute' (or a registered name) to run with -n"
        )
    found = available_suites(selected, suites)
    collector = ReportCollector(
        json_path, markdown_path, chosen, backend=resolved, families=selected, requirements=wanted
    )
    with tempfile.TemporaryDirectory(prefix="agentstores-") as tmp:
        directory = Path(tmp).resolve()
        ini = directory / "pytest.ini"
        # An ini file of our own keeps the caller's pytest configuration out of the run.
        ini.write_text("[pytest]\n", encoding="utf-8")
        module = directory / "test_agentstores.py"
        module.write_text(_test_module(found), encoding="utf-8")
        args = [
            str(module),
            "-c",
            str(ini),
            "--rootdir",
            str(directory),
            "-p",
            "no:cacheprovider",
            "--import-mode=importlib",
            # The kit and hypothesis are imported already when the runner runs in-process.
            "-W",
            "ignore::pytest.PytestAssertRewriteWarning",
            "--agentstores-profile",
            chosen.value,
        ]
        if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
            args += ["-p", "agentstores.conformance.plugin"]
        if isinstance(backend, str):
            args += ["--agentstores-backend", backend]  # so that xdist workers can load it
        for requirement_id in wanted:
            args += ["--agentstores-requirement", requirement_id]
        if quiet:
            args += ["-q", "--no-header"]
        args += list(pytest_args)
        try:
            with _output(quiet) as output:
                exit_code = pytest.main(args, plugins=[collector, _UseBackend(resolved)])
        finally:
            _forget_modules(directory)
    if exit_code == pytest.ExitCode.USAGE_ERROR or collector.report is None:
        text = output.getvalue()
        errors = [line for line in text.splitlines() if "error:" in line.lower()]
        detail = "\n".join(errors) or text.strip() or "see pytest's output above"
        raise UsageError(f"pytest rejected the arguments {list(pytest_args)}: {detail}")
    if exit_code == pytest.ExitCode.INTERNAL_ERROR:
        raise RuntimeError(f"pytest failed internally:\n{output.getvalue()}")
    return collector.report
