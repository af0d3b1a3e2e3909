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
from .output_folder import CLI_NAMES, DEFAULT_ROOT, RESULT_FILES, Naming, claimed_output, point_latest
from .prepared import Prepared
from .report.files import save_results
from .results import RunReport


@contextlib.contextmanager
def claimed_run_folder(output_dir: Path | None, name: str, *, overwrite: bool = False,
                       names: Naming = CLI_NAMES) -> Iterator[Path]:
    """output_dir, or a new outputs/<UTC time>-<name>/, claimed (checked and locked) for the time of the run;
    outputs/latest points at it once the run inside has finished."""
    with claimed_output(output_dir, name, overwrite=overwrite, names=names) as folder:
        yield folder
    point_latest(DEFAULT_ROOT, folder)


@contextlib.contextmanager
def undone_if_failed(folder: Path) -> Iterator[None]:
    """Files of a run folder written inside the block are removed again when it fails part way (a full disk
    after config.yaml was written), so a retry is not refused for a half-written run. Files that were there
    before and not replaced stay: what the user already had is never removed."""
    before = {name: _identity(folder / name) for name in RESULT_FILES}
    try:
        yield
    except BaseException:
        for name, was in before.items():
            now = _identity(folder / name)
            if now is not None and now != was:  # new, or replaced (a new inode: files are written via os.replace)
                (folder / name).unlink(missing_ok=True)
        raise


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_ino, found.st_mtime_ns, found.st_size


def save_run(report: RunReport, folder: Path, config_yaml: str, prepared: Prepared) -> list[str]:
    """Every file of a run folder, each written atomically; returns notes for the user (what was not drawn)."""
    from .report.mask_render import write_pattern_png

    save_results(report, folder, config_yaml)
    try:
        write_pattern_png(prepared, folder / "pattern.png")
    except UsageError:
        return ["pattern.png not written: matplotlib is not installed (pip install 'mha-cli[plot]')"]
    return []
