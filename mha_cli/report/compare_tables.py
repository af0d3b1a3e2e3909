"""`mha compare` as tables: the rows of a comparison, its notes, for the terminal and Markdown."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..compare import Comparison, Row, Threshold
from ..errors import ExitCode
from ..memory import format_bytes
from .markdown import markdown_table
from .rows import format_seconds

HEADERS = ["point", "impl", "metric", "base", "current", "change (90% interval)", "verdict", "note"]
VERDICT_COLUMN = HEADERS.index("verdict")
_VERDICT_STYLE = {"REGRESSION": "bold red", "UNDECIDED": "bold red", "FAIL": "bold red", "MISSING": "bold red",
                  "faster": "green", "slower within noise": "yellow"}


def _format(metric: str, value: float | None, relative: bool = False) -> str:
    if value is None:
        return "-"
    if metric == "median":
        return f"{value:.3f}x" if relative else format_seconds(value)
    return format_bytes(value)


def _change(row: Row) -> str:
    if row.change is None:
        return "-"
    text = f"{100 * row.change:+.1f}%"
    return text + (f" ({100 * row.interval[0]:+.1f}..{100 * row.interval[1]:+.1f})" if row.interval else "")


def _note(row: Row) -> str:
    return "; ".join(part for part in (row.note, "busy: measured while other processes used the CPUs" if row.busy else "")
                     if part)


def _point(params: dict) -> str:  # type: ignore[type-arg]
    return " ".join(f"{k}={v}" for k, v in params.items()) or "-"


def comparison_rows(comparison: Comparison) -> list[list[str]]:
    relative = comparison.relative_to is not None
    return [
        [_point(row.params), row.impl, row.metric + (f" / {comparison.relative_to}" if relative and row.metric == "median" else ""),
         _format(row.metric, row.base, relative), _format(row.metric, row.current, relative), _change(row), row.verdict,
         _note(row)]
        for row in comparison.rows
    ]


def comparison_notes(comparison: Comparison, thresholds: list[Threshold]) -> list[str]:
    lines = [f"only in BASE: {_point(params)} {impl}" for params, impl in comparison.only_in_base]
    lines += [f"only in CURRENT: {_point(params)} {impl}" for params, impl in comparison.only_in_current]
    gates = ", ".join(map(str, thresholds))
    if comparison.missing:
        allowed = " (allowed by --allow-missing)" if comparison.allow_missing else "; pass --allow-missing if that is expected"
        lines.append(f"MISSING: {len(comparison.missing)} result(s) measured in BASE have no measurement in CURRENT{allowed}")
    if comparison.failures:
        lines.append(f"FAIL: {len(comparison.failures)} result(s) in CURRENT failed the correctness check, crashed or timed out (exit 1)")
    if comparison.busy:
        lines.append(f"busy: {len(comparison.busy)} result(s) were measured while other processes used a noticeable "
                     "share of the CPUs; their times are not to be trusted")
    undecided = [r for r in comparison.rows if r.verdict == "UNDECIDED"]
    if undecided:
        lines.append(f"UNDECIDED: {len(undecided)} slowdown(s) beyond the threshold that too few repetitions cannot tell "
                     "from noise; they fail the gate (exit 3) until measured with timing.repetitions of 4 or more")
    code = comparison.exit_code
    if code == ExitCode.FAILED and not comparison.failures:
        lines.append("FAIL: CURRENT is missing results BASE measured (exit 1)")
    elif code == ExitCode.REGRESSION:
        shown = len(comparison.regressions) - len(undecided)  # the undecided ones have their own line above
        if shown:
            lines.append(f"REGRESSION: {shown} point(s) beyond {gates} and the noise (exit 3)")
    elif code == ExitCode.OK:
        lines.append(f"OK: no regression beyond {gates} and the noise")
    return lines


def comparison_markdown(comparison: Comparison, thresholds: list[Threshold]) -> str:
    lines = [f"## mha compare: {comparison.base} -> {comparison.current}", "",
             markdown_table(HEADERS, comparison_rows(comparison)), ""]
    lines += [f"- {line}" for line in comparison_notes(comparison, thresholds)]
    return "\n".join(lines)


def print_comparison(console: Console, comparison: Comparison, thresholds: list[Threshold]) -> None:
    table = Table(title=escape(f"{comparison.base} -> {comparison.current}"), title_justify="left", header_style="bold")
    for header in HEADERS:
        table.add_column(header)
    for row in comparison_rows(comparison):
        cells = [escape(cell) for cell in row]
        style = _VERDICT_STYLE.get(row[VERDICT_COLUMN])
        if style:
            cells[VERDICT_COLUMN] = f"[{style}]{cells[VERDICT_COLUMN]}[/]"
        table.add_row(*cells)
    console.print(table)
    for line in comparison_notes(comparison, thresholds):
        console.print(escape(line), highlight=False)
