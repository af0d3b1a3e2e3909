"""Running sweep points: in this process (default), or each in a child process (--isolate)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import config_to_yaml
from ..errors import ExitCode, MhaError
from .grid import Point

Record = dict[str, Any]


def _record(point: Point, status: str, reason: str = "", report: dict[str, Any] | None = None, wall_s: float = 0.0) -> Record:
    return {"point": point.index, "params": point.params, "status": status, "reason": reason, "wall_s": wall_s, "report": report}


def run_in_process(point: Point, memory_limit: int | None) -> Record:
    """One point with run_experiment. Errors are recorded, not raised: the sweep goes on. Ctrl-C is raised."""
    from ..runner import run_experiment

    start = time.perf_counter()
    if point.config is None:
        return _record(point, "skipped", point.problem)
    try:
        report = run_experiment(point.config, memory_limit=memory_limit)
    except MhaError as error:  # the memory guard refusing, a device that is not there
        return _record(point, "skipped", error.message, wall_s=time.perf_counter() - start)
    except Exception as error:  # noqa: BLE001 - a crash of one point must not end the sweep
        return _record(point, "crashed", f"{type(error).__name__}: {error}", wall_s=time.perf_counter() - start)
    return _record(point, "done", report=report.to_dict(), wall_s=time.perf_counter() - start)


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def run_isolated(point: Point, memory_limit: int | None, timeout: float | None) -> Record:
    """One point as `python -m mha_cli run ... --json` in its own process group."""
    if point.config is None:
        return _record(point, "skipped", point.problem)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mha-point-") as folder:
        config_path = Path(folder) / "config.yaml"
        config_path.write_text(config_to_yaml(point.config), encoding="utf-8")
        command = [sys.executable, "-m", "mha_cli", "run", str(config_path), "--json", "--no-save"]
        if memory_limit is not None:
            command += ["--max-memory", str(memory_limit)]
        env = {**os.environ, "NO_COLOR": "1"}
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
        )
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            return _record(point, "timeout", f"did not finish within --point-timeout {timeout:g} s; killed",
                           wall_s=time.perf_counter() - start)
        except KeyboardInterrupt:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
    wall = time.perf_counter() - start
    last_line = next((line for line in reversed(stderr.strip().splitlines()) if line.strip()), "")
    if process.returncode in (ExitCode.OK, ExitCode.FAILED) and stdout.strip():
        try:
            return _record(point, "done", report=json.loads(stdout), wall_s=wall)
        except json.JSONDecodeError:
            pass
    if process.returncode == ExitCode.USAGE:
        return _record(point, "skipped", last_line.removeprefix("error: "), wall_s=wall)
    if process.returncode < 0:
        why = f"killed by {_signal_name(process.returncode)}"
        if process.returncode == -signal.SIGKILL:
            why += " (out of memory?)"
    else:
        why = f"exited with code {process.returncode}"
    return _record(point, "crashed", f"{why}: {last_line}" if last_line else why, wall_s=wall)


def run_points(
    points: list[Point],
    on_record: Callable[[Record], None],
    *,
    isolate: bool = False,
    point_timeout: float | None = None,
    memory_limit: int | None = None,
    before_point: Callable[[Point], None] = lambda _: None,
) -> None:
    """Run each point and hand its record over at once (the caller stores it before the next starts)."""
    for point in points:
        before_point(point)
        if isolate:
            record = run_isolated(point, memory_limit, point_timeout)
        else:
            record = run_in_process(point, memory_limit)
        on_record(record)


class Progress:
    """What a sweep reports while it runs; the CLI draws it, tests can record it."""

    def start(self, total: int, already_done: int) -> None: ...

    def point_started(self, point: Point) -> None: ...

    def point_finished(self, point: Point, record: Record) -> None: ...


def execute(
    grid,  # type: ignore[no-untyped-def]
    shard,
    folder,
    *,
    isolate: bool = False,
    point_timeout: float | None = None,
    memory_limit: int | None = None,
    progress: Progress | None = None,
    plot: bool = True,
) -> dict[str, Any]:
    """Run the shard's points not yet in the folder, storing each at once; return the summary.

    On Ctrl-C the finished points are already on disk: the summary is written
    marked `interrupted` and KeyboardInterrupt goes on to the caller.
    """
    from .store import write_summary
    from .summary import summarize

    progress = progress or Progress()
    mine = [p for p in grid.points() if shard.owns(p.index)]
    records = folder.records() if folder is not None else []
    done = {r["point"] for r in records}
    todo = [p for p in mine if p.index not in done]
    by_index = {p.index: p for p in mine}
    progress.start(len(mine), len(mine) - len(todo))

    def keep(record: Record) -> None:
        if folder is not None:
            folder.append(record)
        records.append(record)
        progress.point_finished(by_index[record["point"]], record)

    def summary(interrupted: bool) -> dict[str, Any]:
        result = summarize(grid, records, shards=[str(shard)], owned=len(mine), interrupted=interrupted)
        if folder is not None:
            write_summary(folder, result, plot=plot)
        return result

    try:
        run_points(todo, keep, isolate=isolate, point_timeout=point_timeout, memory_limit=memory_limit,
                   before_point=progress.point_started)
    except KeyboardInterrupt:
        summary(interrupted=True)
        raise
    return summary(interrupted=False)
