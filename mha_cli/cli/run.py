"""`mha run`: one config, every implementation, shapes + agreement + timing."""


import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO

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
    stdout_for_results,
)

if TYPE_CHECKING:
    from ..results import RunReport


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
    1 when one fails its check or crashes or when every one was skipped
    (nothing was measured), 2 for a bad config or option.
    Your own implementation runs beside the built-in ones: name it under
    `implementations:` (module:attr or file.py:attr; this imports and runs that
    code) and list it in impls; see docs/your-implementation.md.

    Examples:

      mha run                                   (the built-in quickstart)

      mha run example:quickstart num_heads=4 mask.causal=true

      mha run example:cross_attention impls=\\[sdpa,manual] --json --no-save

      mha run example:my_attention
    """
    from ..config import load_config  # pydantic: only once a command runs
    from ..memory import parse_max_memory

    if no_save and (output_dir is not None or overwrite):
        raise UsageError("--no-save contradicts --output-dir and --overwrite; give one of them")
    limit = parse_max_memory(max_memory)
    path, extra = split_config_args(config, overrides)
    resolved = load_config(path, extra)
    from ..runner import run_experiment, run_in_folder  # imports torch: only once the config is known to be good

    err = stderr_console()
    with stdout_for_results(as_json) as results, progress_messages(err) as progress:
        def show(report: "RunReport") -> None:
            progress.stop()
            _print(report, as_json, results)

        if no_save:
            report = run_experiment(resolved, memory_limit=limit, progress=progress, reprobe=reprobe)
            show(report)
        else:  # the folder is claimed (checked and locked) before anything is measured
            saved = run_in_folder(resolved, output_dir, overwrite=overwrite, memory_limit=limit, progress=progress,
                                  reprobe=reprobe, shown=show)
            report = saved.report
            for note in saved.notes:
                err.print(note, highlight=False, markup=False)
            err.print(f"saved to {saved.folder}/", highlight=False, markup=False)
    if not report.ok:
        raise typer.Exit(int(ExitCode.FAILED))


def _print(report: "RunReport", as_json: bool, results: TextIO) -> None:
    """The report on stdout: one JSON document with --json, else the tables."""
    if as_json:
        from ..results import to_json

        results.write(to_json(report.to_dict()))
    else:
        from ..report.terminal import print_run

        print_run(stdout_console(), report)
