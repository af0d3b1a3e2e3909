"""Running sweeps: points kept as they finish, resume, Ctrl-C, isolation, shards and merge."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mha_cli.config import load_config
from mha_cli.sweep.grid import Shard, build_grid
from mha_cli.sweep.merge import merge_shards
from mha_cli.sweep.runner import Progress, execute
from mha_cli.sweep.store import SweepFolder

from ..helpers import FAST_OVERRIDES, flags, mha_process, wait_for_line

REPO = Path(__file__).resolve().parents[2]


def small_grid(**given: str):  # type: ignore[no-untyped-def]
    config = load_config(None, ["mask.key_padding=null", "impls=[manual,sdpa]", *FAST_OVERRIDES])
    return build_grid(config, flags(**given), None)


class StopAfter(Progress):
    """Simulates Ctrl-C after n finished points."""

    def __init__(self, n: int) -> None:
        self.n = n

    def point_finished(self, point, record) -> None:  # type: ignore[no-untyped-def]
        self.n -= 1
        if self.n == 0:
            raise KeyboardInterrupt


def test_points_are_kept_and_an_interrupted_sweep_resumes(tmp_path: Path) -> None:
    grid = small_grid(heads="1,2,3,4")  # 3 does not divide 64: skipped, the sweep goes on
    folder = SweepFolder(tmp_path / "sweep")
    folder.create(grid, Shard(1, 1))
    with pytest.raises(KeyboardInterrupt):
        execute(grid, Shard(1, 1), folder, progress=StopAfter(2), plot=False)
    # The skipped point is recorded when it is found, the others when their repetitions are timed.
    assert [r["point"] for r in folder.records()] == [0, 2]
    interrupted = json.loads((folder.path / "summary.json").read_text())
    assert interrupted["status"] == "interrupted" and interrupted["counts"]["pending"] == 2

    summary = execute(grid, Shard(1, 1), folder, plot=False)
    records = folder.records()
    assert [r["point"] for r in records] == [0, 1, 2, 3]
    assert folder.points_file.read_text().count("\n") == 4  # the first two did not run again
    assert summary["status"] == "complete" and summary["counts"]["done"] == 3 and summary["counts"]["skipped"] == 1
    skipped = next(r for r in records if r["status"] == "skipped")
    assert skipped["params"] == {"num_heads": 3} and "not divisible" in skipped["reason"]


def test_shard_and_merge_equal_the_unsharded_summary(tmp_path: Path) -> None:
    grid = small_grid(heads="1,2,4", seq_len="8,16")
    whole = SweepFolder(tmp_path / "whole")
    whole.create(grid, Shard(1, 1))
    unsharded = execute(grid, Shard(1, 1), whole, plot=False)
    # Shard folders holding exactly what `--shard I/3` assigns, cut from the same measured points.
    shards = []
    for index in (1, 2, 3):
        shard = Shard(index, 3)
        folder = SweepFolder(tmp_path / f"shard{index}")
        folder.create(grid, shard)
        for record in whole.records():
            if shard.owns(record["point"]):
                folder.append(record)
        shards.append(folder.path)
    merged, _ = merge_shards(shards, tmp_path / "merged", plot=False)
    bookkeeping = ("created", "status", "shards")  # when and in how many pieces, not what was found
    assert {k: v for k, v in merged.items() if k not in bookkeeping} == {k: v for k, v in unsharded.items() if k not in bookkeeping}
    assert merged["status"] == "complete" and sorted(merged["shards"]) == ["1/3", "2/3", "3/3"]


def test_a_shard_runs_only_its_points(tmp_path: Path) -> None:
    grid = small_grid(heads="1,2,4,8")
    folder = SweepFolder(tmp_path / "s")
    folder.create(grid, Shard(2, 3))
    summary = execute(grid, Shard(2, 3), folder, plot=False)
    assert [r["point"] for r in folder.records()] == [1]
    assert summary["counts"]["in_this_sweep"] == 1 and summary["counts"]["points"] == 4


def test_merge_refuses_shards_of_different_sweeps(tmp_path: Path) -> None:
    from mha_cli.errors import UsageError

    SweepFolder(tmp_path / "a").create(small_grid(heads="1,2"), Shard(1, 2))
    SweepFolder(tmp_path / "b").create(small_grid(heads="1,4"), Shard(2, 2))
    with pytest.raises(UsageError, match="different sweep"):
        merge_shards([tmp_path / "a", tmp_path / "b"], tmp_path / "m", plot=False)


def test_merge_of_missing_shards_is_partial(tmp_path: Path) -> None:
    grid = small_grid(heads="1,2")
    SweepFolder(tmp_path / "a").create(grid, Shard(1, 2))
    summary, _ = merge_shards([tmp_path / "a"], tmp_path / "m", plot=False)
    assert summary["status"] == "partial" and summary["counts"]["pending"] == 2


def test_ctrl_c_keeps_finished_points_and_resume_finishes(tmp_path: Path) -> None:
    folder = tmp_path / "sweep"
    command = [sys.executable, "-m", "mha_cli", "sweep", "--heads", "1,2,4,8", "timing.min_run_time=0.3",
               "impls=[sdpa]", "--output-dir", str(folder), "--no-plot"]
    process = mha_process(*command[3:])
    # While the points are timed: their "done" lines come only after the last repetition (see test_faults).
    wait_for_line(process, "repetition 3/")
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=120)
    assert process.returncode == 130, rest
    kept = SweepFolder(folder).records()
    assert len(kept) >= 2 and "Traceback" not in rest
    assert json.loads((folder / "summary.json").read_text())["status"] == "interrupted"

    resumed = subprocess.run([sys.executable, "-m", "mha_cli", "sweep", "--resume", str(folder), "--json"],
                             capture_output=True, text=True, cwd=REPO, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(kept)} of 4 points already done" in resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["status"] == "complete" and summary["counts"]["done"] == 4
    assert [r["point"] for r in SweepFolder(folder).records()] == [0, 1, 2, 3]


def test_isolate_records_a_point_that_times_out(tmp_path: Path) -> None:
    folder = tmp_path / "sweep"
    done = subprocess.run(
        [sys.executable, "-m", "mha_cli", "sweep", "sweep={timing.min_run_time: [0.01, 60]}", "impls=[sdpa]",
         "--isolate", "--point-timeout", "15", "--output-dir", str(folder), "--json", "--no-plot"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert done.returncode == 1, done.stderr  # a point that timed out fails the sweep, after the others ran
    assert "1 point(s) timed out" in done.stderr
    records = {r["params"]["timing.min_run_time"]: r for r in SweepFolder(folder).records()}
    assert records[0.01]["status"] == "done" and records[0.01]["report"]["results"][0]["status"] == "ok"
    assert records[60]["status"] == "timeout" and "--point-timeout 15" in records[60]["reason"]
    assert json.loads(done.stdout)["counts"]["timeout"] == 1


def test_merge_reports_unreadable_lines_of_a_shard(tmp_path: Path) -> None:
    grid = small_grid(heads="1,2")
    folder = SweepFolder(tmp_path / "a")
    folder.create(grid, Shard(1, 1))
    execute(grid, Shard(1, 1), folder, plot=False)
    with open(folder.points_file, "a") as file:
        file.write("garbage\n")
    summary, warnings = merge_shards([tmp_path / "a"], tmp_path / "m", plot=False)
    assert summary["counts"]["done"] == 2 and warnings == [f"{folder.points_file} line 3: not a JSON record; that point counts as pending"]
