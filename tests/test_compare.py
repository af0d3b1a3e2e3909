"""The CI gate: exit codes 0, 1 and 3 on crafted results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mha_cli.cli import app
from mha_cli.compare import Threshold, compare_results, load
from mha_cli.errors import UsageError

ENV = {"torch": "2.13.0", "python": "3.11", "platform": "linux", "cpu": "AMD EPYC", "device": "cpu", "num_threads": 2, "commit": "abc"}


def result(impl: str, median: float, spread: float, status: str = "ok", peak: int = 1000, repetitions: int = 5) -> dict:
    """A result whose repetitions lie evenly within median * (1 +- spread)."""
    steps = [2 * k / (repetitions - 1) - 1 for k in range(repetitions)] if repetitions > 1 else [0.0]
    samples = [median * (1 + spread * step) for step in steps]
    return {"impl": impl, "variant": "full", "dtype": "float32", "device": "cpu", "status": status, "reason": "",
            "median_s": median, "iqr_s": median * spread, "runs": 20, "samples_s": samples, "gflops": 1.0,
            "peak_mem_bytes": peak, "max_abs_err": 1e-7, "ok": status == "ok"}


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
    assert outcome.exit_code == 0 and "slower within noise" in outcome.stdout and "p = " in outcome.stdout


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
    comparison = compare_results(load(tmp_path / "a"), load(tmp_path / "b"), [Threshold.parse("median:10%")])
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


def write_sweep(path: Path, rows: list[dict], axes: list[str] | None = None) -> Path:
    axes = axes or ["num_heads"]
    document = {"schema_version": 1, "axes": [{"path": a, "values": sorted({r[a] for r in rows})} for a in axes],
                "base_config": {"name": "x"}, "env": ENV, "rows": rows}
    path.mkdir()
    (path / "summary.json").write_text(json.dumps(document))
    return path


def sweep_row(heads: int, impl: str, status: str = "ok", median: float | None = 1.0) -> dict:
    row = result(impl, median or 0.0, 0.01, status="ok")
    row.update({"num_heads": heads, "status": status, "median_s": median if status == "ok" else None,
                "iqr_s": 0.01 if status == "ok" else None, "ok": status == "ok"})
    return row


@pytest.mark.parametrize("status", ["crashed", "timeout", "error", "fail"])
def test_a_crashed_or_failed_current_point_fails_the_gate(tmp_path: Path, status: str) -> None:
    base = write_sweep(tmp_path / "base", [sweep_row(1, "sdpa"), sweep_row(2, "sdpa")])
    current = write_sweep(tmp_path / "current", [sweep_row(1, "sdpa", status), sweep_row(2, "sdpa", status)])
    outcome = run_compare(str(base), str(current))
    assert outcome.exit_code == 1, outcome.output
    assert "OK: no regression" not in outcome.stdout and "FAIL" in outcome.stdout


def test_a_point_missing_from_current_fails_unless_allowed(tmp_path: Path) -> None:
    base = write_sweep(tmp_path / "base", [sweep_row(1, "sdpa"), sweep_row(2, "sdpa")])
    current = write_sweep(tmp_path / "current", [sweep_row(1, "sdpa"), sweep_row(2, "sdpa", "skipped")])
    outcome = run_compare(str(base), str(current))
    assert outcome.exit_code == 1 and "MISSING" in outcome.stdout and "--allow-missing" in outcome.stdout
    assert run_compare(str(base), str(current), "--allow-missing").exit_code == 0


def test_nothing_to_match_is_exit_2(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run.json", [result("sdpa", 1.0, 0.01)])
    sweep = write_sweep(tmp_path / "sweep", [sweep_row(1, "sdpa")])
    other = write_sweep(tmp_path / "other", [sweep_row(8, "sdpa")])
    mixed = run_compare(str(run), str(sweep))
    assert mixed.exit_code == 2 and "cannot compare a run" in mixed.stderr
    apart = run_compare(str(sweep), str(other))
    assert apart.exit_code == 2 and "nothing to compare" in apart.stderr


@pytest.mark.parametrize("repetitions", [None, 1, 3], ids=["written before repetitions", "one", "three"])
def test_a_slowdown_the_samples_cannot_decide_fails_as_undecided(tmp_path: Path, repetitions: int | None) -> None:
    once = result("sdpa", 1.0, 0.01, repetitions=repetitions or 1)
    if repetitions is None:
        del once["samples_s"]
    base = write_run(tmp_path / "base.json", [once])
    current = write_run(tmp_path / "current.json", [{**once, "median_s": 1.3, "samples_s": [
        v * 1.3 for v in once.get("samples_s", [])] or None}])
    outcome = run_compare(str(base), str(current))
    assert outcome.exit_code == 3 and "UNDECIDED" in outcome.stdout and "rank test needs 4" in outcome.stdout
    assert "REGRESSION:" not in outcome.stdout  # not called beyond the noise: the noise is what it cannot tell
    counted = json.loads(run_compare(str(base), str(current), "--json").stdout)
    assert (counted["regressions"], counted["undecided"], counted["exit_code"]) == (0, 1, 3)
    within = write_run(tmp_path / "within.json", [{**once, "median_s": 1.05}])
    assert run_compare(str(base), str(within)).exit_code == 0, "inside the threshold, nothing needs deciding"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"42", "not an mha results.json"),
        (b'"a string"', "not an mha results.json"),
        (b"\xff\xfe\x00", "not UTF-8"),
        (b"{not json", "not valid JSON"),
        (b'{"config": {}, "results": [{"impl": "sdpa", "status": "ok", "median_s": 1' + b"0" * 400 + b"}]}", "not a number"),
        (b'{"config": {}, "results": [{"impl": "sdpa", "status": "ok", "median_s": true}]}', "not a number"),
        (b'{"config": {}, "results": [7]}', "is not a result"),
        (b'{"axes": [{"path": "num_heads"}], "rows": [{"impl": "sdpa", "status": "ok"}]}', "no value for the swept"),
    ],
)
def test_damaged_or_foreign_json_is_exit_2_without_a_traceback(tmp_path: Path, content: bytes, expected: str) -> None:
    good = write_run(tmp_path / "good.json", [result("sdpa", 1.0, 0.01)])
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    for args in ((str(good), str(bad)), (str(bad), str(good))):
        outcome = run_compare(*args)
        assert outcome.exit_code == 2, outcome.output
        assert expected in outcome.stderr and "Traceback" not in outcome.output


def test_json_output_is_valid_even_with_nan(tmp_path: Path) -> None:
    base = write_run(tmp_path / "base.json", [result("sdpa", 1.0, 0.01)])
    current = tmp_path / "current.json"
    text = write_run(current, [result("sdpa", 1.0, 0.01)]).read_text().replace('"median_s": 1.0', '"median_s": NaN')
    assert "NaN" in text
    current.write_text(text)
    outcome = run_compare(str(base), str(current), "--json")
    json.loads(outcome.stdout, parse_constant=lambda name: pytest.fail(f"{name} in the JSON output"))


def test_a_backward_is_never_matched_with_a_forward(tmp_path: Path) -> None:
    backward = {**result("sdpa", 3.0, 0.02), "pass": "backward"}
    base = write_run(tmp_path / "base.json", [result("sdpa", 1.0, 0.02), backward])
    current = write_run(tmp_path / "current.json", [result("sdpa", 1.0, 0.02), {**backward, "median_s": 3.05}])
    assert run_compare(str(base), str(current), "--fail-on", "median:10%").exit_code == 0  # each against its own pass
    only_forward = write_run(tmp_path / "forward.json", [result("sdpa", 1.0, 0.02)])
    outcome = run_compare(str(base), str(only_forward))
    assert outcome.exit_code == 1 and "MISSING" in outcome.stdout  # the backward BASE measured is gone
    only_backward = write_run(tmp_path / "backward.json", [backward])
    assert run_compare(str(only_forward), str(only_backward)).exit_code == 2  # nothing matches at all


def test_a_file_from_a_newer_mha_is_refused_and_an_older_one_read(tmp_path: Path) -> None:
    from mha_cli.results import SCHEMA_VERSION, read_results

    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1, "config": {}, "results": []}))
    with pytest.raises(UsageError, match="written by a newer mha"):
        read_results(newer)
    older = tmp_path / "older.json"  # schema 1, before sweep rows carried every result field
    older.write_text(json.dumps({"schema_version": 1, "axes": [{"path": "num_heads", "values": [1]}],
                                 "rows": [{"point": 0, "num_heads": 1, "impl": "sdpa", "status": "ok", "median_s": 1e-3}]}))
    (entry,) = load(older).entries
    assert entry.result.median_s == 1e-3 and entry.result.pass_ == "forward" and entry.params == {"num_heads": 1}


def test_the_rank_test_decides_on_synthetic_samples() -> None:
    from mha_cli.rank_test import p_slower, ratio_interval

    same = [1.0, 1.02, 0.98, 1.01, 0.99]
    assert p_slower(same, same) > 0.4  # identical: nothing to see
    assert p_slower(same, [v * 1.2 for v in same]) == pytest.approx(1 / 252)  # every current above every base
    assert p_slower([v * 1.2 for v in same], same) == 1.0  # faster is never "slower"
    assert p_slower(same[:3], [v * 2 for v in same[:3]]) == pytest.approx(1 / 20)  # 3 and 3 cannot reach 5%: 1/20
    interval = ratio_interval(same, [v * 1.2 for v in same])
    assert interval is not None and interval.low < 1.2 < interval.high and interval.estimate == pytest.approx(1.2, rel=0.02)
    big = [1.0 + 0.01 * (k % 7) for k in range(40)]  # the normal approximation, ties included
    assert p_slower(big, [v * 1.05 for v in big]) < 0.05 and p_slower(big, big) > 0.4


def test_relative_to_pairs_each_repetition_with_the_yardstick(tmp_path: Path) -> None:
    # CURRENT ran on a machine 40% slower: both implementations slowed alike, so relative to sdpa nothing changed,
    # while measured in seconds everything did.
    base = write_run(tmp_path / "base.json", [result("sdpa", 1.0, 0.05), result("mine", 2.0, 0.05)])
    slow_machine = write_run(tmp_path / "slow.json", [result("sdpa", 1.4, 0.05), result("mine", 2.8, 0.05)])
    outcome = run_compare(str(base), str(slow_machine), "--relative-to", "sdpa", "--json")
    document = json.loads(outcome.stdout)
    assert outcome.exit_code == 0, outcome.output
    assert [(r["impl"], r["verdict"]) for r in document["rows"]] == [("mine", "ok")] and document["relative_to"] == "sdpa"
    # mine 20% slower relative to sdpa, repetition by repetition: a regression found across machines.
    mine_slower = write_run(tmp_path / "mine.json", [result("sdpa", 1.4, 0.05), result("mine", 2.8 * 1.2, 0.05)])
    outcome = run_compare(str(base), str(mine_slower), "--relative-to", "sdpa")
    assert outcome.exit_code == 3 and "REGRESSION" in outcome.stdout
    assert run_compare(str(base), str(mine_slower), "--relative-to", "flex").exit_code == 2  # measured by neither


def test_relative_to_keeps_repetitions_paired_when_one_was_lost(tmp_path: Path) -> None:
    yardstick = {**result("sdpa", 3.0, 0.5), "samples_s": [1.0, 2.0, 3.0, 4.0, 5.0]}
    mine = {**result("mine", 6.0, 0.5), "samples_s": [None, 4.0, 6.0, 8.0, 10.0]}  # twice sdpa, repetition 1 lost
    base = write_run(tmp_path / "base.json", [yardstick, mine])
    current = write_run(tmp_path / "current.json", [yardstick, mine])
    (row,) = json.loads(run_compare(str(base), str(current), "--relative-to", "sdpa", "--json").stdout)["rows"]
    assert row["base"] == pytest.approx(2.0) and row["current"] == pytest.approx(2.0), row


def test_relative_to_still_fails_when_the_yardstick_itself_breaks(tmp_path: Path) -> None:
    base = write_run(tmp_path / "base.json", [result("sdpa", 1.0, 0.05), result("mine", 2.0, 0.05)])
    broken = write_run(tmp_path / "broken.json", [{**result("sdpa", 1.0, 0.05), "status": "error", "reason": "boom"},
                                                   result("mine", 2.0, 0.05)])
    outcome = run_compare(str(base), str(broken), "--relative-to", "sdpa", "--json")
    verdicts = {r["impl"]: r["verdict"] for r in json.loads(outcome.stdout)["rows"]}
    assert outcome.exit_code == 1 and verdicts == {"sdpa": "FAIL", "mine": "not compared"}


def test_busy_rows_are_flagged_in_the_comparison(tmp_path: Path) -> None:
    base = write_run(tmp_path / "base.json", [result("sdpa", 1.0, 0.02)])
    busy = write_run(tmp_path / "busy.json", [{**result("sdpa", 1.0, 0.02), "busy": True, "load": 0.5}])
    document = json.loads(run_compare(str(base), str(busy), "--json").stdout)
    assert document["busy"] == 1 and document["rows"][0]["busy"] is True
    assert "busy" in run_compare(str(base), str(busy)).stdout


def test_a_slowdown_every_implementation_at_a_point_shares_is_the_machines(tmp_path: Path) -> None:
    base = write_run(tmp_path / "base.json", [result("sdpa", 1.0, 0.05), result("mine", 2.0, 0.05)])
    slow_machine = write_run(tmp_path / "slow.json", [result("sdpa", 1.4, 0.05), result("mine", 2.8, 0.05)])
    outcome = run_compare(str(base), str(slow_machine), "--json")
    document = json.loads(outcome.stdout)
    assert outcome.exit_code == 0, outcome.output
    assert {r["verdict"] for r in document["rows"]} == {"slower with the rest"}
    assert "the machine, or a change common to all of them" in document["rows"][0]["note"]
    # Only mine slower, in seconds and against sdpa: a regression.
    mine_only = write_run(tmp_path / "mine.json", [result("sdpa", 1.0, 0.05), result("mine", 2.4, 0.05)])
    verdicts = {r["impl"]: r["verdict"] for r in json.loads(run_compare(str(base), str(mine_only), "--json").stdout)["rows"]}
    assert verdicts == {"sdpa": "ok", "mine": "REGRESSION"}
    # The machine 10% faster in CURRENT, mine 15% slower against sdpa: +3.5% in seconds, and still a regression.
    faster_machine = write_run(tmp_path / "faster.json", [result("sdpa", 0.9, 0.05), result("mine", 2.0 * 0.9 * 1.15, 0.05)])
    rows = {r["impl"]: r for r in json.loads(run_compare(str(base), str(faster_machine), "--json").stdout)["rows"]}
    assert rows["mine"]["verdict"] == "REGRESSION" and rows["mine"]["change"] == pytest.approx(0.15, abs=0.01)
    assert "in seconds +3.5%" in rows["mine"]["note"] and rows["sdpa"]["verdict"] == "ok"
    # Alone at its point, an implementation has nothing to be judged against: the seconds decide.
    alone = write_run(tmp_path / "alone.json", [result("sdpa", 1.0, 0.05)])
    slower_alone = write_run(tmp_path / "slower-alone.json", [result("sdpa", 1.4, 0.05)])
    assert run_compare(str(alone), str(slower_alone)).exit_code == 3


def test_a_slowdown_the_rest_does_not_share_is_never_called_the_machines(tmp_path: Path) -> None:
    # mine's slow repetitions are sdpa's fast ones, so per repetition the ratio is noisy; sdpa moved +3% only.
    # Whatever the test makes of mine's +36%, the rest did not slow: "slower with the rest" would be a lie.
    def noisy(impl: str, median: float, reverse: bool) -> dict:
        row = result(impl, median, 0.3, repetitions=15)
        return {**row, "samples_s": row["samples_s"][::-1] if reverse else row["samples_s"]}

    base = write_run(tmp_path / "base.json", [noisy("sdpa", 1.0, False), noisy("mine", 2.0, True)])
    current = write_run(tmp_path / "current.json", [noisy("sdpa", 1.03, False), noisy("mine", 2.8, True)])
    rows = {r["impl"]: r for r in json.loads(run_compare(str(base), str(current), "--json").stdout)["rows"]}
    assert rows["mine"]["verdict"] in ("REGRESSION", "slower within noise"), rows["mine"]
    assert "in seconds +40.0%, the rest of the point +3.0%" in rows["mine"]["note"]


def test_the_median_interval_takes_the_order_statistics_the_sample_size_allows() -> None:
    from mha_cli.rank_test import median_interval

    assert median_interval([3.0, 1.0, 2.0, 5.0, 4.0]) == (1.0, 5.0)  # 5 values: min and max (94%)
    assert median_interval([float(v) for v in range(1, 16)]) == (4.0, 12.0)  # 15: the 4th and 12th (96%)
    assert median_interval([]) is None
