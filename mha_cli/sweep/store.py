"""The sweep folder: what a sweep is (sweep.json), what it has finished (points.jsonl), what it found.

points.jsonl gets one line per finished point, appended, flushed and synced
at once, so a crash or Ctrl-C loses at most the point that was running. A
last line cut off mid-write is ignored when reading.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import UsageError
from ..report.files import to_json, write_atomic
from .grid import Grid, Shard

SWEEP_FILE = "sweep.json"
POINTS_FILE = "points.jsonl"
SCHEMA_VERSION = 1


class SweepFolder:
    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def points_file(self) -> Path:
        return self.path / POINTS_FILE

    def create(self, grid: Grid, shard: Shard) -> None:
        if (self.path / SWEEP_FILE).exists():
            raise UsageError(
                f"{self.path} already holds a sweep; continue it with `mha sweep --resume {self.path}` or choose another folder"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        document = {
            "schema_version": SCHEMA_VERSION,
            "mha_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "shard": str(shard),
            "grid": grid.to_dict(),
        }
        write_atomic(self.path / SWEEP_FILE, to_json(document))

    def definition(self) -> tuple[Grid, Shard]:
        path = self.path / SWEEP_FILE
        if not path.exists():
            raise UsageError(f"{self.path} is not a sweep folder (no {SWEEP_FILE}); give the folder `mha sweep` wrote")
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            shard = Shard(*(int(x) for x in document["shard"].split("/")))
            return Grid.from_dict(document["grid"]), shard
        except (ValueError, KeyError, TypeError) as error:
            raise UsageError(f"{path} is damaged: {error}") from None

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, allow_nan=False, default=str) + "\n"
        with open(self.points_file, "a", encoding="utf-8") as file:
            file.write(line)
            file.flush()
            os.fsync(file.fileno())

    def records(self) -> list[dict[str, Any]]:
        """Finished points, the last record per point index; a torn last line is skipped."""
        if not self.points_file.exists():
            return []
        by_index: dict[int, dict[str, Any]] = {}
        for line in self.points_file.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # cut off by a crash mid-write; that point runs again
            by_index[record["point"]] = record
        return [by_index[i] for i in sorted(by_index)]

    def write(self, name: str, text: str) -> Path:
        write_atomic(self.path / name, text)
        return self.path / name


def write_summary(folder: SweepFolder, summary: dict[str, Any], plot: bool = True) -> list[Path]:
    """summary.json, summary.csv, report.md, and sweep.png when matplotlib is there (and plot is on)."""
    from ..report.sweep_tables import summary_csv, summary_markdown, write_plot

    written = [
        folder.write("summary.json", to_json(summary)),
        folder.write("summary.csv", summary_csv(summary)),
        folder.write("report.md", summary_markdown(summary)),
    ]
    try:
        if plot and write_plot(summary, folder.path / "sweep.png"):
            written.append(folder.path / "sweep.png")
    except UsageError:
        pass  # no matplotlib: the tables are written all the same
    return written
