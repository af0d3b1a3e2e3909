"""`mha validate`: check a config and print it resolved, without importing torch."""

from __future__ import annotations

import json

import typer

from .common import ConfigArg, JsonOption, OverridesArg, handle_errors, split_config_args


@handle_errors
def validate(config: ConfigArg = None, overrides: OverridesArg = None, as_json: JsonOption = False) -> None:
    """Check a config and print it with every default filled in.

    Every problem is listed at once with its file, line and field. Exit code 0
    when the config is valid, 2 when it is not. Torch is not imported.

    Examples:

      mha validate configs/quickstart.yaml

      mha validate configs/cross_attention.yaml num_heads=8 --json
    """
    from ..config import config_to_yaml, load_config  # pydantic: only once a command runs
    from ..memory import available_host_bytes, estimate, format_bytes

    path, extra = split_config_args(config, overrides)
    resolved = load_config(path, extra)
    if as_json:
        typer.echo(json.dumps(resolved.to_dict(), indent=2))
        return
    typer.echo(config_to_yaml(resolved), nl=False)
    found = estimate(resolved)
    worst = max([found.reference_peak, *(found.peak(name) for name in resolved.impls)])
    typer.echo(
        f"config is valid; estimated peak memory {format_bytes(worst)} "
        f"(available now: {format_bytes(available_host_bytes())})",
        err=True,
    )
