import csv
import io
import json
from pathlib import Path

from mha_cli.report.files import results_csv, save_results
from mha_cli.results import to_json
from mha_cli.results import RunReport

from ..helpers import sample_report


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
    paths = save_results(sample_report(), tmp_path / "run", "name: test\n")
    assert sorted(p.name for p in paths) == ["config.yaml", "report.md", "results.csv", "results.json"]
