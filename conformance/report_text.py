"""The report as text: a plain table for the terminal and Markdown for a README."""

from __future__ import annotations

from collections.abc import Sequence

# report.py imports this module lazily (in Report.to_table / to_markdown): no import cycle.
from .report import ItemResult, Report, Status, Verdict

__all__ = ["headline", "render_markdown", "render_table"]


def headline(report: Report) -> str:
    """One line: the backend, its capabilities, the profile and the verdict."""
    backend = "unknown backend"
    if report.backend is not None:
        capabilities = ", ".join(report.backend.capabilities) or "none"
        backend = f"backend {report.backend.name} (capabilities: {capabilities})"
    return f"{backend}, profile {report.profile.value}: {report.verdict.value.upper()}"


def render_table(report: Report, *, width: int = 100) -> str:
    """A plain-text table for the terminal, with the failures and how to replay them."""
    rows: list[tuple[str, str, str, str, str]] = []
    for fam in report.families:
        rows.append((fam.family.value, "", fam.status.value, fam.counts.describe(), ""))
        for req in fam.requirements:
            rows.append(("", req.id, req.status.value, req.counts.describe(), req.title))
    header = ("family", "requirement", "status", "tests", "")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = [f"agentstores conformance report: {headline(report)}", ""]
    for row in [header, *rows]:
        cells = [row[i].ljust(widths[i]) for i in range(4)]
        line = "  ".join(cells)
        room = width - len(line) - 2
        if row[4] and room > 10:
            title = row[4] if len(row[4]) <= room else row[4][: room - 3] + "..."
            line += "  " + title
        lines.append(line.rstrip())
    lines.append("")
    lines += _capability_table(report)
    lines.append("")
    lines.append(f"tests: {report.counts.describe()}")
    if report.requirement_filter:
        lines.append(f"restricted to requirements: {', '.join(report.requirement_filter)}")
    failures = report.failures()
    if failures:
        lines += ["", "failures:"]
        for failure in failures:
            cited = _cited(report.tests, failure.nodeid)
            label = f" [{', '.join(cited)}]" if cited else ""
            lines.append(f"  {failure.outcome.value.upper()} {failure.nodeid}{label}")
            lines += [f"      {line}" for line in failure.message.splitlines()[:6]]
            for repro in failure.reproductions:
                lines += [f"      {line}" for line in repro.example.splitlines()]
                if repro.decorator:
                    lines.append(f"      {repro.decorator}")
    if report.verdict is Verdict.EMPTY:
        lines += ["", "nothing ran: no suite test passed or failed (see the statuses above)"]
    return "\n".join(lines) + "\n"


def render_markdown(report: Report) -> str:
    """A Markdown summary for a README: a table per family, then the failures."""
    lines = ["## agentstores conformance", "", f"**{headline(report)}**", ""]
    if report.backend is not None and report.backend.description:
        lines += [report.backend.description, ""]
    lines += [
        f"Tests: {report.counts.describe()}. Made {report.created_at} by agentstores "
        f"{report.agentstores_version}.",
        "",
    ]
    lines += ["### Capabilities", "", "| Capability | Status | Tests |", "|---|---|---|"]
    for cap in report.capabilities:
        status = f"**{cap.status.value}**" if cap.status is Status.FAILED else cap.status
        lines.append(f"| {cap.capability.value} | {status} | {cap.counts.describe()} |")
    lines.append("")
    for fam in report.families:
        lines += [f"### {fam.family.value}: {fam.status.value}", ""]
        lines += ["| Requirement | Status | Tests | Description |", "|---|---|---|---|"]
        for req in fam.requirements:
            status = f"**{req.status.value}**" if req.status is Status.FAILED else req.status
            title = _md_cell(req.title)
            lines.append(f"| {req.id} | {status} | {req.counts.describe()} | {title} |")
        lines.append("")
    failures = report.failures()
    if failures:
        lines += ["### Failures", ""]
        for failure in failures:
            lines += [f"- `{failure.nodeid}` ({failure.outcome.value})", "", "  ```text"]
            body = failure.message.splitlines()
            for repro in failure.reproductions:
                body += repro.example.splitlines()
                if repro.decorator:
                    body.append(repro.decorator)
            lines += [f"  {line.replace('```', '` ` `')}" for line in body]
            lines += ["  ```", ""]
    return "\n".join(lines).rstrip() + "\n"


def _capability_table(report: Report) -> list[str]:
    """One line per capability: claimed and passed, failed or not run; or not claimed."""
    rows = [(c.capability.value, c.status.value, c.counts.describe()) for c in report.capabilities]
    header = ("capability", "status", "tests")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(2)]
    return [
        f"{row[0].ljust(widths[0])}  {row[1].ljust(widths[1])}  {row[2]}".rstrip()
        for row in [header, *rows]
    ]


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _cited(tests: Sequence[ItemResult], nodeid: str) -> tuple[str, ...]:
    for test in tests:
        if test.nodeid == nodeid:
            return test.requirements
    return ()
