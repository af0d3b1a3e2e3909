"""The sweep folder: what a sweep is (sweep.json), what it has finished (points.jsonl), what it found.

points.jsonl gets one line per finished point, appended, flushed and synced
at once, so a crash or Ctrl-C loses at most the point that was running.
Before the first append of a session, a torn last line (kill -9 or a full
disk mid-write) is cut back to the last complete record and the torn bytes
are kept in points.jsonl.torn; otherwise the next record would be glued onto
it and both lost. Lines that cannot be read (garbage, wrong types, an index
outside the grid) are reported with their line numbers and their points run
again on --resume.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..clock import utc_now_iso
from ..errors import UsageError
from ..output_folder import CLI_NAMES, Naming, create_exclusive, file_mode
from ..results import SCHEMA_VERSION, Result, to_json
from .grid import Grid, Shard

SWEEP_FILE = "sweep.json"
POINTS_FILE = "points.jsonl"
TORN_SUFFIX = ".torn"
STATUSES = ("done", "skipped", "crashed", "timeout")
# The files a sweep folder holds; --overwrite removes them before a new sweep starts.
SWEEP_FILES = (SWEEP_FILE, POINTS_FILE, "summary.json", "summary.csv", "report.md", "sweep.png")


@dataclass(frozen=True)
class BadLine:
    line: int  # 1-based
    why: str


def _record_problem(record: Any, grid_size: int | None) -> str | None:
    """Why a parsed line is not a point record, or None when it is one."""
    if not isinstance(record, dict):
        return f"not a record (a {type(record).__name__})"
    point = record.get("point")
    if not isinstance(point, int) or isinstance(point, bool):
        return "no integer `point`"
    if grid_size is not None and not 0 <= point < grid_size:
        return f"point {point} is outside the grid (0..{grid_size - 1})"
    if record.get("status") not in STATUSES:
        return f"status {record.get('status')!r} is not one of {', '.join(STATUSES)}"
    if not isinstance(record.get("params"), dict):
        return "no `params` mapping"
    report = record.get("report")
    if record["status"] == "done" and not (isinstance(report, dict) and isinstance(report.get("results"), list)):
        return "a finished point without its results"
    if record["status"] == "done":
        try:
            for index, result in enumerate(report["results"]):
                Result.from_dict(result, f"report.results[{index}]")
        except ValueError as error:
            return str(error)
    if not isinstance(record.get("reason", ""), str) or not isinstance(record.get("wall_s", 0.0), (int, float)):
        return "`reason` or `wall_s` has the wrong type"
    return None


class SweepFolder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.bad_lines: list[BadLine] = []  # found by the last records() call

    @property
    def points_file(self) -> Path:
        return self.path / POINTS_FILE

    def create(self, grid: Grid, shard: Shard, *, overwrite: bool = False, names: Naming = CLI_NAMES) -> None:
        """Write sweep.json (exclusively: two sweeps cannot both create it). Call with the folder claimed.
        names: how a refusal names the overwrite option (the CLI's flag, or the Python parameter)."""
        if overwrite:
            for name in SWEEP_FILES:
                (self.path / name).unlink(missing_ok=True)
        if (self.path / SWEEP_FILE).exists():
            raise UsageError(
                f"{self.path} already holds a sweep; continue it with `mha sweep --resume {self.path}`, "
                f"pass {names.overwrite} to replace it, or choose another folder"
            )
        if self.points_file.exists():
            raise UsageError(
                f"{self.path} holds {POINTS_FILE} but no {SWEEP_FILE}, so its points cannot be matched to a grid; "
                f"choose another folder (or {names.overwrite} to discard them)"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        document = {
            "schema_version": SCHEMA_VERSION,
            "mha_version": __version__,
            "created": utc_now_iso(),
            "shard": str(shard),
            "grid": grid.to_dict(),
        }
        try:
            create_exclusive(self.path / SWEEP_FILE, to_json(document))
        except FileExistsError:
            raise UsageError(f"another sweep created {self.path / SWEEP_FILE} at the same moment; choose another folder") from None

    def discard(self) -> None:
        """Remove every sweep file (a sweep that failed before measuring anything: nothing in it is worth keeping)."""
        for name in (*SWEEP_FILES, POINTS_FILE + TORN_SUFFIX):
            (self.path / name).unlink(missing_ok=True)

    def definition(self) -> tuple[Grid, Shard]:
        path = self.path / SWEEP_FILE
        if not self.path.is_dir():
            what = "is a file" if self.path.exists() else "does not exist"
            raise UsageError(f"{self.path} is not a sweep folder ({what}); give the folder `mha sweep` wrote")
        if not path.exists():
            raise UsageError(f"{self.path} is not a sweep folder (no {SWEEP_FILE}); give the folder `mha sweep` wrote")
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            shard = Shard(*(int(x) for x in document["shard"].split("/")))
            grid = Grid.from_dict(document["grid"])
            if not (1 <= shard.index <= shard.count) or not isinstance(grid.base, dict):
                raise ValueError(f"shard {shard} or the base config is not valid")
            return grid, shard
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as error:
            reason = error.strerror if isinstance(error, OSError) else f"{type(error).__name__}: {error}"
            raise UsageError(f"{path} is damaged ({reason}); it cannot be resumed or merged") from None

    def repair_torn_tail(self) -> int:
        """Cut a last line that has no newline back to the previous complete one; returns the bytes moved aside."""
        try:
            with open(self.points_file, "rb+") as file:
                data = file.read()
                if not data or data.endswith(b"\n"):
                    return 0
                keep = data.rfind(b"\n") + 1
                torn = data[keep:]
                with open(self.path / (POINTS_FILE + TORN_SUFFIX), "ab") as aside:
                    aside.write(torn + b"\n")
                    aside.flush()
                    os.fsync(aside.fileno())
                file.truncate(keep)
                file.flush()
                os.fsync(file.fileno())
                return len(torn)
        except FileNotFoundError:
            return 0

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, allow_nan=False, default=str) + "\n"
        descriptor = os.open(self.points_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, file_mode())
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(line)
            file.flush()
            os.fsync(file.fileno())

    def records(self, grid_size: int | None = None) -> list[dict[str, Any]]:
        """Finished points, the last good record per point index; unreadable lines go to self.bad_lines."""
        self.bad_lines = []
        if not self.points_file.exists():
            return []
        by_index: dict[int, dict[str, Any]] = {}
        with open(self.points_file, "rb") as file:
            for number, raw in enumerate(file, start=1):
                if not raw.endswith(b"\n"):
                    self.bad_lines.append(BadLine(number, "cut off mid-write (it runs again)"))
                    continue
                try:
                    record = json.loads(raw.decode("utf-8"))
                except UnicodeDecodeError:
                    self.bad_lines.append(BadLine(number, "not UTF-8 text"))
                    continue
                except (json.JSONDecodeError, RecursionError):
                    self.bad_lines.append(BadLine(number, "not a JSON record"))
                    continue
                problem = _record_problem(record, grid_size)
                if problem is not None:
                    self.bad_lines.append(BadLine(number, problem))
                    continue
                by_index[record["point"]] = record
        return [by_index[i] for i in sorted(by_index)]
