"""Writing results to disk: atomic files, run folders, JSON and CSV."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from ..results import Result, RunReport
from .markdown import run_markdown

CSV_CONFIG_COLUMNS = ["name", "embed_dim", "num_heads", "batch_size", "seq_len", "source_len", "attention"]


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder and os.replace: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _json_safe(value: Any) -> Any:
    """JSON has no NaN or infinity: write them as null rather than emit invalid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def to_json(document: dict[str, Any]) -> str:
    return json.dumps(_json_safe(document), indent=2, allow_nan=False, default=str) + "\n"


def results_csv(report: RunReport) -> str:
    result_columns = list(Result.__dataclass_fields__)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_CONFIG_COLUMNS + result_columns)
    for result in report.results:
        values = result.to_dict()
        writer.writerow(
            [report.config.get(c) for c in CSV_CONFIG_COLUMNS] + ["" if values[c] is None else values[c] for c in result_columns]
        )
    return buffer.getvalue()


def new_run_folder(root: Path, name: str, created: datetime) -> Path:
    """outputs/<UTC timestamp>-<name>/, with -2, -3... if that second is taken already."""
    stem = f"{created.strftime('%Y%m%dT%H%M%SZ')}-{name}"
    for attempt in range(1, 1000):
        folder = root / (stem if attempt == 1 else f"{stem}-{attempt}")
        try:
            folder.mkdir(parents=True, exist_ok=False)
            return folder
        except FileExistsError:
            continue
    raise FileExistsError(f"could not find a free folder name under {root} for {stem}")


def save_run(report: RunReport, folder: Path, config_yaml: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = {
        "config.yaml": config_yaml,
        "results.json": to_json(report.to_dict()),
        "results.csv": results_csv(report),
        "report.md": run_markdown(report),
    }
    paths = []
    for filename, text in written.items():
        write_atomic(folder / filename, text)
        paths.append(folder / filename)
    return paths
