import csv
import io
import json
from pathlib import Path

from mha_cli.report.files import results_csv, save_run, to_json
from mha_cli.results import Result, RunReport, ShapeRow

from ..helpers import small_config


def sample_report() -> RunReport:
    return RunReport(
        mha_version="0.1.0",
        created="2026-11-27T10:00:00+00:00",
        config=small_config().to_dict(),
        env={"torch": "2.13.0", "python": "3.11", "platform": "linux", "cpu": "cpu", "device": "cpu", "num_threads": 2, "commit": None},
        shapes={"query": [5, 2, 16], "key": [5, 2, 16], "value": [5, 2, 16], "output": [5, 2, 16], "attn_weights": None},
        shape_table=[ShapeRow("query", [5, 2, 16], "(L=5, N=2, E=16)", "a | note")],
        results=[
            Result("torch", "full", "float32", "cpu", "ok", median_s=1e-3, iqr_s=1e-5, runs=9, ok=True, max_abs_err=float("nan")),
            Result("sdpa", "full", "float32", "cpu", "skipped", reason="no kernel"),
        ],
    )


def test_report_round_trips_through_json() -> None:
    report = sample_report()
    document = json.loads(to_json(report.to_dict()))
    assert document["results"][0]["max_abs_err"] is None  # NaN is not JSON: written as null
    again = RunReport.from_dict(document)
    assert again.results[1] == report.results[1] and again.shape_table == report.shape_table


def test_csv_has_one_row_per_result_with_config_columns() -> None:
    rows = list(csv.DictReader(io.StringIO(results_csv(sample_report()))))
    assert [r["impl"] for r in rows] == ["torch", "sdpa"]
    assert rows[0]["embed_dim"] == "16" and rows[1]["reason"] == "no kernel" and rows[1]["median_s"] == ""


def test_save_run_writes_four_files(tmp_path: Path) -> None:
    paths = save_run(sample_report(), tmp_path / "run", "name: test\n")
    assert sorted(p.name for p in paths) == ["config.yaml", "report.md", "results.csv", "results.json"]
