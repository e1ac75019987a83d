"""The ``agentstores`` command: exit codes, the printed table, reports, filters, usage errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentstores import __version__
from agentstores.conformance import cli, runner
from agentstores.conformance.backend import Backend, Family
from agentstores.conformance.report import Report, Status, Verdict
from tests.toy_backend import TOY_SUITES

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).with_name("agentstores")


@pytest.fixture
def toy_suites(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command runs the toy suite in place of the thread/run suite."""
    monkeypatch.setattr(runner, "SUITES", dict(TOY_SUITES))


def check(*args: str) -> int:
    return cli.main(["check", *args])


@pytest.mark.usefixtures("toy_suites")
def test_check_passes_a_good_backend_and_writes_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    json_path, md_path = tmp_path / "report.json", tmp_path / "report.md"
    code = check(
        "tests.toy_backend:GOOD",
        "--family",
        "thread_run",
        "--report",
        str(json_path),
        "--markdown",
        str(md_path),
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "backend toy (capabilities: none), profile" in out
    assert any(line.split()[:2] == ["TR-1", "passed"] for line in out.splitlines())
    assert any(line.split()[:3] == ["TR-23", "not", "claimed"] for line in out.splitlines())
    assert f"JSON report written to {json_path}" in out
    report = Report.from_json(json_path.read_text())
    assert report.verdict is Verdict.PASS
    assert [f.family for f in report.families] == [Family.THREAD_RUN]
    assert "| TR-1 | passed | 1 passed |" in md_path.read_text()


@pytest.mark.usefixtures("toy_suites")
def test_check_accepts_a_factory_and_lists_every_family_by_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    json_path = tmp_path / "r.json"
    assert check("tests.toy_backend:make_good", "--report", str(json_path)) == 0
    report = Report.from_json(json_path.read_text())
    assert [f.family for f in report.families] == list(Family)
    # The toy backend implements thread/run only: the other families are not claimed.
    assert report.family(Family.STATE_SESSION).status is Status.NOT_CLAIMED
    assert "not claimed" in capsys.readouterr().out


@pytest.mark.usefixtures("toy_suites")
def test_check_fails_a_broken_backend_naming_requirement_and_repro(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    json_path = tmp_path / "r.json"
    code = check("tests.toy_backend:BROKEN", "--profile", "ci", "--report", str(json_path))
    out = capsys.readouterr().out
    assert code == 1
    assert "profile ci: FAIL" in out
    assert any(line.split()[:2] == ["TR-2", "failed"] for line in out.splitlines())
    assert "::TestThreadRun::test_values_round_trip [TR-2, G-4]" in out
    assert "@reproduce_failure(" in out
    report = Report.from_json(json_path.read_text())
    assert report.failed_requirements() == {"TR-2", "G-4"}
    (failure,) = report.family(Family.THREAD_RUN).requirement("G-4").failures
    assert failure.reproductions and failure.reproductions[0].decorator


@pytest.mark.usefixtures("toy_suites")
def test_setup_errors_fail_the_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert check("tests.toy_backend:NO_START", "--family", "thread_run") == 1
    out = capsys.readouterr().out
    assert "ERROR " in out and "toy server failed to start" in out


@pytest.mark.usefixtures("toy_suites")
def test_nothing_ran_is_not_a_pass(capsys: pytest.CaptureFixture[str]) -> None:
    assert check("tests.toy_backend:OTHER_FAMILY", "--family", "thread_run") == 1
    assert "nothing ran" in capsys.readouterr().out


@pytest.mark.usefixtures("toy_suites")
def test_requirement_filter_runs_only_citing_tests(tmp_path: Path) -> None:
    json_path = tmp_path / "r.json"
    # BROKEN fails only the G-4/TR-2 test: restricted to TR-1 it passes.
    assert (
        check("tests.toy_backend:BROKEN", "--requirement", "TR-1", "--report", str(json_path)) == 0
    )
    report = Report.from_json(json_path.read_text())
    assert [t.nodeid.rsplit("::", 1)[1] for t in report.tests] == ["test_round_trip"]
    assert [r.id for r in report.family(Family.THREAD_RUN).requirements] == ["TR-1"]
    assert report.requirement_filter == ("TR-1",)


@pytest.mark.usefixtures("toy_suites")
def test_requirement_filter_reports_deselection(capsys: pytest.CaptureFixture[str]) -> None:
    report = runner.run_suites(
        "tests.toy_backend:GOOD", families=["thread_run"], requirements=["G-4"], quiet=False
    )
    assert "2 deselected" in capsys.readouterr().out  # pytest's own summary says so
    assert [t.requirements for t in report.tests] == [("TR-2", "G-4")]


def test_requirement_filter_on_the_real_thread_run_suite() -> None:
    report = runner.run_suites(
        "tests.memory_thread_run:MEMORY", families=["thread_run"], requirements=["TR-13"]
    )
    assert report.verdict is Verdict.PASS
    assert report.tests and all("TR-13" in t.requirements for t in report.tests)
    assert report.status_of("TR-13") is Status.PASSED
    listed = {r.id for r in report.family(Family.THREAD_RUN).requirements}
    # Only the requested ID and the IDs the selected tests also cite are listed.
    assert listed == {"TR-13"} | {r for t in report.tests for r in t.requirements}
    assert "TR-22" not in listed


@pytest.mark.usefixtures("toy_suites")
def test_keyword_exitfirst_and_pytest_arguments_reach_pytest(tmp_path: Path) -> None:
    json_path = tmp_path / "r.json"
    assert check("tests.toy_backend:BROKEN", "-k", "not values") == 0
    assert check("tests.toy_backend:BROKEN", "--", "-k", "not values") == 0
    code = check(
        "tests.toy_backend:BROKEN", "-x", "--report", str(json_path), "--", "-p", "no:randomly"
    )
    assert code == 1
    # -x stops after the failing test: the test after it in the module never ran.
    tests = {t.nodeid.rsplit("::", 1)[1]: t for t in Report.from_json(json_path.read_text()).tests}
    assert "test_values_round_trip" in tests
    assert "test_durable" not in tests


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["check", "no-such-backend"], "registered backends are"),
        (["check", "no_such_module_xyz:BACKEND"], "cannot import 'no_such_module_xyz'"),
        (["check", "tests.toy_backend:MISSING"], "has no attribute 'MISSING'"),
        (["check", "tests.toy_backend:NOT_A_BACKEND"], "not an agentstores.conformance.Backend"),
        (["check", "tests.toy_backend:GOOD", "--family", "threads"], "invalid choice: 'threads'"),
        (["check", "tests.toy_backend:GOOD", "--requirement", "TR-999"], "unknown requirement"),
        (["check", "tests.toy_backend:GOOD", "--requirement", "tr1"], "not a requirement ID"),
        (["check", "tests.toy_backend:GOOD", "-k", "a and"], "Wrong expression passed to '-k'"),
        (["check", "tests.toy_backend:GOOD", "--", "--no-such-option"], "unrecognized arguments"),
        (["check"], "the following arguments are required: BACKEND"),
        (["list", "--", "-x"], "only 'check' takes pytest arguments"),
    ],
)
def test_usage_errors_exit_2_with_a_message(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(args) == 2
    assert message in capsys.readouterr().err


def test_a_backend_object_cannot_go_to_xdist_workers() -> None:
    with pytest.raises(runner.UsageError, match="module:attribute"):
        runner.run_suites(_toy_backend(), pytest_args=["-n", "2"])


def _toy_backend() -> Backend:
    from tests.toy_backend import GOOD

    return GOOD


def test_list_shows_backends_and_survives_one_that_fails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    registered = {"toy": "tests.toy_backend:GOOD", "gone": "no_such_module_xyz:BACKEND"}

    def load(name: str) -> Backend:
        from agentstores.conformance.backend import load_backend

        return load_backend(registered[name])

    monkeypatch.setattr(cli, "registered_backends", lambda: registered)
    monkeypatch.setattr(cli, "load_backend", load)
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "toy  (tests.toy_backend:GOOD)  toy backend that works" in out
    assert "families: thread_run" in out
    assert "capabilities: none" in out
    assert "gone  (no_such_module_xyz:BACKEND)  cannot load: cannot import" in out


def test_list_names_the_reference_backends(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("json", "sqlite", "redis"):
        assert f"{name}  (agentstores.reference." in out


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"agentstores {__version__}"
    assert cli.main(["check", "--help"]) == 0
    out = capsys.readouterr().out
    assert "module:attr" in out and "exit status" in out and "--requirement" in out


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def test_console_script_reports_usage_errors() -> None:
    result = run_script("check", "no-such-backend")
    assert result.returncode == 2
    assert "agentstores: error: unknown backend 'no-such-backend'" in result.stderr


def test_console_script_checks_a_backend_named_from_the_current_directory(
    tmp_path: Path,
) -> None:
    # tests.memory_thread_run is importable only because the command adds the current directory.
    json_path = tmp_path / "r.json"
    result = run_script(
        "check",
        "tests.memory_thread_run:MEMORY",
        "--family",
        "thread_run",
        "--report",
        str(json_path),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(json_path.read_text())
    assert report["verdict"] == "pass"
    assert report["backend"]["name"] == "memory"
