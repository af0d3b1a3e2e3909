"""`mha merge`: combine the shard folders of one sweep."""


import contextlib
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import UsageError
from .common import (
    JsonOption,
    OverwriteOption,
    handle_errors,
    stderr_console,
    stdout_console,
)


@handle_errors
def merge(
    folders: Annotated[list[Path] | None, typer.Argument(metavar="DIR...", help="Sweep folders written with --shard I/N.", show_default=False)] = None,
    output_dir: Annotated[Path | None, typer.Option("--output-dir", metavar="DIR", help="The merged sweep folder (default outputs/<UTC time>-<name>-merged/).")] = None,
    overwrite: OverwriteOption = False,
    as_json: JsonOption = False,
    plot: Annotated[bool, typer.Option("--plot/--no-plot", help="Write sweep.png (needs matplotlib).")] = True,
) -> None:
    """Combine the shard folders of one sweep into one sweep folder, summarised as if it had run unsharded.

    Missing shards leave the merged sweep `partial`, with the pending points counted.

    Example:

      mha merge shards/1 shards/2 shards/3 --output-dir sweeps/merged
    """
    from ..output_folder import (
        DEFAULT_ROOT,
        claimed_output,
        point_latest,
    )
    from ..sweep.merge import merge_shards
    from ..sweep.store import SweepFolder

    if not folders:
        raise UsageError("give the shard folders to merge, e.g. mha merge shards/1 shards/2 --output-dir merged")
    with contextlib.ExitStack() as stack:
        name = SweepFolder(folders[0]).definition()[0].base["name"]
        output_dir = stack.enter_context(claimed_output(output_dir, f"{name}-merged", overwrite=overwrite))
        summary, warnings = merge_shards(folders, output_dir, plot=plot, overwrite=overwrite)
        point_latest(DEFAULT_ROOT, output_dir)
    err = stderr_console()
    for warning in warnings:
        err.print(f"warning: {warning}", highlight=False, markup=False)
    err.print(f"merged sweep folder: {output_dir}/", highlight=False, markup=False)
    if as_json:
        from ..results import to_json

        sys.stdout.write(to_json(summary))
    else:
        from ..report.sweep_tables import print_summary

        print_summary(stdout_console(), summary)
