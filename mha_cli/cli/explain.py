"""`mha explain`: walk through the layer step by step on your own config."""


import json
from typing import Annotated

import typer

from .common import (
    ConfigArg,
    JsonOption,
    MaxMemoryOption,
    OverridesArg,
    handle_errors,
    split_config_args,
    stdout_console,
)


@handle_errors
def explain(
    config: ConfigArg = None, overrides: OverridesArg = None, as_json: JsonOption = False, max_memory: MaxMemoryOption = None,
    backward: Annotated[bool, typer.Option("--backward", help="Add the backward pass: each gradient, its shape and FLOPs, checked against autograd.")] = False,
) -> None:
    """Show every step of multi-head attention on your config: formula, shape with named axes, and notes.

    The steps are computed by the manual implementation and checked against
    nn.MultiheadAttention with the same weights; parameters and FLOPs per step
    are counted.

    Examples:

      mha explain

      mha explain example:cross_attention average_attn_weights=false --json

      mha explain --backward
    """
    from ..config import load_config
    from ..explanation import explain as explain_config
    from ..memory import parse_max_memory

    limit = parse_max_memory(max_memory)
    path, extra = split_config_args(config, overrides)
    resolved = load_config(path, extra)
    found = explain_config(resolved, memory_limit=limit, backward=backward)
    if as_json:
        typer.echo(json.dumps(found.to_dict(), indent=2))
        return
    from ..report.explain_table import print_explanation

    print_explanation(stdout_console(), resolved.name, found)
