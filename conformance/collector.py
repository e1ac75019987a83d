"""The pytest plugin object that records suite tests and builds the :class:`Report`.

It reads the family, requirement IDs, capabilities and backend that the kit's plugin attaches
to each test as ``user_properties``; those travel with xdist's reports, so collecting works the
same with ``-n``. Failures keep a message excerpt and hypothesis's reproduction data.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from .backend import Backend, Family
from .plugin import (
    BACKEND_PROPERTY,
    CAPABILITIES_PROPERTY,
    FAMILY_PROPERTY,
    REQUIREMENTS_PROPERTY,
    configured_backend,
)
from .profiles import Profile, default_profile
from .report import BackendInfo, Failure, ItemResult, Outcome, Report, Reproduction

__all__ = ["MESSAGE_LIMIT", "ReportCollector", "extract_reproductions"]

#: How much of a failure's message a report keeps.
MESSAGE_LIMIT = 600

# --- hypothesis reproduction data ---------------------------------------------------------------

_EXAMPLE_START = re.compile(
    r"^(Falsifying(?: explicit)? example|Failing test case|Falsifying example \(.*?\)):"
)
_REPRODUCE = re.compile(r"@reproduce_failure\(.*?\)")
_ERROR_PREFIX = re.compile(r"^E(?: {1,7}|$)")


def extract_reproductions(text: str) -> tuple[Reproduction, ...]:
    """The hypothesis falsifying examples and ``@reproduce_failure`` lines found in ``text``.

    ``text`` is a failure's report text (pytest's ``E``-prefixed lines are understood).
    """
    lines = [_ERROR_PREFIX.sub("", line) for line in text.splitlines()]
    found: list[Reproduction] = []
    index = 0
    while index < len(lines):
        match = _EXAMPLE_START.match(lines[index].strip())
        if not match:
            index += 1
            continue
        block = [lines[index].strip()]
        index += 1
        while index < len(lines) and lines[index].strip():
            if _EXAMPLE_START.match(lines[index].strip()) or lines[index].startswith(
                ("Explanation:", "You can reproduce")
            ):
                break
            block.append(lines[index].rstrip())
            index += 1
        decorator = None
        # The blob line follows the example, after a blank line or an explanation.
        for look in range(index, min(index + 12, len(lines))):
            if _EXAMPLE_START.match(lines[look].strip()):
                break  # the next failure's example: this one printed no blob
            blob = _REPRODUCE.search(lines[look])
            if blob:
                decorator = blob.group(0)
                index = look + 1
                break
        found.append(Reproduction("\n".join(block), decorator))
    if not found:
        blobs = {m.group(0) for m in _REPRODUCE.finditer(text)}
        found.extend(Reproduction("", blob) for blob in sorted(blobs))
    return tuple(dict.fromkeys(found))


def _excerpt(message: str) -> str:
    """The start of a failure message, without hypothesis's reproduction notes."""
    lines = message.splitlines()
    kept: list[str] = []
    for line in lines:
        if _EXAMPLE_START.match(line.strip()) or "@reproduce_failure(" in line:
            break
        kept.append(line)
    text = "\n".join(kept).strip() or message.strip()
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 3] + "..."


# --- the collector ----------------------------------------------------------------------------


def _split(value: object) -> tuple[str, ...]:
    return tuple(part for part in str(value or "").split(",") if part)


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        reason = str(longrepr[2])
    else:
        reason = str(getattr(report, "wasxfail", "") or longrepr or "")
        if hasattr(report, "wasxfail"):
            reason = f"xfail: {reason}"
    return reason.removeprefix("Skipped: ")


def _failure_text(report: pytest.TestReport | pytest.CollectReport) -> tuple[str, str]:
    """(the crash message, the whole report text) of a failed report."""
    crash = getattr(report.longrepr, "reprcrash", None)
    full = report.longreprtext
    message = str(getattr(crash, "message", "") or "") if crash is not None else ""
    if not message:
        errors = [line[1:].strip() for line in full.splitlines() if line.startswith("E ")]
        message = "\n".join(errors) or full.strip()[-MESSAGE_LIMIT:]
    return message, full


@dataclass
class _Pending:
    nodeid: str
    family: Family
    requirements: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()
    outcome: Outcome = Outcome.PASSED
    skip_reason: str | None = None
    message: str | None = None
    reproductions: tuple[Reproduction, ...] = ()
    backend: BackendInfo | None = None

    def result(self) -> ItemResult:
        return ItemResult(
            self.nodeid,
            self.family,
            self.requirements,
            self.capabilities,
            self.outcome,
            self.skip_reason,
            self.message,
            self.reproductions,
            None if self.backend is None else self.backend.name,
        )


class ReportCollector:
    """A pytest plugin object that records suite tests and writes a :class:`Report` at the end.

    Register it with ``pytest.main(args, plugins=[collector])``, or let the kit's plugin do it
    for ``--agentstores-report`` / ``--agentstores-markdown``. After the session,
    :attr:`report` holds the report. Tests outside the suites (no family) are not recorded.

    Args:
        json_path: where to write the JSON report, if anywhere.
        markdown_path: where to write the Markdown report, if anywhere.
        profile: the hypothesis profile of the run (default: the default profile).
        backend: the backend under test; default: the one the plugin loaded, else the one the
            tests report.
        families: families to list even if none of their tests ran.
        requirements: the requirement IDs the run is restricted to, if any.
    """

    def __init__(
        self,
        json_path: Path | str | None = None,
        markdown_path: Path | str | None = None,
        profile: Profile | None = None,
        *,
        backend: Backend | None = None,
        families: Iterable[Family] = (),
        requirements: Iterable[str] = (),
    ) -> None:
        self.json_path = Path(json_path) if json_path is not None else None
        self.markdown_path = Path(markdown_path) if markdown_path is not None else None
        self.profile = profile if profile is not None else default_profile()
        self.backend = backend
        self.families = tuple(families)
        self.requirements = tuple(requirements)
        self.report: Report | None = None
        self._pending: dict[str, _Pending] = {}
        self._errors: list[Failure] = []
        self._config: pytest.Config | None = None

    def pytest_configure(self, config: pytest.Config) -> None:
        self._config = config

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            message, full = _failure_text(report)
            self._errors.append(
                Failure(report.nodeid or "<collection>", Outcome.ERROR, _excerpt(message or full))
            )

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        properties = {str(k): v for k, v in report.user_properties}
        pending = self._pending.get(report.nodeid)
        try:
            family = Family(str(properties.get(FAMILY_PROPERTY)))
        except ValueError:
            if pending is not None:
                family = pending.family
            else:
                # Not a suite test, or a test whose xdist worker crashed: such a report has no
                # properties and the phase "???". A crash must never pass unreported.
                if report.failed and report.when not in ("setup", "call", "teardown"):
                    message, full = _failure_text(report)
                    failure = Failure(report.nodeid, Outcome.ERROR, _excerpt(message or full))
                    self._errors.append(failure)
                return
        if pending is None:
            pending = self._pending[report.nodeid] = _Pending(report.nodeid, family)
        if REQUIREMENTS_PROPERTY in properties:
            pending.requirements = _split(properties[REQUIREMENTS_PROPERTY])
        if CAPABILITIES_PROPERTY in properties:
            pending.capabilities = _split(properties[CAPABILITIES_PROPERTY])
        if BACKEND_PROPERTY in properties and pending.backend is None:
            pending.backend = _backend_info_from_property(properties[BACKEND_PROPERTY])
        if report.skipped:
            if pending.outcome is Outcome.PASSED:
                pending.outcome = Outcome.SKIPPED
                pending.skip_reason = _skip_reason(report)
        elif report.failed:
            # A failing setup or teardown is an error; the call's own failure wins over it.
            outcome = Outcome.FAILED if report.when == "call" else Outcome.ERROR
            if pending.outcome not in (Outcome.FAILED, Outcome.ERROR):
                message, full = _failure_text(report)
                pending.outcome = outcome
                pending.message = _excerpt(message)
                pending.reproductions = extract_reproductions(message) or extract_reproductions(
                    full
                )

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        self.report = self.build(interrupted=exitstatus == pytest.ExitCode.INTERRUPTED)
        if self.json_path is not None:
            self.json_path.parent.mkdir(parents=True, exist_ok=True)
            self.json_path.write_text(self.report.to_json(), encoding="utf-8")
        if self.markdown_path is not None:
            self.markdown_path.parent.mkdir(parents=True, exist_ok=True)
            self.markdown_path.write_text(self.report.to_markdown(), encoding="utf-8")

    def build(self, *, interrupted: bool = False) -> Report:
        """The report of what was recorded so far."""
        results = [p.result() for p in self._pending.values()]
        return Report.build(
            results,
            profile=self.profile,
            backend=self._backend_info(),
            families=self.families,
            errors=self._errors,
            requirement_filter=self.requirements,
            # Collection errors also interrupt a session; they are reported as errors already.
            interrupted=interrupted and not self._errors,
        )

    def _backend_info(self) -> BackendInfo | None:
        if self.backend is not None:
            return BackendInfo.of(self.backend)
        if self._config is not None:
            backend = configured_backend(self._config)
            if backend is not None:
                return BackendInfo.of(backend)
        seen = {p.backend.name: p.backend for p in self._pending.values() if p.backend}
        if len(seen) == 1:
            return next(iter(seen.values()))
        if seen:  # e.g. the reference tests, parametrised over several backends
            return BackendInfo(", ".join(sorted(seen)), "several backends")
        return None


def _backend_info_from_property(value: object) -> BackendInfo | None:
    try:
        data = json.loads(str(value))
        return BackendInfo(
            str(data["name"]),
            str(data.get("description", "")),
            tuple(data["families"]),
            tuple(data["capabilities"]),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
