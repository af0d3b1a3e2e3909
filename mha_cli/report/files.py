"""Writing a run's results: JSON and CSV text, and the run folder's files (written atomically)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..output_folder import write_atomic
from ..results import Result, RunReport, to_json
from .markdown import run_markdown

CSV_CONFIG_COLUMNS = ["name", "embed_dim", "num_heads", "batch_size", "seq_len", "source_len", "attention"]


def results_csv(report: RunReport) -> str:
    result_columns = ["pass" if name == "pass_" else name for name in Result.__dataclass_fields__]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_CONFIG_COLUMNS + result_columns)
    for result in report.results:
        values = result.to_dict()
        writer.writerow(
            [report.config.get(c) for c in CSV_CONFIG_COLUMNS] + ["" if values[c] is None else values[c] for c in result_columns]
        )
    return buffer.getvalue()


def save_results(report: RunReport, folder: Path, config_yaml: str) -> list[Path]:
    """config.yaml, results.json, results.csv and report.md, each written atomically."""
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
