"""Rich tables for the terminal. All user-provided text is escaped before it meets Rich markup."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..results import RunReport
from .rows import SHAPE_HEADERS, notes, result_table, shape_rows, summary_line, verdict

_STATUS_STYLE = {"ok": "green", "FAIL": "bold red", "error": "bold red", "skipped": "yellow"}


def _table(title: str, headers: list[str], rows: list[list[str]], status_column: int | None = None) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold")
    for index, header in enumerate(headers):
        # Only the last column (notes) may wrap: numbers and shapes read badly when folded.
        table.add_column(header, no_wrap=index < len(headers) - 1)
    for row in rows:
        cells = [escape(cell) for cell in row]
        if status_column is not None:
            style = _STATUS_STYLE.get(row[status_column], "")
            cells[status_column] = f"[{style}]{cells[status_column]}[/]" if style else cells[status_column]
        table.add_row(*cells)
    return table


def print_run(console: Console, report: RunReport) -> None:
    console.print(escape(summary_line(report)), highlight=False)
    console.print(_table("Shapes (read off the tensors nn.MultiheadAttention returns)", SHAPE_HEADERS, shape_rows(report)))
    console.print(
        _table(
            "Timing (torch.utils.benchmark) and agreement with the float64 reference",
            *result_table(report.results),
            status_column=1,
        )
    )
    for line in notes(report.results):
        console.print(f"  • {escape(line)}", highlight=False)
    style = "bold green" if report.ok else "bold red"
    console.print(f"[{style}]{escape(verdict(report))}[/]")
