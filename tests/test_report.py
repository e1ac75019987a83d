"""Reports: requirement IDs from the spec documents, status rules, hypothesis reproduction data,
JSON round trips, Markdown and terminal tables, and the collector inside real pytest runs."""

from __future__ import annotations

import json
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from agentstores.conformance.backend import Capability, Family
from agentstores.conformance.collector import extract_reproductions
from agentstores.conformance.markers import NOT_CLAIMED_PREFIX
from agentstores.conformance.profiles import Profile
from agentstores.conformance.report import (
    REPORT_FORMAT,
    REPORT_VERSION,
    UNTAGGED,
    BackendInfo,
    ItemResult,
    Outcome,
    Report,
    ReportFormatError,
    Reproduction,
    Status,
    Verdict,
    all_requirements,
    general_requirements,
    parse_requirements,
    spec_requirements,
)
from agentstores.conformance.runner import run_suites
from tests.toy_backend import BROKEN, GOOD, TOY_SUITES

TR = Family.THREAD_RUN

# --- requirement IDs from the documents ----------------------------------------------------------


def test_thread_run_requirements_come_from_the_document_in_order() -> None:
    found = spec_requirements(TR)
    assert list(found) == [f"TR-{n}" for n in range(1, 24)]
    assert (
        found["TR-1"] == "`load_thread(id)` returns the stored thread, or `None` if there is none."
    )
    # A bullet continues on indented lines; the first sentence ends at the first full stop.
    assert found["TR-2"] == (
        "`save_thread(thread)` creates the thread or replaces its metadata, exactly as given: "
        "the store stamps no times here."
    )


def test_general_requirements_are_the_g_ids() -> None:
    found = general_requirements()
    assert list(found) == [f"G-{n}" for n in range(1, len(found) + 1)]
    assert len(found) >= 19
    # "e.g." does not end a sentence, nor does a full stop inside a code span.
    assert "e.g." in found["G-12"]
    assert found["G-12"].endswith(".")


def test_all_requirements_cover_general_and_family_documents() -> None:
    found = all_requirements()
    assert {"G-1", "TR-1", "TR-23"} <= set(found)


def test_parse_requirements_rules() -> None:
    doc = textwrap.dedent(
        """\
        # Title

        - **XY-1** First `a. b` sentence, e.g. this. Second sentence.
        - **XY-2** Spans
          two lines. And more.
        Not a continuation.
        - not a requirement
        - **XY-10** No full stop at all
        """
    )
    assert parse_requirements(doc) == {
        "XY-1": "First `a. b` sentence, e.g. this.",
        "XY-2": "Spans two lines.",
        "XY-10": "No full stop at all",
    }


# --- hypothesis reproduction data ----------------------------------------------------------------

HINT = "You can reproduce this test case by temporarily adding {} as a decorator on your test"

# What pytest shows for a failing @given test (E-prefixed lines, a blank "E" line).
PROPERTY_FAILURE = "\n".join(
    [
        ">       assert harness.with_store(body) == value",
        "E       AssertionError",
        "E       Failing test case: check(",
        "E           value=-1,",
        "E       )",
        "E",
        "E       " + HINT.format("@reproduce_failure('6.170.15', b'AEH/')") + " function",
        "",
        "tests/toy_backend.py:80: AssertionError",
    ]
)

# A state machine's failure message, with an explanation before the blob.
MACHINE_FAILURE = "\n".join(
    [
        "assert 7 < 7",
        "Falsifying example:",
        "state = M()",
        "state.add(k=2)",
        "state.add(k=5)",
        "state.teardown()",
        "Explanation:",
        "    These lines were always and only run by failing test cases:",
        "        /x/machine.py:105",
        "",
        HINT.format("@reproduce_failure('6.1.0', b'AABB')") + " function",
    ]
)


def test_extract_reproductions_of_a_property_failure() -> None:
    assert extract_reproductions(PROPERTY_FAILURE) == (
        Reproduction(
            "Failing test case: check(\n    value=-1,\n)",
            "@reproduce_failure('6.170.15', b'AEH/')",
        ),
    )


def test_extract_reproductions_of_a_state_machine() -> None:
    (repro,) = extract_reproductions(MACHINE_FAILURE)
    assert repro.example.splitlines() == [
        "Falsifying example:",
        "state = M()",
        "state.add(k=2)",
        "state.add(k=5)",
        "state.teardown()",
    ]
    assert repro.decorator == "@reproduce_failure('6.1.0', b'AABB')"


def test_extract_reproductions_without_hypothesis() -> None:
    assert extract_reproductions("E   assert 1 == 2\nfoo.py:3: AssertionError") == ()


# --- status rules ------------------------------------------------------------------------------


def item(
    name: str,
    *requirements: str,
    outcome: Outcome = Outcome.PASSED,
    reason: str | None = None,
    family: Family = TR,
) -> ItemResult:
    return ItemResult(
        f"t.py::{name}",
        family,
        requirements,
        outcome=outcome,
        skip_reason=reason,
        message="boom" if outcome in (Outcome.FAILED, Outcome.ERROR) else None,
    )


NOT_CLAIMED = NOT_CLAIMED_PREFIX + "durable"


def build(*tests: ItemResult, **kwargs: Any) -> Report:
    return Report.build(tests, profile=Profile.CI, **kwargs)


def test_requirement_status_rules() -> None:
    report = build(
        item("a", "TR-1"),
        item("b", "TR-1", outcome=Outcome.FAILED),
        item("c", "TR-2"),
        item("d", "TR-3", outcome=Outcome.SKIPPED, reason=NOT_CLAIMED),
        item("e", "TR-4", outcome=Outcome.SKIPPED, reason=NOT_CLAIMED),
        item("f", "TR-4", outcome=Outcome.SKIPPED, reason="no redis"),
        item("g", "TR-5", outcome=Outcome.ERROR),
        item("h", "TR-6", "G-2"),
    )
    family = report.family(TR)
    status = {r.id: r.status for r in family.requirements}
    assert status["TR-1"] is Status.FAILED  # one failure among passes fails it
    assert status["TR-2"] is Status.PASSED
    assert status["TR-3"] is Status.NOT_CLAIMED
    assert status["TR-4"] is Status.NOT_RUN  # skipped for another reason, too
    assert status["TR-5"] is Status.FAILED  # a setup error is a failure
    assert status["TR-7"] is Status.NOT_RUN  # documented, no test
    assert status["G-2"] is Status.PASSED  # general IDs the family's tests cite are listed
    assert "G-1" not in status  # ... and only those
    assert family.status is Status.FAILED
    assert report.verdict is Verdict.FAIL
    assert report.failed_requirements() == {"TR-1", "TR-5"}
    assert [f.nodeid for f in family.requirement("TR-1").failures] == ["t.py::b"]
    assert family.requirement("TR-1").counts.describe() == "1 passed, 1 failed"


def test_verdicts() -> None:
    assert build(item("a", "TR-1")).verdict is Verdict.PASS
    skipped = item("a", "TR-1", outcome=Outcome.SKIPPED, reason=NOT_CLAIMED)
    assert build(skipped).verdict is Verdict.EMPTY
    assert build().verdict is Verdict.EMPTY
    assert build(item("a", "TR-1"), interrupted=True).verdict is Verdict.FAIL
    assert build(item("a", "TR-1", outcome=Outcome.ERROR)).verdict is Verdict.FAIL


def test_unimplemented_family_is_not_claimed_and_listed() -> None:
    backend = BackendInfo("x", families=("state_session",))
    report = build(backend=backend, families=[TR])
    family = report.family(TR)
    assert family.status is Status.NOT_CLAIMED
    assert {r.status for r in family.requirements} == {Status.NOT_CLAIMED}
    assert len(family.requirements) == 23


def test_undocumented_and_untagged_tests_are_shown() -> None:
    report = build(item("a", "TR-999", outcome=Outcome.FAILED), item("b"))
    family = report.family(TR)
    assert family.requirement("TR-999").documented is False
    assert family.requirement("TR-999").status is Status.FAILED
    assert family.requirement(UNTAGGED).status is Status.PASSED


def test_requirement_filter_lists_only_the_wanted_and_cited() -> None:
    report = build(item("a", "TR-19", "G-17"), requirement_filter=["TR-19", "TR-20"])
    assert [r.id for r in report.family(TR).requirements] == ["TR-19", "TR-20", "G-17"]
    assert report.family(TR).requirement("TR-20").status is Status.NOT_RUN


# --- formats -----------------------------------------------------------------------------------


def sample_report() -> Report:
    failing = ItemResult(
        "t.py::T::test_values",
        TR,
        ("TR-2", "G-4"),
        outcome=Outcome.FAILED,
        message="AssertionError",
        reproductions=extract_reproductions(PROPERTY_FAILURE),
        backend="toy",
    )
    return build(
        item("a", "TR-1"),
        failing,
        item("c", "TR-23", outcome=Outcome.SKIPPED, reason=NOT_CLAIMED),
        backend=BackendInfo("toy", "a toy", ("thread_run",), ("durable",)),
    )


def test_json_round_trips_and_is_versioned() -> None:
    report = sample_report()
    text = report.to_json()
    data = json.loads(text)
    assert data["format"] == REPORT_FORMAT == "agentstores-report"
    assert data["version"] == REPORT_VERSION == 1
    assert data["verdict"] == "fail"
    assert data["backend"]["capabilities"] == ["durable"]
    (family,) = data["families"]
    tr2 = next(r for r in family["requirements"] if r["id"] == "TR-2")
    assert tr2["status"] == "failed"
    assert tr2["failures"][0]["reproductions"][0]["decorator"].startswith("@reproduce_failure(")
    assert Report.from_json(text) == report


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": 2}, "version 2 is not supported"),
        ({"format": "junit"}, "not an agentstores report"),
        ({"families": "oops"}, "malformed"),
    ],
)
def test_from_json_rejects_other_documents(change: dict[str, object], message: str) -> None:
    data = sample_report().to_dict()
    data.update(change)
    with pytest.raises(ReportFormatError, match=message):
        Report.from_json(json.dumps(data))


def test_from_json_rejects_non_json() -> None:
    with pytest.raises(ReportFormatError, match="invalid JSON"):
        Report.from_json("{")


def test_markdown_has_a_table_per_family_and_the_failures() -> None:
    markdown = sample_report().to_markdown()
    assert "### thread_run: failed" in markdown
    assert "| Requirement | Status | Tests | Description |" in markdown
    assert "| TR-1 | passed | 1 passed | `load_thread(id)` returns" in markdown
    assert "| TR-2 | **failed** | 1 failed |" in markdown
    assert "| TR-23 | not claimed | 1 not claimed |" in markdown
    assert "| TR-5 | not run | no tests |" in markdown
    assert "@reproduce_failure('6.170.15', b'AEH/')" in markdown


def test_table_names_failures_and_how_to_replay_them() -> None:
    table = sample_report().to_table(width=120)
    assert "backend toy (capabilities: durable), profile ci: FAIL" in table
    lines = table.splitlines()
    assert any(line.split()[:3] == ["TR-2", "failed", "1"] for line in lines)
    assert "FAILED t.py::T::test_values [TR-2, G-4]" in table
    assert "value=-1," in table
    assert "@reproduce_failure('6.170.15', b'AEH/')" in table


def test_each_capability_has_its_own_line() -> None:
    """Each fault class is a capability of its own: passed, failed, not run or not claimed."""

    def needing(name: str, capability: Capability, **kwargs: Any) -> ItemResult:
        return replace(item(name, "G-11", **kwargs), capabilities=(capability.value,))

    report = build(
        needing("a", Capability.CRASH_SAFE),
        needing("b", Capability.ENGINE_FAULTS, outcome=Outcome.FAILED),
        needing("c", Capability.ENGINE_FAULTS),
        needing("d", Capability.MULTI_PROCESS, outcome=Outcome.SKIPPED, reason=NOT_CLAIMED),
        backend=BackendInfo("toy", "", ("thread_run",), ("crash_safe", "durable", "engine_faults")),
    )
    status = {c.capability.value: c.status for c in report.capabilities}
    assert status == {
        "durable": Status.NOT_RUN,
        "multi_process": Status.NOT_CLAIMED,
        "crash_safe": Status.PASSED,
        "ttl": Status.NOT_CLAIMED,
        "semantic_search": Status.NOT_CLAIMED,
        "cluster": Status.NOT_CLAIMED,
        "engine_faults": Status.FAILED,
    }
    assert report.capability("engine_faults").counts.describe() == "1 passed, 1 failed"
    lines = report.to_table().splitlines()
    assert any(line.split()[:4] == ["engine_faults", "failed", "1", "passed,"] for line in lines)
    assert any(line.split()[:3] == ["multi_process", "not", "claimed"] for line in lines)
    assert "| engine_faults | **failed** | 1 passed, 1 failed |" in report.to_markdown()
    listed = {c["capability"]: c["status"] for c in report.to_dict()["capabilities"]}
    assert listed["crash_safe"] == "passed" and listed["engine_faults"] == "failed"
    data = report.to_dict()
    assert Report.from_dict(data) == report


# --- the collector in real runs ----------------------------------------------------------------


def test_runner_report_of_a_broken_backend_has_its_repro() -> None:
    report = run_suites(BROKEN, families=[TR], profile="ci", suites=TOY_SUITES)
    assert report.verdict is Verdict.FAIL
    assert report.failed_requirements() == {"TR-2", "G-4"}
    assert report.status_of("TR-1") is Status.PASSED
    assert report.status_of("TR-23") is Status.NOT_CLAIMED
    (failure,) = report.family(TR).requirement("TR-2").failures
    assert failure.nodeid.endswith("::TestThreadRun::test_values_round_trip")
    (repro,) = failure.reproductions
    assert "value=" in repro.example
    assert repro.decorator is not None and repro.decorator.startswith("@reproduce_failure(")
    assert report.backend is not None and report.backend.name == "toy-broken"
    assert report.profile is Profile.CI


def test_collector_works_under_xdist() -> None:
    # user_properties travel from the workers with each report; the backend is named as
    # module:attr so that each worker can load it.
    report = run_suites(
        "tests.toy_backend:BROKEN", families=[TR], suites=TOY_SUITES, pytest_args=["-n", "2"]
    )
    assert report.failed_requirements() == {"TR-2", "G-4"}
    assert report.counts.total == 3
    (failure,) = report.family(TR).requirement("G-4").failures
    assert failure.reproductions


def test_plugin_writes_reports_for_a_suite_subclass(tmp_path: Path) -> None:
    """The library way: a suite subclass with its own fixture, plus --agentstores-report."""
    module = tmp_path / "test_mine.py"
    module.write_text(
        textwrap.dedent(
            """\
            import pytest
            from tests.toy_backend import GOOD, ToySuite

            class TestMine(ToySuite):
                @pytest.fixture
                def backend(self):
                    return GOOD
            """
        )
    )
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    json_path, md_path = tmp_path / "out" / "r.json", tmp_path / "r.md"
    code = pytest.main(
        [
            str(module),
            "-q",
            "-p",
            "no:cacheprovider",
            "--import-mode=importlib",
            "--rootdir",
            str(tmp_path),
            "-c",
            str(tmp_path / "pytest.ini"),
            f"--agentstores-report={json_path}",
            f"--agentstores-markdown={md_path}",
        ]
    )
    assert code == 0
    report = Report.from_json(json_path.read_text())
    assert report.verdict is Verdict.PASS
    assert report.backend == BackendInfo.of(GOOD)  # learnt from the tests' user_properties
    assert report.status_of("TR-1") is Status.PASSED
    assert "| TR-1 | passed |" in md_path.read_text()
