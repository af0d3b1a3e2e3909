"""A sweep's summary files: summary.json, summary.csv, report.md, and sweep.png when asked for and possible.

Presentation over storage: the sweep folder (sweep/store.py) only stores; this
renders what a sweep found into its folder, each file written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..output_folder import write_atomic
from ..results import to_json
from .sweep_plots import write_plot
from .sweep_tables import summary_csv, summary_markdown


def write_summary(folder: Path, summary: dict[str, Any], plot: bool = True) -> str | None:
    """Every summary file in `folder`. Returns why sweep.png was not written although asked for, else None."""
    write_atomic(folder / "summary.json", to_json(summary))
    write_atomic(folder / "summary.csv", summary_csv(summary))
    write_atomic(folder / "report.md", summary_markdown(summary))
    if not plot:
        return None
    try:
        if write_plot(summary, folder / "sweep.png"):
            return None
        return "sweep.png not written: no point has an ok timing (all skipped, failed or pending)"
    except UsageError:
        return "sweep.png not written: matplotlib is not installed (pip install 'mha-cli[plot]')"
