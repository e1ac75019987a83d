"""Conformance reports: what passed, failed or was not claimed, per family and requirement, and
per capability (each fault class, such as ``crash_safe`` or ``engine_faults``, is one).

A :class:`Report` is built from the outcomes of the suite tests (by
:class:`~agentstores.conformance.collector.ReportCollector`, a pytest plugin object), prints as
a terminal table, and is written as versioned JSON or as Markdown for a README.

The requirement list of each family comes from its spec document (``spec/<family>.md``, read by
:mod:`agentstores.conformance.spec_docs`), so a requirement that no test verifies shows up as
"not run" instead of silently disappearing.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from .backend import Backend, Capability, Family
from .markers import NOT_CLAIMED_PREFIX
from .profiles import Profile
from .spec_docs import (
    all_requirements,
    general_requirements,
    parse_requirements,
    requirement_sort_key,
    spec_requirements,
)

__all__ = [
    "REPORT_FORMAT",
    "REPORT_VERSION",
    "UNTAGGED",
    "BackendInfo",
    "CapabilityResult",
    "Counts",
    "Failure",
    "FamilyResult",
    "ItemResult",
    "Outcome",
    "Report",
    "ReportFormatError",
    "Reproduction",
    "RequirementResult",
    "Status",
    "Verdict",
    "all_requirements",
    "general_requirements",
    "parse_requirements",
    "spec_requirements",
]

REPORT_FORMAT = "agentstores-report"
REPORT_VERSION = 1
#: The pseudo requirement under which tests that cite no requirement ID are listed.
UNTAGGED = "untagged"


# --- the report ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reproduction:
    """How to replay a hypothesis failure.

    Attributes:
        example: the falsifying example hypothesis printed (a call, or state-machine steps).
        decorator: the ``@reproduce_failure(...)`` line, when hypothesis printed one.
    """

    example: str
    decorator: str | None = None


class Outcome(StrEnum):
    """How one test ended (a setup or teardown error is ``error`` and counts as a failure)."""

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"
    ERROR = "error"


class Status(StrEnum):
    """Where a requirement or family stands."""

    PASSED = "passed"
    """At least one of its tests ran and none failed."""
    FAILED = "failed"
    """At least one of its tests failed (or errored)."""
    NOT_CLAIMED = "not claimed"
    """All its tests were skipped because the backend does not claim the family or capability."""
    NOT_RUN = "not run"
    """No test of it ran: deselected, skipped for another reason, or no test exists."""


class Verdict(StrEnum):
    """The outcome of a whole run."""

    PASS = "pass"
    """Everything that ran passed, and something ran."""
    FAIL = "fail"
    """A test failed or errored, a suite could not be collected, or the run was interrupted."""
    EMPTY = "empty"
    """Nothing ran (everything skipped, deselected or missing)."""


class ReportFormatError(ValueError):
    """A document is not an agentstores report of a format and version this kit reads."""


@dataclass(frozen=True)
class ItemResult:
    """One suite test's outcome.

    Attributes:
        nodeid: the pytest node id.
        family: the family of its suite.
        requirements: the requirement IDs it cites.
        capabilities: the capabilities it needs.
        outcome: how it ended.
        skip_reason: why it was skipped (starts with ``"not claimed: "`` when not claimed).
        message: an excerpt of the failure message.
        reproductions: hypothesis reproduction data of a failure.
        backend: the name of the backend it ran on, if known.
    """

    nodeid: str
    family: Family
    requirements: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()
    outcome: Outcome = Outcome.PASSED
    skip_reason: str | None = None
    message: str | None = None
    reproductions: tuple[Reproduction, ...] = ()
    backend: str | None = None

    @property
    def failed(self) -> bool:
        """Whether the test failed or errored."""
        return self.outcome in (Outcome.FAILED, Outcome.ERROR)

    @property
    def not_claimed(self) -> bool:
        """Whether the test was skipped because the backend does not claim what it needs."""
        return self.outcome is Outcome.SKIPPED and (self.skip_reason or "").startswith(
            NOT_CLAIMED_PREFIX
        )


@dataclass(frozen=True)
class Failure:
    """A failing test (or a suite that could not be collected) with what is needed to replay it."""

    nodeid: str
    outcome: Outcome
    message: str
    reproductions: tuple[Reproduction, ...] = ()


@dataclass(frozen=True)
class Counts:
    """Test counts; ``failed`` includes errors, ``skipped`` excludes "not claimed" skips."""

    passed: int = 0
    failed: int = 0
    not_claimed: int = 0
    skipped: int = 0

    @property
    def total(self) -> int:
        """All tests counted."""
        return self.passed + self.failed + self.not_claimed + self.skipped

    @classmethod
    def of(cls, items: Iterable[ItemResult]) -> Counts:
        """Count ``items`` by outcome."""
        passed = failed = not_claimed = skipped = 0
        for item in items:
            if item.failed:
                failed += 1
            elif item.outcome is Outcome.PASSED:
                passed += 1
            elif item.not_claimed:
                not_claimed += 1
            else:
                skipped += 1
        return cls(passed, failed, not_claimed, skipped)

    def status(self) -> Status:
        """The status of a requirement (or family) with these counts."""
        if self.failed:
            return Status.FAILED
        if self.passed:
            return Status.PASSED
        if self.not_claimed and not self.skipped:
            return Status.NOT_CLAIMED
        return Status.NOT_RUN

    def describe(self) -> str:
        """E.g. ``"3 passed, 1 failed"``; ``"no tests"`` when empty."""
        parts = [
            f"{n} {label}"
            for n, label in (
                (self.passed, "passed"),
                (self.failed, "failed"),
                (self.not_claimed, "not claimed"),
                (self.skipped, "skipped"),
            )
            if n
        ]
        return ", ".join(parts) or "no tests"


@dataclass(frozen=True)
class RequirementResult:
    """One requirement's standing.

    Attributes:
        id: the requirement ID (or :data:`UNTAGGED`).
        title: the first sentence of the requirement in the spec ("" if not documented).
        status: passed / failed / not claimed / not run.
        counts: the counts of the tests citing it.
        failures: the failing tests citing it.
        documented: whether the ID is in the spec documents.
    """

    id: str
    title: str
    status: Status
    counts: Counts
    failures: tuple[Failure, ...] = ()
    documented: bool = True


@dataclass(frozen=True)
class FamilyResult:
    """One family's standing: its status, test counts and requirements in spec order."""

    family: Family
    status: Status
    counts: Counts
    requirements: tuple[RequirementResult, ...]

    def requirement(self, requirement_id: str) -> RequirementResult:
        """The result of ``requirement_id``; KeyError if the family does not list it."""
        for result in self.requirements:
            if result.id == requirement_id:
                return result
        raise KeyError(f"{self.family.value} lists no requirement {requirement_id!r}")


@dataclass(frozen=True)
class CapabilityResult:
    """One capability's standing over the tests that need it.

    Attributes:
        capability: the capability (``crash_safe``, ``engine_faults``...).
        status: passed / failed / not run when the backend claims it; not claimed otherwise.
        counts: the counts of the tests that need it.
    """

    capability: Capability
    status: Status
    counts: Counts


@dataclass(frozen=True)
class BackendInfo:
    """What a report says about the backend under test."""

    name: str
    description: str = ""
    families: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()

    @classmethod
    def of(cls, backend: Backend) -> BackendInfo:
        """The info of ``backend``."""
        return cls(
            backend.name,
            backend.description,
            tuple(sorted(f.value for f in backend.families)),
            tuple(sorted(c.value for c in backend.capabilities)),
        )


def _now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()


def _version() -> str:
    try:
        from agentstores import __version__
    except ImportError:  # pragma: no cover - the distribution always has it
        return "unknown"
    return __version__


@dataclass(frozen=True)
class Report:
    """The result of a conformance run (format ``agentstores-report``, version 1).

    Attributes:
        verdict: pass / fail / empty.
        backend: the backend under test, when known.
        profile: the hypothesis profile of the run.
        families: per family, its status and requirements.
        tests: every suite test's outcome.
        errors: suites that could not be collected, and other run-level failures.
        requirement_filter: the requirement IDs the run was restricted to (empty: all).
        created_at: when the report was made (ISO 8601, UTC).
        agentstores_version: the version of the kit that made it.
    """

    FORMAT: ClassVar[str] = REPORT_FORMAT
    VERSION: ClassVar[int] = REPORT_VERSION

    verdict: Verdict
    backend: BackendInfo | None
    profile: Profile
    families: tuple[FamilyResult, ...]
    tests: tuple[ItemResult, ...] = ()
    errors: tuple[Failure, ...] = ()
    requirement_filter: tuple[str, ...] = ()
    created_at: str = field(default_factory=_now_iso)
    agentstores_version: str = field(default_factory=_version)

    # --- building ----------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        tests: Iterable[ItemResult],
        *,
        profile: Profile,
        backend: BackendInfo | None = None,
        families: Iterable[Family] = (),
        errors: Iterable[Failure] = (),
        requirement_filter: Iterable[str] = (),
        interrupted: bool = False,
    ) -> Report:
        """A report of ``tests``.

        ``families`` are listed even if none of their tests ran (their requirements then show
        as "not run", or "not claimed" when ``backend`` does not implement the family).
        """
        tests = tuple(tests)
        errors = tuple(errors)
        wanted = tuple(dict.fromkeys(requirement_filter))
        listed = list(dict.fromkeys([*families, *(t.family for t in tests)]))
        results = []
        for family in sorted(listed, key=list(Family).index):
            result = _family_result(
                family, [t for t in tests if t.family is family], backend, wanted
            )
            if result.requirements or not wanted:
                results.append(result)
        ran = any(t.outcome is Outcome.PASSED for t in tests)
        if errors or interrupted or any(t.failed for t in tests):
            verdict = Verdict.FAIL
        else:
            verdict = Verdict.PASS if ran else Verdict.EMPTY
        return cls(verdict, backend, profile, tuple(results), tests, errors, wanted)

    # --- queries -----------------------------------------------------------------------------

    @property
    def passed(self) -> bool:
        """Whether the verdict is pass."""
        return self.verdict is Verdict.PASS

    @property
    def counts(self) -> Counts:
        """Counts over every test of the run."""
        return Counts.of(self.tests)

    def family(self, family: Family | str) -> FamilyResult:
        """The result of ``family``; KeyError if the report does not list it."""
        for result in self.families:
            if result.family is Family(family):
                return result
        raise KeyError(f"the report lists no family {family!r}")

    def status_of(self, requirement_id: str) -> Status:
        """A requirement's status over every family citing it (failed wins, then passed)."""
        statuses = {
            r.status for f in self.families for r in f.requirements if r.id == requirement_id
        }
        for status in (Status.FAILED, Status.PASSED, Status.NOT_CLAIMED):
            if status in statuses:
                return status
        return Status.NOT_RUN

    def requirements_with(self, status: Status) -> set[str]:
        """The IDs of the requirements having ``status`` in some family."""
        return {r.id for f in self.families for r in f.requirements if r.status is status}

    def failed_requirements(self) -> set[str]:
        """The IDs of the requirements with a failing test."""
        return self.requirements_with(Status.FAILED)

    def failures(self) -> list[Failure]:
        """Every failing test, and every run-level error."""
        return [*self.errors, *(_failure(t) for t in self.tests if t.failed)]

    @property
    def capabilities(self) -> tuple[CapabilityResult, ...]:
        """Every capability of the kit, in declaration order, with the standing of its tests:
        "not claimed" when the backend does not claim it, else passed, failed or not run."""
        results = []
        for capability in Capability:
            counts = Counts.of(t for t in self.tests if capability.value in t.capabilities)
            unclaimed = (
                self.backend is not None and capability.value not in self.backend.capabilities
            )
            status = Status.NOT_CLAIMED if unclaimed else counts.status()
            results.append(CapabilityResult(capability, status, counts))
        return tuple(results)

    def capability(self, capability: Capability | str) -> CapabilityResult:
        """The result of ``capability``; ValueError if the kit has no such capability."""
        wanted = Capability(capability)
        return next(r for r in self.capabilities if r.capability is wanted)

    # --- JSON --------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of this report, as Python data."""
        return {
            "format": REPORT_FORMAT,
            "version": REPORT_VERSION,
            "verdict": self.verdict.value,
            "created_at": self.created_at,
            "agentstores_version": self.agentstores_version,
            "profile": self.profile.value,
            "requirement_filter": list(self.requirement_filter),
            "backend": None if self.backend is None else _backend_to_dict(self.backend),
            "totals": _counts_to_dict(self.counts),
            "families": [_family_to_dict(f) for f in self.families],
            # Derived from the tests and the backend (from_dict recomputes it), for readers.
            "capabilities": [_capability_to_dict(c) for c in self.capabilities],
            "errors": [_failure_to_dict(e) for e in self.errors],
            "tests": [_item_to_dict(t) for t in self.tests],
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        """The report as a JSON document (see :meth:`from_json`)."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        """Read :meth:`to_dict` output; ReportFormatError for another format or version."""
        if not isinstance(data, Mapping) or data.get("format") != REPORT_FORMAT:
            found = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise ReportFormatError(
                f"not an agentstores report: format is {found!r}, expected {REPORT_FORMAT!r}"
            )
        if data.get("version") != REPORT_VERSION:
            raise ReportFormatError(
                f"agentstores report version {data.get('version')!r} is not supported: this "
                f"agentstores ({_version()}) reads version {REPORT_VERSION}; "
                "read it with the agentstores version that wrote it"
            )
        try:
            backend = data["backend"]
            return cls(
                verdict=Verdict(data["verdict"]),
                backend=None if backend is None else _backend_from_dict(backend),
                profile=Profile(data["profile"]),
                families=tuple(_family_from_dict(f) for f in data["families"]),
                tests=tuple(_item_from_dict(t) for t in data["tests"]),
                errors=tuple(_failure_from_dict(e) for e in data["errors"]),
                requirement_filter=tuple(data["requirement_filter"]),
                created_at=str(data["created_at"]),
                agentstores_version=str(data["agentstores_version"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ReportFormatError(f"malformed agentstores report: {exc!r}") from exc

    @classmethod
    def from_json(cls, text: str | bytes) -> Report:
        """Read a report written by :meth:`to_json`; ReportFormatError if it is not one."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ReportFormatError(f"not an agentstores report: invalid JSON ({exc})") from exc
        return cls.from_dict(data)

    # --- text --------------------------------------------------------------------------------

    def to_table(self, *, width: int = 100) -> str:
        """A plain-text table for the terminal, with the failures and how to replay them."""
        from .report_text import render_table

        return render_table(self, width=width)

    def to_markdown(self) -> str:
        """A Markdown summary for a README: a table per family, then the failures."""
        from .report_text import render_markdown

        return render_markdown(self)


def _failure(item: ItemResult) -> Failure:
    return Failure(item.nodeid, item.outcome, item.message or "", item.reproductions)


def _documented(family: Family) -> dict[str, str]:
    try:
        return spec_requirements(family)
    except FileNotFoundError:
        return {}


def _family_result(
    family: Family,
    tests: Sequence[ItemResult],
    backend: BackendInfo | None,
    wanted: Sequence[str],
) -> FamilyResult:
    documented = _documented(family)
    general = general_requirements()
    known = {**general, **documented}
    cited = {r for t in tests for r in t.requirements}
    # The family's own IDs in document order (only the requested or cited ones in a filtered
    # run), then the general IDs its tests cite, then cited IDs no document has (flagged).
    ids = [r for r in documented if not wanted or r in wanted or r in cited]
    ids += sorted(cited & set(general) - set(ids), key=requirement_sort_key)
    ids += sorted(cited - set(ids), key=requirement_sort_key)
    if any(not t.requirements for t in tests):
        ids.append(UNTAGGED)
    unclaimed = backend is not None and family.value not in backend.families
    requirements = []
    for requirement_id in ids:
        citing = [
            t
            for t in tests
            if (requirement_id in t.requirements)
            or (requirement_id == UNTAGGED and not t.requirements)
        ]
        counts = Counts.of(citing)
        status = Status.NOT_CLAIMED if unclaimed else counts.status()
        title = known.get(requirement_id, "")
        if requirement_id == UNTAGGED:
            title = "tests that cite no requirement ID"
        requirements.append(
            RequirementResult(
                requirement_id,
                title,
                status,
                counts,
                tuple(_failure(t) for t in citing if t.failed),
                documented=requirement_id in known,
            )
        )
    counts = Counts.of(tests)
    status = Status.NOT_CLAIMED if unclaimed else counts.status()
    return FamilyResult(family, status, counts, tuple(requirements))


# --- JSON conversion --------------------------------------------------------------------------


def _counts_to_dict(counts: Counts) -> dict[str, int]:
    return {
        "passed": counts.passed,
        "failed": counts.failed,
        "not_claimed": counts.not_claimed,
        "skipped": counts.skipped,
    }


def _counts_from_dict(data: Mapping[str, Any]) -> Counts:
    return Counts(
        int(data["passed"]), int(data["failed"]), int(data["not_claimed"]), int(data["skipped"])
    )


def _repro_to_dict(repro: Reproduction) -> dict[str, Any]:
    return {"example": repro.example, "decorator": repro.decorator}


def _repro_from_dict(data: Mapping[str, Any]) -> Reproduction:
    return Reproduction(str(data["example"]), data["decorator"])


def _failure_to_dict(failure: Failure) -> dict[str, Any]:
    return {
        "test": failure.nodeid,
        "outcome": failure.outcome.value,
        "message": failure.message,
        "reproductions": [_repro_to_dict(r) for r in failure.reproductions],
    }


def _failure_from_dict(data: Mapping[str, Any]) -> Failure:
    return Failure(
        str(data["test"]),
        Outcome(data["outcome"]),
        str(data["message"]),
        tuple(_repro_from_dict(r) for r in data["reproductions"]),
    )


def _requirement_to_dict(result: RequirementResult) -> dict[str, Any]:
    return {
        "id": result.id,
        "title": result.title,
        "status": result.status.value,
        "documented": result.documented,
        "counts": _counts_to_dict(result.counts),
        "failures": [_failure_to_dict(f) for f in result.failures],
    }


def _requirement_from_dict(data: Mapping[str, Any]) -> RequirementResult:
    return RequirementResult(
        str(data["id"]),
        str(data["title"]),
        Status(data["status"]),
        _counts_from_dict(data["counts"]),
        tuple(_failure_from_dict(f) for f in data["failures"]),
        bool(data["documented"]),
    )


def _family_to_dict(result: FamilyResult) -> dict[str, Any]:
    return {
        "family": result.family.value,
        "status": result.status.value,
        "counts": _counts_to_dict(result.counts),
        "requirements": [_requirement_to_dict(r) for r in result.requirements],
    }


def _family_from_dict(data: Mapping[str, Any]) -> FamilyResult:
    return FamilyResult(
        Family(data["family"]),
        Status(data["status"]),
        _counts_from_dict(data["counts"]),
        tuple(_requirement_from_dict(r) for r in data["requirements"]),
    )


def _capability_to_dict(result: CapabilityResult) -> dict[str, Any]:
    return {
        "capability": result.capability.value,
        "status": result.status.value,
        "counts": _counts_to_dict(result.counts),
    }


def _backend_to_dict(info: BackendInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "description": info.description,
        "families": list(info.families),
        "capabilities": list(info.capabilities),
    }


def _backend_from_dict(data: Mapping[str, Any]) -> BackendInfo:
    return BackendInfo(
        str(data["name"]),
        str(data.get("description", "")),
        tuple(data["families"]),
        tuple(data["capabilities"]),
    )


def _item_to_dict(item: ItemResult) -> dict[str, Any]:
    return {
        "test": item.nodeid,
        "family": item.family.value,
        "requirements": list(item.requirements),
        "capabilities": list(item.capabilities),
        "outcome": item.outcome.value,
        "skip_reason": item.skip_reason,
        "message": item.message,
        "reproductions": [_repro_to_dict(r) for r in item.reproductions],
        "backend": item.backend,
    }


def _item_from_dict(data: Mapping[str, Any]) -> ItemResult:
    return ItemResult(
        nodeid=str(data["test"]),
        family=Family(data["family"]),
        requirements=tuple(data["requirements"]),
        capabilities=tuple(data["capabilities"]),
        outcome=Outcome(data["outcome"]),
        skip_reason=data["skip_reason"],
        message=data["message"],
        reproductions=tuple(_repro_from_dict(r) for r in data["reproductions"]),
        backend=data["backend"],
    )
