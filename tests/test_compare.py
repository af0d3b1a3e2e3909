"""The CI gate: exit codes 0, 1 and 3 on crafted results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mha_cli.cli import app
from mha_cli.compare import Threshold, compare, load
from mha_cli.errors import UsageError

ENV = {"torch": "2.13.0", "python": "3.11", "platform": "linux", "cpu": "AMD EPYC", "device": "cpu", "num_threads": 2, "commit": "abc"}


def result(impl: str, median: float, iqr: float, status: str = "ok", peak: int = 1000) -> dict:
    return {"impl": impl, "variant": "full", "dtype": "float32", "device": "cpu", "status": status, "reason": "",
            "median_s": median, "iqr_s": iqr, "runs": 20, "gflops": 1.0, "peak_mem_bytes": peak,
            "max_abs_err": 1e-7, "ok": status == "ok"}


def write_run(path: Path, results: list[dict], env: dict | None = None) -> Path:
    document = {"schema_version": 1, "mha_version": "0.1.0", "created": "2026-11-27T10:00:00+00:00",
                "config": {"name": "x", "embed_dim": 64}, "env": env or ENV, "shapes": {}, "results": results}
    path.write_text(json.dumps(document))
    return path


def run_compare(*args: str):
    return CliRunner().invoke(app, ["compare", *args])


def test_no_change_exits_0(tmp_path: Path) -> None:
    base = write_run(tmp_path / "base.json", [result("sdpa", 1.0, 0.02)])
    current = write_run(tmp_path / "current.json", [result("sdpa", 1.05, 0.02)])
    outcome = run_compare(str(base), str(current))
    assert outcome.exit_code == 0 and "OK: no regression" in outcome.stdout


def test_a_clear_slowdown_exits_3(tmp_path: Path) -> None:
    base = write_run(tmp_path / "base.json", [result("sdpa", 1.0, 0.02), result("manual", 2.0, 0.02)])
    current = write_run(tmp_path / "current.json", [result("sdpa", 1.3, 0.02), result("manual", 2.0, 0.02)])
    outcome = run_compare(str(base), str(current), "--fail-on", "median:10%")
    assert outcome.exit_code == 3 and "REGRESSION" in outcome.stdout and "+30.0%" in outcome.stdout


def test_a_slowdown_inside_the_noise_is_not_a_regression(tmp_path: Path) -> None:
    base = write_run(tmp_path / "base.json", [result("sdpa", 1.0, 0.4)])
    current = write_run(tmp_path / "current.json", [result("sdpa", 1.3, 0.4)])
    outcome = run_compare(str(base), str(current))
    assert outcome.exit_code == 0 and "slower within noise" in outcome.stdout


def test_a_failed_check_in_current_exits_1_even_with_a_regression(tmp_path: Path) -> None:
    base = write_run(tmp_path / "base.json", [result("sdpa", 1.0, 0.01), result("manual", 1.0, 0.01)])
    current = write_run(tmp_path / "current.json", [result("sdpa", 2.0, 0.01), result("manual", 1.0, 0.01, status="fail")])
    outcome = run_compare(str(base), str(current))
    assert outcome.exit_code == 1 and "FAIL" in outcome.stdout


def test_memory_threshold(tmp_path: Path) -> None:
    base = write_run(tmp_path / "base.json", [result("sdpa", 1.0, 0.01, peak=1000)])
    current = write_run(tmp_path / "current.json", [result("sdpa", 1.0, 0.01, peak=1500)])
    assert run_compare(str(base), str(current), "--fail-on", "peak_mem:20%").exit_code == 3
    assert run_compare(str(base), str(current), "--fail-on", "peak_mem:60%").exit_code == 0


def test_environment_differences_warn_but_do_not_fail(tmp_path: Path) -> None:
    base = write_run(tmp_path / "base.json", [result("sdpa", 1.0, 0.01)])
    current = write_run(tmp_path / "current.json", [result("sdpa", 1.0, 0.01)], env={**ENV, "num_threads": 16, "cpu": "Xeon"})
    outcome = run_compare(str(base), str(current))
    assert outcome.exit_code == 0 and "different environments" in outcome.stderr and "num_threads" in outcome.stderr


def test_unmatched_points_are_listed_and_json_parses(tmp_path: Path) -> None:
    base = write_run(tmp_path / "base.json", [result("sdpa", 1.0, 0.01), result("torch", 1.0, 0.01)])
    current = write_run(tmp_path / "current.json", [result("sdpa", 1.0, 0.01), result("blocked", 1.0, 0.01)])
    outcome = run_compare(str(base), str(current), "--json")
    document = json.loads(outcome.stdout)
    assert document["only_in_base"] == [{"params": {}, "impl": "torch"}]
    assert document["only_in_current"] == [{"params": {}, "impl": "blocked"}]
    assert document["exit_code"] == 1 and document["missing"] == 1  # torch was measured in BASE only
    allowed = run_compare(str(base), str(current), "--json", "--allow-missing")
    assert allowed.exit_code == 0 and json.loads(allowed.stdout)["exit_code"] == 0


def test_markdown_for_ci_summaries(tmp_path: Path) -> None:
    base = write_run(tmp_path / "base.json", [result("sdpa", 1.0, 0.01)])
    outcome = run_compare(str(base), str(base), "--markdown")
    assert outcome.stdout.startswith("## mha compare") and "| - | sdpa | median |" in outcome.stdout


def test_sweep_summaries_match_points_by_parameters(tmp_path: Path) -> None:
    def summary(rows: list[dict]) -> dict:
        return {"axes": [{"path": "num_heads", "values": [1, 2]}], "rows": rows, "env": ENV, "base_config": {"name": "s"}}

    base = [{"point": 0, "num_heads": 1, **result("sdpa", 1.0, 0.01)}, {"point": 1, "num_heads": 2, **result("sdpa", 1.0, 0.01)}]
    current = [{"point": 0, "num_heads": 1, **result("sdpa", 1.0, 0.01)}, {"point": 1, "num_heads": 2, **result("sdpa", 1.5, 0.01)}]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "summary.json").write_text(json.dumps(summary(base)))
    (tmp_path / "b" / "summary.json").write_text(json.dumps(summary(current)))
    comparison = compare(load(tmp_path / "a"), load(tmp_path / "b"), [Threshold.parse("median:10%")])
    assert [(r.params, r.verdict) for r in comparison.rows] == [({"num_heads": 1}, "ok"), ({"num_heads": 2}, "REGRESSION")]
    assert comparison.exit_code == 3


@pytest.mark.parametrize("text", ["median", "speed:10%", "median:ten%"])
def test_bad_thresholds(text: str) -> None:
    with pytest.raises(UsageError, match="METRIC:PERCENT"):
        Threshold.parse(text)


def test_bad_paths_exit_2(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("{}")
    assert run_compare(str(tmp_path / "nope"), str(tmp_path / "x.json")).exit_code == 2
    assert "not an mha results" in run_compare(str(tmp_path / "x.json"), str(tmp_path / "x.json")).stderr
