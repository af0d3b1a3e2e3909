"""`mha explain` as a table: one row per step, then the totals and the check."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..explanation import Explanation, Step

HEADERS = ("step", "formula", "shape", "params", "FLOPs", "note")
NUMBERS = ("shape", "params", "FLOPs")  # never folded: they read badly in pieces


def _steps_table(title: str, steps: list[Step]) -> Table:
    table = Table(title=escape(title), title_justify="left", header_style="bold", show_lines=True)
    for header in HEADERS:
        table.add_column(header, overflow="fold", no_wrap=header in NUMBERS)
    for step in steps:
        table.add_row(escape(step.step), escape(step.formula), escape(step.axes), f"{step.params:,}",
                      f"{step.flops:,}", escape(step.note))
    return table


def print_explanation(console: Console, name: str, found: Explanation) -> None:
    console.print(_steps_table(f"{name}: multi-head attention, step by step ({found.dtype})", found.steps))
    if found.backward:
        console.print(_steps_table("backward: what autograd computes, from the forward's tensors and dY", found.backward))
        console.print(f"backward: {sum(s.flops for s in found.backward):,} FLOPs; these gradients == autograd through "
                      f"the same layer: max |difference| {found.max_abs_err_backward:.2e}", highlight=False)
    console.print(f"total: {found.total_params:,} parameters, {found.total_flops:,} FLOPs per forward "
                  "(masked pairs included, as computed)", highlight=False)
    weights = f", weights {found.max_abs_err_weights:.2e}" if found.max_abs_err_weights is not None else ""
    rows = f" (on the rows with an allowed key; {found.fully_masked_rows} rows have none)" if found.fully_masked_rows else ""
    console.print(escape(f"manual == {found.checked_against}: max |difference| output "
                         f"{found.max_abs_err_output:.2e}{weights}{rows}"), highlight=False)
