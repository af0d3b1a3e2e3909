"""`mha run`: one config, every implementation, shapes + agreement + timing."""


import contextlib
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import ExitCode, UsageError
from .common import (
    ConfigArg,
    JsonOption,
    MaxMemoryOption,
    OverridesArg,
    OverwriteOption,
    ReprobeOption,
    handle_errors,
    progress_messages,
    split_config_args,
    stderr_console,
    stdout_console,
)


@handle_errors
def run(
    config: ConfigArg = None,
    overrides: OverridesArg = None,
    as_json: JsonOption = False,
    no_save: Annotated[bool, typer.Option("--no-save", help="Write nothing to disk.")] = False,
    output_dir: Annotated[
        Path | None,
        typer.Option("--output-dir", metavar="DIR", help="Write into exactly this folder instead of outputs/<UTC time>-<name>/."),
    ] = None,
    overwrite: OverwriteOption = False,
    max_memory: MaxMemoryOption = None,
    reprobe: ReprobeOption = False,
) -> None:
    """Run every implementation on one config: shapes, agreement with a float64 reference, timing.

    Exit code 0 when every implementation that ran agrees with the reference,
    1 when one fails its check or crashes, 2 for a bad config or option.

    Examples:

      mha run                                   (the built-in quickstart)

      mha run configs/quickstart.yaml num_heads=4 mask.causal=true

      mha run configs/cross_attention.yaml impls=\\[sdpa,manual] --json --no-save
    """
    from ..config import (  # pydantic: only once a command runs
        config_to_yaml,
        load_config,
    )
    from ..memory import parse_max_memory

    if no_save and (output_dir is not None or overwrite):
        raise UsageError("--no-save contradicts --output-dir and --overwrite; give one of them")
    limit = parse_max_memory(max_memory)
    path, extra = split_config_args(config, overrides)
    resolved = load_config(path, extra)

    from ..output_folder import (
        DEFAULT_ROOT,
        claimed_output,
        point_latest,
    )

    with contextlib.ExitStack() as stack:
        folder = None
        if not no_save:  # the folder is claimed (checked and locked) before anything is measured
            folder = stack.enter_context(claimed_output(output_dir, resolved.name, overwrite=overwrite))
        report = _measure(resolved, limit, reprobe)
        if as_json:
            from ..report.files import to_json

            sys.stdout.write(to_json(report.to_dict()))
        else:
            from ..report.terminal import print_run

            print_run(stdout_console(), report)
        if folder is not None:
            from ..report.files import save_run

            err = stderr_console()
            save_run(report, folder, config_to_yaml(resolved))
            _save_pattern_picture(resolved, folder, err)
            point_latest(DEFAULT_ROOT, folder)
            err.print(f"saved to {folder}/", highlight=False, markup=False)
    if not report.ok:
        raise typer.Exit(int(ExitCode.FAILED))


def _measure(resolved, limit: int | None, reprobe: bool = False):  # type: ignore[no-untyped-def]
    from ..runner import (
        run_experiment,  # imports torch: only once the config is known to be good
    )

    with progress_messages(stderr_console()) as progress:
        return run_experiment(resolved, memory_limit=limit, progress=progress, reprobe=reprobe)


def _save_pattern_picture(config, folder: Path, err) -> None:  # type: ignore[no-untyped-def]
    """pattern.png beside the results, when matplotlib is there to draw it."""
    from ..report.mask_render import write_pattern_png

    try:
        write_pattern_png(config, folder / "pattern.png")
    except UsageError:
        err.print("pattern.png not written: matplotlib is not installed (pip install 'mha-cli[plot]')", highlight=False, markup=False)
