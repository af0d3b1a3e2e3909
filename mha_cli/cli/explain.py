"""`mha explain`: walk through the layer step by step on your own config."""

from __future__ import annotations

import json

import typer

from .common import ConfigArg, JsonOption, MaxMemoryOption, OverridesArg, handle_errors, split_config_args, stdout_console


@handle_errors
def explain(
    config: ConfigArg = None, overrides: OverridesArg = None, as_json: JsonOption = False, max_memory: MaxMemoryOption = None
) -> None:
    """Show every step of multi-head attention on your config: formula, shape with named axes, and notes.

    The steps are computed by the manual implementation and checked against
    nn.MultiheadAttention with the same weights; parameters and FLOPs per step
    are counted.

    Examples:

      mha explain

      mha explain configs/cross_attention.yaml average_attn_weights=false --json
    """
    from rich.markup import escape
    from rich.table import Table

    from ..config import load_config
    from ..explanation import explain as explain_config

    from ..memory import parse_bytes

    limit = parse_bytes(max_memory) if max_memory is not None else None
    path, extra = split_config_args(config, overrides)
    resolved = load_config(path, extra)
    found = explain_config(resolved, memory_limit=limit)
    if as_json:
        typer.echo(json.dumps(found.to_dict()["steps"], indent=2))
        return
    out = stdout_console()
    table = Table(title=escape(f"{resolved.name}: multi-head attention, step by step ({resolved.dtype})"),
                  title_justify="left", header_style="bold", show_lines=True)
    for header in ("step", "formula", "shape", "params", "FLOPs", "note"):
        table.add_column(header, overflow="fold", no_wrap=header in ("shape", "params", "FLOPs"))
    for step in found.steps:
        table.add_row(escape(step.step), escape(step.formula), escape(step.axes), f"{step.params:,}",
                      f"{step.flops:,}", escape(step.note))
    out.print(table)
    params = sum(s.params for s in found.steps)
    flops = sum(s.flops for s in found.steps)
    out.print(f"total: {params:,} parameters, {flops:,} FLOPs per forward (masked pairs included, as computed)", highlight=False)
    weights = f", weights {found.max_abs_err_weights:.2e}" if found.max_abs_err_weights is not None else ""
    rows = f" (on the rows with an allowed key; {found.fully_masked_rows} rows have none)" if found.fully_masked_rows else ""
    out.print(
        escape(f"manual == nn.MultiheadAttention on the same weights: max |difference| output {found.max_abs_err_output:.2e}{weights}{rows}"),
        highlight=False,
    )
