"""`mha run`: one config, every implementation, shapes + agreement + timing."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from ..errors import ExitCode, UsageError
from .common import ConfigArg, JsonOption, OverridesArg, handle_errors, progress_messages, split_config_args, stderr_console, stdout_console

DEFAULT_OUTPUT_ROOT = Path("outputs")


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
    max_memory: Annotated[
        str | None,
        typer.Option("--max-memory", metavar="SIZE", help="Refuse runs estimated above this (e.g. 4GiB). Default: memory available now."),
    ] = None,
) -> None:
    """Run every implementation on one config: shapes, agreement with a float64 reference, timing.

    Exit code 0 when every implementation that ran agrees with the reference,
    1 when one fails its check or crashes, 2 for a bad config or option.

    Examples:

      mha run                                   (the built-in quickstart)

      mha run configs/quickstart.yaml num_heads=4 mask.causal=true

      mha run configs/cross_attention.yaml impls=\\[sdpa,manual] --json --no-save
    """
    from ..config import config_to_yaml, load_config  # pydantic: only once a command runs
    from ..memory import parse_bytes

    if no_save and output_dir is not None:
        raise UsageError("--no-save and --output-dir contradict each other; give one of them")
    limit = parse_bytes(max_memory) if max_memory is not None else None
    path, extra = split_config_args(config, overrides)
    resolved = load_config(path, extra)

    from rich.markup import escape

    from ..report.files import new_run_folder, save_run, to_json
    from ..report.terminal import print_run
    from ..runner import run_experiment  # imports torch: only once the config is known to be good

    err = stderr_console()
    with progress_messages(err) as progress:
        report = run_experiment(resolved, memory_limit=limit, progress=progress)

    if as_json:
        sys.stdout.write(to_json(report.to_dict()))
    else:
        print_run(stdout_console(), report)
    if not no_save:
        folder = output_dir or new_run_folder(DEFAULT_OUTPUT_ROOT, resolved.name, datetime.fromisoformat(report.created))
        save_run(report, folder, config_to_yaml(resolved))
        _save_pattern_picture(resolved, folder, err)
        err.print(f"saved to {escape(str(folder))}/", highlight=False)
    if not report.ok:
        raise typer.Exit(int(ExitCode.FAILED))



def _save_pattern_picture(config, folder: Path, err) -> None:  # type: ignore[no-untyped-def]
    """pattern.png beside the results, when matplotlib is there to draw it."""
    from ..report.mask_render import write_pattern_png

    try:
        write_pattern_png(config, folder / "pattern.png")
    except UsageError:
        err.print("pattern.png not written: matplotlib is not installed (pip install 'mha-cli[plot]')", highlight=False)
