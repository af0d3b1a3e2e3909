"""Repetitions, each in a fresh process, the implementations interleaved; the machine's load read from the OS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mha_cli.cli import app
from mha_cli.machine_load import BUSY_SHARE, load_between, snapshot
from mha_cli.experiment import resolve
from mha_cli.repetitions import rotated, time_repetition
from mha_cli.runner import run_experiment

from .helpers import small_config
from .your_impls import reference

TIMING = {"min_run_time": 0.02, "threads": 1}


def test_each_repetition_is_timed_in_a_fresh_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "pids"
    monkeypatch.setenv("MHA_TEST_PID_LOG", str(log))
    config = small_config(impls=["sdpa", "mine"], implementations={"mine": reference("pid_logged")},
                          timing={**TIMING, "repetitions": 4})
    sdpa, mine = run_experiment(config).results
    assert mine.ok and len(mine.samples_s) == 4 and len(sdpa.samples_s) == 4 and mine.runs >= 4
    pids = [int(line) for line in log.read_text().split()]
    assert pids[0] == os.getpid()  # checked here first
    timed_in = set(pids) - {os.getpid()}
    assert len(timed_in) == 4, "one process per repetition"
    assert sdpa.median_s == pytest.approx(sorted(sdpa.samples_s)[1:3][0], rel=1) and mine.iqr_s is not None


def test_one_repetition_is_timed_in_this_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "pids"
    monkeypatch.setenv("MHA_TEST_PID_LOG", str(log))
    config = small_config(impls=["mine"], implementations={"mine": reference("pid_logged")}, timing={**TIMING, "repetitions": 1})
    (mine,) = run_experiment(config).results
    assert mine.ok and len(mine.samples_s) == 1
    assert {int(line) for line in log.read_text().split()} == {os.getpid()}


def test_the_order_rotates_so_drift_hits_every_implementation_alike() -> None:
    assert [rotated(["a", "b", "c"], i) for i in range(4)] == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]
    messages: list[str] = []
    run_experiment(small_config(impls=["torch", "manual", "sdpa"], timing={**TIMING, "repetitions": 3}), progress=messages.append)
    assert [m for m in messages if m.startswith("repetition")] == [
        f"repetition {i}/3 (a fresh process): timing manual, sdpa, torch" for i in (1, 2, 3)]


def test_slow_calls_get_fewer_repetitions_within_the_cap_and_say_so() -> None:
    config = small_config(impls=["mine"], implementations={"mine": reference("slow")},
                          timing={**TIMING, "repetitions": 5, "max_row_time": 0.15})
    (mine,) = run_experiment(config).results
    assert mine.ok and 1 <= len(mine.samples_s) < 5
    assert f"{len(mine.samples_s)} of 5 repetitions" in mine.reason and "timing.max_row_time" in mine.reason


def test_a_lost_repetition_is_said_and_the_rest_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MHA_TEST_PARENT", str(os.getpid()))
    config = small_config(impls=["sdpa", "mine"], implementations={"mine": reference("dies_in_a_repetition")},
                          timing={**TIMING, "repetitions": 2})
    sdpa, mine = run_experiment(config).results
    assert mine.status == "error" and "repetition 1 lost" in mine.reason and "no repetition was timed" in mine.reason
    assert "exit code 9" in mine.reason  # its process died: the point's other rows lose that repetition too
    assert sdpa.status == "error" and "repetition 2 lost" in sdpa.reason
    report = run_experiment(config.model_copy(update={"impls": ["sdpa"]}))
    assert report.results[0].ok, "and the next run starts a fresh server"


def test_vs_torch_comes_with_an_interval_from_the_paired_repetitions() -> None:
    torch_row, sdpa = run_experiment(small_config(impls=["torch", "sdpa"], timing={**TIMING, "repetitions": 4})).results
    low, high = sdpa.speedup_interval
    assert low <= sdpa.speedup_vs_torch <= high and torch_row.speedup_interval == [1.0, 1.0]


def test_a_busy_process_is_seen_and_flagged() -> None:
    busy = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 8\nwhile time.time() < end: pass"])
    try:
        time.sleep(0.3)
        start = snapshot()
        time.sleep(1.0)
        load = load_between(start, snapshot())
        assert load is not None and load.others > BUSY_SHARE and load.busy
        (row,) = run_experiment(small_config(impls=["sdpa"], timing={"min_run_time": 0.5, "threads": 1, "repetitions": 2})).results
        assert row.busy is True and row.load > BUSY_SHARE
        assert "timed again: other processes used the CPUs" in row.reason, row.reason
        # A slice timed again costs every try: its wall time, which timing.max_row_time caps, counts them all.
        config = resolve(small_config(impls=["sdpa"], timing={"threads": 1})).config
        found = time_repetition({"config": config, "order": ["sdpa"], "budget": 0.25})["sdpa"]
        assert found["retried"] >= 1 and found["wall_s"] >= 0.25 * (found["retried"] + 1), found
        result = CliRunner().invoke(app, ["run", "impls=[sdpa]", "timing.min_run_time=0.5", "timing.repetitions=2", "--no-save"])
        assert "BUSY MACHINE" in result.stdout and "BUSY: sdpa" in result.stdout
    finally:
        busy.kill()
        busy.wait()


def test_a_quiet_machine_is_not_called_busy_at_microsecond_rows() -> None:
    # Slices of a few milliseconds each are as short as /proc/stat's ticks: the load is read per point instead.
    start = snapshot()
    time.sleep(0.5)
    before = load_between(start, snapshot())
    if before is None or before.busy:
        pytest.skip("the machine is not quiet now (or its load is unknown): nothing to tell a quiet one by")
    config = small_config(impls=["torch", "manual", "sdpa"], timing={"min_run_time": 0.1, "threads": 1, "repetitions": 10})
    rows = run_experiment(config).results
    assert all(row.load is not None and row.load < BUSY_SHARE for row in rows), [row.load for row in rows]


KEEPS = """
import os, sys
from mha_cli.repetitions import keep_freed_memory
if sys.argv[1] == "keep":
    keep_freed_memory()
def resident():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
before = resident()
blocks = [bytearray(4 << 20) for _ in range(16)]  # 64 MB in 4 MB blocks, each written
del blocks
print(resident() - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_repetitions_process_keeps_freed_memory_so_calls_do_not_fault_it_in_again() -> None:
    kept = {how: int(subprocess.run([sys.executable, "-c", KEEPS, how], capture_output=True, text=True, check=True).stdout)
            for how in ("keep", "default")}
    assert kept["keep"] > 48 << 20, kept  # still the process's: the next call reuses it without page faults
    assert kept["default"] < 16 << 20, kept  # glibc's default gives 4 MB blocks back to the OS when freed


def test_sweeps_time_their_points_in_rounds(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["sweep", "--heads", "1,2", "impls=[sdpa,manual]", "timing.min_run_time=0.02",
                                      "timing.repetitions=3", "--json", "--no-plot", "--output-dir", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert all(len(row["samples_s"]) == 3 and row["runs"] >= 3 for row in rows)
    assert result.stderr.count("(a fresh process, 2 points)") == 3  # one process per round, for both points


def test_a_row_of_one_run_says_so_and_never_shows_a_spread(tmp_path: Path) -> None:
    args = ["sweep", "--heads", "1,2", "impls=[mine]", f"implementations.mine={reference('slower_than_a_repetitions_floor')}",
            "timing.min_run_time=0.001", "timing.repetitions=1", "--no-plot", "--output-dir"]
    result = CliRunner().invoke(app, [*args, str(tmp_path / "table")])
    assert result.exit_code == 0, result.output
    assert "runs" in result.stdout and "n/a (1 run)" in result.stdout and "±0.0%" not in result.stdout
    rows = json.loads((tmp_path / "table" / "summary.json").read_text())["rows"]
    assert [(row["runs"], row["iqr_s"], row["noisy"]) for row in rows] == [(1, None, True)] * 2
    run = CliRunner().invoke(app, ["run", "impls=[mine]", f"implementations.mine={reference('slower_than_a_repetitions_floor')}",
                                   "timing.min_run_time=0.001", "timing.repetitions=1", "--json", "--no-save"])
    (only,) = json.loads(run.stdout)["results"]
    assert only["runs"] == 1 and only["iqr_s"] is None and only["samples_s"] == [only["median_s"]]
