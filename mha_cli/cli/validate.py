"""`mha validate`: check a config and print it resolved, without importing torch."""


import json

import typer

from .common import (
    ConfigArg,
    JsonOption,
    MaxMemoryOption,
    OverridesArg,
    handle_errors,
    split_config_args,
)


@handle_errors
def validate(
    config: ConfigArg = None, overrides: OverridesArg = None, as_json: JsonOption = False, max_memory: MaxMemoryOption = None
) -> None:
    """Check a config and print it with every default filled in, and the memory it needs.

    Every problem is listed at once with its file, line and field. The memory
    estimate is the one `mha run` uses, and a config `mha run` would refuse for
    memory is refused here too. Exit code 0 when the config is valid, 2 when it
    is not. Torch is not imported, so whether the device exists is not checked.

    Examples:

      mha validate example:quickstart

      mha validate example:cross_attention num_heads=8 --json
    """
    from ..config import (  # pydantic: only once a command runs
        config_to_yaml,
        load_config,
    )
    from ..memory import (
        check_fits,
        format_bytes,
        parse_max_memory,
        required_bytes,
        resolve_memory_limit,
    )

    from ..experiment import resolve

    limit, limit_source = resolve_memory_limit(parse_max_memory(max_memory))
    path, extra = split_config_args(config, overrides)
    resolved = load_config(path, extra)
    experiment = resolve(resolved)
    found = check_fits(experiment, limit, limit_source)  # no user code is imported: its memory is estimated
    if as_json:
        typer.echo(json.dumps(resolved.to_dict(), indent=2))
    else:
        typer.echo(config_to_yaml(resolved), nl=False)
    per_impl = ", ".join(f"{name} {format_bytes(found.peak(name))}" for name in experiment.impls)
    typer.echo(
        f"config is valid; estimated peak memory {format_bytes(required_bytes(experiment, found))} at least "
        f"(reference {format_bytes(found.reference_peak)}; {per_impl}; {format_bytes(limit)} {limit_source}; "
        f"an implementation that does not fit is skipped){''.join(_checked_by_run(experiment))}",
        err=True,
    )


def _checked_by_run(experiment) -> list[str]:  # type: ignore[no-untyped-def]
    """What only `mha run` can check: the device (it needs torch) and code the config names (never imported here)."""
    notes = []
    if experiment.device != "cpu":
        notes.append(f"; device {experiment.device} is checked by `mha run` (it needs torch)")
    if experiment.pattern is not None and experiment.pattern.IMPORTS_USER_CODE:
        notes.append(f"; the mask_mod {experiment.pattern.settings.mask_mod} is imported and checked by `mha run`, not here")
    mod = experiment.score_mod
    if mod is not None and mod.IMPORTS_USER_CODE:
        notes.append(f"; the score_mod {mod.brief(mod.settings)} is imported and checked by `mha run`, not here")
    from ..registry import BUILTIN_IMPLS

    yours = [name for name in experiment.impls if name not in BUILTIN_IMPLS]
    if yours:
        offered = [name for name in yours if name not in experiment.implementations]
        origin = f" ({', '.join(offered)} from installed packages)" if offered else ""
        notes.append(f"; {', '.join(yours)}{origin}: imported and checked by `mha run`, not here "
                     "(memory estimated as the dense layer's)")
    return notes
