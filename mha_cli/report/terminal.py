"""Rich tables for the terminal. All user-provided text is escaped before it meets Rich markup."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..results import RunReport
from .rows import SHAPE_HEADERS, notes, result_table, shape_rows, summary_line, verdict

_STATUS_STYLE = {"ok": "green", "FAIL": "bold red", "error": "bold red", "skipped": "yellow"}


# Columns left out, in this order, when a table is wider than the terminal: what a narrow terminal can spare.
# The implementation, its status and median are never left out; --json and wider terminals keep every column.
LEAST_NEEDED = ["atol", "machine", "reps", "runs", "GFLOP/s (% peak)", "GB/s (% bandwidth)", "peak mem", "IQR", "vs torch"]
# The shape table: its note wraps; the axes, e.g. (L=10, N=5, E=64), say the shape with its names.
SHAPES_LEAST_NEEDED = ["note", "shape"]
WRAPPED_WIDTH = 24


def fitted(headers: list[str], rows: list[list[str]], width: int,
           order: list[str] = LEAST_NEEDED) -> tuple[list[str], list[list[str]], list[str]]:
    """The columns that fit in `width` (Rich folds nothing then: every cell readable), and the headers left out."""
    keep = list(range(len(headers)))

    last = len(headers) - 1  # the one column that wraps (see _table): a few words a line will do

    def needed() -> int:  # each cell's text, padding and a border per column, and the outer border
        widths = {c: max(len(headers[c]), *(len(row[c]) for row in rows)) for c in keep}
        if last in widths:
            widths[last] = min(widths[last], WRAPPED_WIDTH)
        return sum(width + 3 for width in widths.values()) + 1

    dropped = []
    for name in order:
        if needed() <= width:
            break
        if name in headers and headers.index(name) in keep:
            keep.remove(headers.index(name))
            dropped.append(name)
    return [headers[c] for c in keep], [[row[c] for c in keep] for row in rows], dropped


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
    shape_headers, shapes, shape_dropped = fitted(SHAPE_HEADERS, shape_rows(report), console.width, SHAPES_LEAST_NEEDED)
    console.print(_table("Shapes (read off the tensors nn.MultiheadAttention returns)", shape_headers, shapes))
    timing_headers, timings, timing_dropped = fitted(*result_table(report.results), console.width)
    console.print(
        _table(
            "Timing (torch.utils.benchmark) and agreement with the float64 reference",
            timing_headers, timings,
            status_column=1,
        )
    )
    if shape_dropped or timing_dropped:
        console.print(f"  • left out at this width ({console.width} columns): {', '.join(shape_dropped + timing_dropped)}; "
                      "a wider terminal or --json shows them", highlight=False)
    for line in notes(report.results):
        console.print(f"  • {escape(line)}", highlight=False)
    style = "bold green" if report.ok else "bold red"
    console.print(f"[{style}]{escape(verdict(report))}[/]")
