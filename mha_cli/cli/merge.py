"""`mha merge`: combine the shard folders of one sweep."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import typer

from .common import JsonOption, handle_errors, stderr_console, stdout_console


@handle_errors
def merge(
    folders: Annotated[list[Path], typer.Argument(metavar="DIR...", help="Sweep folders written with --shard I/N.", show_default=False)],
    output_dir: Annotated[Path | None, typer.Option("--output-dir", metavar="DIR", help="The merged sweep folder (default outputs/<UTC time>-<name>-merged/).")] = None,
    as_json: JsonOption = False,
    plot: Annotated[bool, typer.Option("--plot/--no-plot", help="Write sweep.png (needs matplotlib).")] = True,
) -> None:
    """Combine the shard folders of one sweep into one sweep folder, summarised as if it had run unsharded.

    Missing shards leave the merged sweep `partial`, with the pending points counted.

    Example:

      mha merge shards/1 shards/2 shards/3 --output-dir sweeps/merged
    """
    from ..sweep.merge import merge as merge_folders
    from ..sweep.store import SweepFolder

    if output_dir is None:
        grid, _ = SweepFolder(folders[0]).definition()
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        output_dir = Path("outputs") / f"{stamp}-{grid.base['name']}-merged"
    summary = merge_folders(folders, output_dir, plot=plot)
    stderr_console().print(f"merged sweep folder: {output_dir}/", highlight=False, markup=False)
    if as_json:
        from ..report.files import to_json

        sys.stdout.write(to_json(summary))
    else:
        from ..report.sweep_tables import print_summary

        print_summary(stdout_console(), summary)
