"""report.md: the run as Markdown tables, fit for a CI job summary."""

from __future__ import annotations

from ..results import RunReport
from .rows import SHAPE_HEADERS, notes, result_table, shape_rows, summary_line, verdict


def _escape(cell: str) -> str:
    return cell.replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_escape(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def run_markdown(report: RunReport) -> str:
    env = report.env
    parts = [
        f"# mha run: {report.config['name']}",
        "",
        summary_line(report),
        "",
        f"Created {report.created} by mha {report.mha_version} (commit {env.get('commit') or 'unknown'}) "
        f"on {env['cpu']}, Python {env['python']}.",
        "",
        "## Shapes",
        "",
        markdown_table(SHAPE_HEADERS, shape_rows(report)),
        "",
        "## Timing and agreement",
        "",
        markdown_table(*result_table(report.results)),
        "",
        f"**{verdict(report)}**",
    ]
    extra = notes(report.results)
    if extra:
        parts += ["", *[f"- {line}" for line in extra]]
    return "\n".join(parts) + "\n"
