"""A run's folder: claimed before anything is measured, then filled with what the run found.

config.yaml, results.json, results.csv, report.md and pattern.png (when
matplotlib is there to draw it); outputs/latest points at the folder once it
is saved. `mha run` and run_experiment(output_dir=...) both go through here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from .errors import UsageError
from .output_folder import DEFAULT_ROOT, claimed_output, point_latest
from .prepared import Prepared
from .report.files import save_results
from .results import RunReport


@contextlib.contextmanager
def claimed_run_folder(output_dir: Path | None, name: str, *, overwrite: bool = False) -> Iterator[Path]:
    """output_dir, or a new outputs/<UTC time>-<name>/, claimed (checked and locked) for the time of the run;
    outputs/latest points at it once the run inside has finished."""
    with claimed_output(output_dir, name, overwrite=overwrite) as folder:
        yield folder
    point_latest(DEFAULT_ROOT, folder)


def save_run(report: RunReport, folder: Path, config_yaml: str, prepared: Prepared) -> list[str]:
    """Every file of a run folder, each written atomically; returns notes for the user (what was not drawn)."""
    from .report.mask_render import write_pattern_png

    save_results(report, folder, config_yaml)
    try:
        write_pattern_png(prepared, folder / "pattern.png")
    except UsageError:
        return ["pattern.png not written: matplotlib is not installed (pip install 'mha-cli[plot]')"]
    return []
