"""Sweeps under faults: kill -9 mid-write, a full disk, two writers, SIGTERM and SIGHUP, nothing that ran."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mha_cli.cli import app
from mha_cli.sweep.store import SweepFolder

from ..helpers import FAST_OVERRIDES, mha_process, wait_for_line

SMALL = ["impls=[sdpa]", *FAST_OVERRIDES, "--no-plot"]


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def point_counts(folder: Path) -> dict[int, int]:
    """How many complete records each point has in points.jsonl (must be exactly one)."""
    counts: dict[int, int] = {}
    for line in (folder / "points.jsonl").read_text().splitlines():
        point = json.loads(line)["point"]
        counts[point] = counts.get(point, 0) + 1
    return counts


def test_resume_after_a_torn_last_line_keeps_every_point_exactly_once(tmp_path: Path) -> None:
    folder = tmp_path / "sweep"
    first = invoke("sweep", "--heads", "1,2,4,8", *SMALL, "--output-dir", str(folder))
    assert first.exit_code == 0, first.output
    # kill -9 in the middle of writing the last point: drop its newline and half of it.
    lines = (folder / "points.jsonl").read_bytes().splitlines(keepends=True)
    (folder / "points.jsonl").write_bytes(b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
    resumed = invoke("sweep", "--resume", str(folder), "--json")
    assert resumed.exit_code == 0, resumed.output
    assert "cut off mid-write" in resumed.stderr and "points.jsonl.torn" in resumed.stderr
    assert point_counts(folder) == {0: 1, 1: 1, 2: 1, 3: 1}
    summary = json.loads(resumed.stdout)
    assert summary["status"] == "complete" and summary["counts"]["done"] == 4
    assert (folder / "points.jsonl.torn").read_bytes() == lines[-1][: len(lines[-1]) // 2] + b"\n"


def test_damaged_lines_are_reported_by_line_and_their_points_rerun(tmp_path: Path) -> None:
    folder = tmp_path / "sweep"
    assert invoke("sweep", "--heads", "1,2,4", *SMALL, "--output-dir", str(folder)).exit_code == 0
    lines = (folder / "points.jsonl").read_bytes().splitlines(keepends=True)
    damaged = [lines[0], b"\xff not json\n", b'{"point": 99, "params": {}, "status": "done", "report": {"results": []}}\n', lines[2]]
    (folder / "points.jsonl").write_bytes(b"".join(damaged))  # point 1's line is gone, two lines are garbage
    resumed = invoke("sweep", "--resume", str(folder), "--json")
    assert resumed.exit_code == 0, resumed.output
    assert "line 2: not UTF-8" in resumed.stderr and "line 3: point 99 is outside the grid" in resumed.stderr
    assert "Traceback" not in resumed.output
    assert json.loads(resumed.stdout)["counts"] == {
        "points": 3, "in_this_sweep": 3, "done": 3, "skipped": 0, "crashed": 0, "timeout": 0, "pending": 0}


def test_a_full_disk_stops_with_exit_1_and_the_next_resume_completes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "sweep"
    real_append = SweepFolder.append
    calls = {"n": 0}

    def append_until_full(self: SweepFolder, record: dict) -> None:
        calls["n"] += 1
        if calls["n"] == 3:  # the disk fills in the middle of the third record
            with open(self.points_file, "a") as file:
                file.write(json.dumps(record)[:40])
            raise OSError(errno.ENOSPC, "No space left on device", str(self.points_file))
        real_append(self, record)

    monkeypatch.setattr(SweepFolder, "append", append_until_full)
    full = invoke("sweep", "--heads", "1,2,4,8", *SMALL, "--output-dir", str(folder))
    assert full.exit_code == 1, full.output
    assert "No space left on device" in full.stderr and f"mha sweep --resume {folder}" in full.stderr
    assert "Traceback" not in full.output
    assert json.loads((folder / "summary.json").read_text())["status"] == "interrupted"
    monkeypatch.setattr(SweepFolder, "append", real_append)
    resumed = invoke("sweep", "--resume", str(folder), "--json")
    assert resumed.exit_code == 0, resumed.output
    assert point_counts(folder) == {0: 1, 1: 1, 2: 1, 3: 1}


def test_a_sweep_where_no_point_ran_exits_1_and_says_why(tmp_path: Path) -> None:
    result = invoke("sweep", "--heads", "3,5", *SMALL, "--output-dir", str(tmp_path / "s"))
    assert result.exit_code == 1
    assert "no point produced a result (2 skipped" in result.stderr and "not divisible" in result.stderr
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["counts"]["skipped"] == 2  # the user's own bad values stay `skipped`


def test_the_default_config_sweeps_batch_without_skipping(tmp_path: Path) -> None:
    result = invoke("sweep", "--batch", "1,8", "--seq-len", "16,512", *SMALL, "--json", "--no-save")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["counts"]["done"] == 4


def test_two_sweeps_into_one_folder_the_second_is_refused_with_the_pid(tmp_path: Path) -> None:
    folder = tmp_path / "sweep"
    first = mha_process("sweep", "--heads", "1,2,4,8", "impls=[sdpa]", "timing.min_run_time=2", "--no-plot",
                        "--output-dir", str(folder))
    try:
        for _ in range(600):  # until sweep.json is there: the first owns the folder
            if (folder / "sweep.json").exists():
                break
            time.sleep(0.05)
        for args in (["--heads", "1,2", *SMALL, "--output-dir", str(folder)], ["--resume", str(folder)]):
            second = subprocess.run([sys.executable, "-m", "mha_cli", "sweep", *args], capture_output=True, text=True, timeout=120)
            assert second.returncode == 2, second.stderr
            assert f"in use by another mha process (PID {first.pid})" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
    # The second never wrote: the folder is the first's (or, stopped before its first point, nothing is left).
    if (folder / "sweep.json").exists():
        assert json.loads((folder / "sweep.json").read_text())["grid"]["axes"][0]["values"] == [1, 2, 4, 8]
    else:
        assert not folder.exists() or not [p for p in folder.iterdir() if p.name != ".mha.lock"]


def test_a_cli_sweep_stopped_before_its_first_point_leaves_nothing_to_refuse_the_retry(tmp_path: Path) -> None:
    folder = tmp_path / "sweep"
    args = ["sweep", "--heads", "1,2", "impls=[sdpa,mine]", "implementations={mine: no_such_module:fn}",
            "--output-dir", str(folder)]
    for _ in range(2):  # the retry meets the same error, not "already holds results"
        done = subprocess.run([sys.executable, "-m", "mha_cli", *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and "no module named 'no_such_module'" in done.stderr, done.stderr
        assert not folder.exists() or not [p for p in folder.iterdir() if p.name != ".mha.lock"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_keep_the_points_and_mark_the_summary(tmp_path: Path, signum: int) -> None:
    folder = tmp_path / "sweep"
    process = mha_process("sweep", "--heads", "1,2,4,8", "impls=[sdpa]", "timing.min_run_time=0.5", "--no-plot",
                          "--output-dir", str(folder))
    # While the points are being timed: their "done" lines come only after the last repetition, so a signal sent
    # on one of those can reach a process that has already finished (a race CI lost once).
    wait_for_line(process, "repetition 3/")
    process.send_signal(signum)
    _, rest = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, rest
    assert "Traceback" not in rest and f"interrupted ({signal.Signals(signum).name})" in rest
    assert json.loads((folder / "summary.json").read_text())["status"] == "interrupted"
    assert len(SweepFolder(folder).records()) >= 1
    resumed = invoke("sweep", "--resume", str(folder), "--json")
    assert resumed.exit_code == 0 and json.loads(resumed.stdout)["counts"]["done"] == 4


def test_sigterm_with_isolate_kills_the_child_and_removes_its_folder(tmp_path: Path) -> None:
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    process = mha_process("sweep", "--heads", "1,2", "impls=[sdpa]", "timing.min_run_time=60", "--no-plot", "--isolate",
                          "--output-dir", str(tmp_path / "sweep"), env={"TMPDIR": str(temporary)})
    for _ in range(600):  # until the child has its temporary folder and config
        children = list(temporary.glob("mha-point-*/config.yaml"))
        if children:
            break
        time.sleep(0.05)
    assert children, "the isolated point never started"
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    _, rest = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, rest
    assert list(temporary.iterdir()) == []
    left = subprocess.run(["pgrep", "-f", str(children[0])], capture_output=True, text=True)
    assert left.stdout.strip() == "", "the isolated child outlived the sweep"
    # Stopped before its first point: nothing to resume, so nothing is left to refuse the retry.
    assert not (tmp_path / "sweep").exists()


def test_nohup_keeps_sighup_ignored(tmp_path: Path) -> None:
    code = ("import signal; signal.signal(signal.SIGHUP, signal.SIG_IGN); "
            "from mha_cli.signals import install_handlers; install_handlers(); "
            "print(signal.getsignal(signal.SIGHUP) is signal.SIG_IGN, signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["True", "True"]


def test_kill_9_then_resume_keeps_every_point_once(tmp_path: Path) -> None:
    folder = tmp_path / "sweep"
    process = mha_process("sweep", "--heads", "1,2,4,8", "impls=[sdpa]", "timing.min_run_time=0.5", "--no-plot",
                          "--output-dir", str(folder))
    wait_for_line(process, ": done in", count=2)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=60)
    resumed = invoke("sweep", "--resume", str(folder), "--json")
    assert resumed.exit_code == 0, resumed.output
    assert point_counts(folder) == {0: 1, 1: 1, 2: 1, 3: 1}
