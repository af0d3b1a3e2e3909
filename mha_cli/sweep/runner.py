"""Running sweep points: in this process (default), or each in a child process (--isolate)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..arguments import (
    ArgumentTypeError,
    a_type,
    as_argument_error,
    check_flag,
    check_grid,
    check_memory_limit,
    check_path,
)
from ..config import Config, check_config, config_to_yaml
from ..errors import ConfigError, ExitCode, MhaError, UsageError
from ..output_folder import CLI_NAMES, DEFAULT_ROOT, PYTHON_NAMES, Naming, claimed, claimed_output, point_latest
from ..report.sweep_files import write_summary
from .grid import Grid, Point, Shard, grid_for
from .store import SWEEP_FILE, SWEEP_FILES, SweepFolder
from .summary import SweepSummary, summarize

Record = dict[str, Any]


def _record(point: Point, status: str, reason: str = "", report: dict[str, Any] | None = None, wall_s: float = 0.0) -> Record:
    return {"point": point.index, "params": point.params, "status": status, "reason": reason, "wall_s": wall_s, "report": report}


class BrokenCode(MhaError):
    """Code the config names (your implementation, your mask_mod) cannot be used: the sweep stops (exit 2), its
    finished points kept, rather than record every point as skipped for a reason that is the config's."""

    exit_code = ExitCode.USAGE


def run_in_rounds(points: list[Point], on_record: Callable[[Record], None], memory_limit: int | None,
                  progress: Progress) -> None:
    """The points in this process: each checked in turn, then timed in rounds over all of them (round k, one
    fresh process, times repetition k of every point), so that a point's repetitions spread over the sweep's
    whole duration and a slow spell of the machine cannot move every one of them. A point's record is handed
    over when its timing is done. Errors are recorded, not raised: the sweep goes on. Ctrl-C and a config error
    of code the config names (BrokenCode) are raised, the points timed so far recorded first."""
    from ..experiment import resolve
    from ..prepared import Prepared
    from ..runner import check_point, time_rounds

    checked: list[tuple[Point, Any, float]] = []
    for point in points:
        progress.point_started(point)
        if point.config is None:
            on_record(_record(point, "skipped", point.problem))
            continue
        start = time.perf_counter()
        try:
            found = check_point(Prepared(resolve(point.config)), memory_limit)
            checked.append((point, found, time.perf_counter() - start))
        except ConfigError as error:  # only code the config names fails this late: every point would
            _record_timed(checked, on_record, partial=True)
            raise BrokenCode(f"point {point.label or point.index}: {error.message}") from None
        except MhaError as error:  # the memory guard refusing, a device that is not there
            on_record(_record(point, "skipped", error.message, wall_s=time.perf_counter() - start))
        except Exception as error:  # noqa: BLE001 - a crash of one point must not end the sweep
            on_record(_record(point, "crashed", f"{type(error).__name__}: {error}", wall_s=time.perf_counter() - start))
    try:
        time_rounds([found for _, found, _ in checked], progress.note)
    except KeyboardInterrupt:
        _record_timed(checked, on_record, partial=True)
        raise
    _record_timed(checked, on_record, partial=False)


def _record_timed(checked: list[tuple[Point, Any, float]], on_record: Callable[[Record], None], partial: bool) -> None:
    """Records of checked points; when stopped part way (partial), only those with a time for every row.
    A point's wall time: its checks, and its own share of the rounds."""
    for point, found, checking in checked:
        if partial and not all(found.samples[name].slices for name in found.samples):
            continue  # pending: --resume times it again
        timing = sum(sample.spent for sample in found.samples.values())
        on_record(_record(point, "done", report=found.report().to_dict(), wall_s=checking + timing))
    checked.clear()


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
        message = stderr[stderr.rfind("error: "):].removeprefix("error: ").strip() if "error: " in stderr else last_line
        if " in the config:" in message.splitlines()[0]:
            raise BrokenCode(f"point {point.label or point.index}: {message}")
        return _record(point, "skipped", message.splitlines()[0], wall_s=wall)
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
    progress: Progress | None = None,
) -> None:
    """Run each point and hand its record over as soon as it is done (the caller stores it before going on):
    each in a child process with isolate, else in this one, timed in rounds over all the points."""
    if not isolate:
        run_in_rounds(points, on_record, memory_limit, progress or Progress())
        return
    for point in points:
        before_point(point)
        on_record(run_isolated(point, memory_limit, point_timeout))


class Progress:
    """What a sweep reports while it runs; the CLI draws it, tests can record it."""

    def warn(self, message: str) -> None: ...

    def start(self, total: int, already_done: int) -> None: ...

    def point_started(self, point: Point) -> None: ...

    def point_finished(self, point: Point, record: Record) -> None: ...

    def note(self, message: str) -> None:
        """A step of the work that is no point of its own (a round of repetitions)."""


class StoreFailed(MhaError):
    """points.jsonl could not be appended to (disk full, I/O error): the sweep stops, resumable."""

    exit_code = ExitCode.FAILED


@contextlib.contextmanager
def new_sweep_folder(grid: Grid, shard: Shard, output_dir: Path | None, *, overwrite: bool = False,
                     names: Naming = CLI_NAMES) -> Iterator[SweepFolder]:
    """output_dir (None: a new outputs/<UTC time>-<name>-sweep/) claimed before any point runs, with its sweep.json;
    outputs/latest points at it when the block ends, however it ends (its finished points are there).
    A sweep that fails or is interrupted before any point was measured (a config error at the first point,
    Ctrl-C while checking) leaves nothing: there is nothing to resume, and a sweep.json left behind would
    refuse the retry. Points measured are kept. names: how a refusal names the overwrite option."""
    with claimed_output(output_dir, f"{grid.base['name']}-sweep", overwrite=overwrite, names=names) as target:
        folder = SweepFolder(target)
        folder.create(grid, shard, overwrite=overwrite, names=names)
        try:
            yield folder
        except BaseException:
            with contextlib.suppress(OSError):  # a disk that failed: the original error is the one to see
                if not any(record["status"] == "done" for record in folder.records()):
                    folder.discard()
            raise
        finally:
            if (target / SWEEP_FILE).exists():
                point_latest(DEFAULT_ROOT, target)


@contextlib.contextmanager
def resumed_sweep_folder(path: Path) -> Iterator[tuple[SweepFolder, Grid, Shard]]:
    """An interrupted sweep's folder, its grid and shard read from sweep.json, claimed for the rest of its points."""
    folder = SweepFolder(path)
    # Read first: claiming a path that is no sweep folder would create it. sweep.json never
    # changes once written, so what is read now holds under the lock too.
    grid, shard = folder.definition()
    with claimed(path, allow=SWEEP_FILES):
        try:
            yield folder, grid, shard
        finally:
            point_latest(DEFAULT_ROOT, path)


class _Sweep:
    """One shard of a grid being run into a folder (or none): what is done, what is kept, what it found."""

    def __init__(self, grid: Grid, shard: Shard, folder: SweepFolder | None, progress: Progress, plot: bool) -> None:
        self.grid, self.shard, self.folder, self.progress, self.plot = grid, shard, folder, progress, plot
        self.mine = [p for p in grid.points() if shard.owns(p.index)]
        self.by_index = {p.index: p for p in self.mine}
        self.records: list[Record] = self._finished()

    def _finished(self) -> list[Record]:
        """The points the folder already holds (resuming), after mending a torn last line."""
        if self.folder is None:
            return []
        folder = self.folder
        torn = folder.repair_torn_tail()
        if torn:
            self.progress.warn(f"{folder.points_file}: the last line was cut off mid-write ({torn} bytes, kept in "
                               f"{folder.points_file.name}.torn); its point runs again")
        records = [r for r in folder.records(self.grid.size()) if r["point"] in self.by_index]
        for bad in folder.bad_lines:
            self.progress.warn(f"{folder.points_file} line {bad.line}: {bad.why}; that line is ignored and its point runs again")
        return records

    def todo(self) -> list[Point]:
        done = {r["point"] for r in self.records}
        return [p for p in self.mine if p.index not in done]

    def keep(self, record: Record) -> None:
        """Store a finished point at once (before the next starts), then count it."""
        if self.folder is not None:
            try:
                self.folder.append(record)
            except OSError as error:
                raise StoreFailed(
                    f"could not append to {self.folder.points_file}: {error.strerror or error}. The {len(self.records)} "
                    f"points finished before are kept; make room and finish with `mha sweep --resume {self.folder.path}`"
                ) from None
        self.records.append(record)
        self.progress.point_finished(self.by_index[record["point"]], record)

    def summary(self, interrupted: bool) -> SweepSummary:
        found = summarize(self.grid, self.records, shards=[str(self.shard)], owned=len(self.mine), interrupted=interrupted)
        if self.folder is not None:
            why_no_picture = write_summary(self.folder.path, found, plot=self.plot)
            if why_no_picture:
                self.progress.warn(why_no_picture)
        return found


def execute(
    grid: Grid,
    shard: Shard,
    folder: SweepFolder | None,
    *,
    isolate: bool = False,
    point_timeout: float | None = None,
    memory_limit: int | None = None,
    progress: Progress | None = None,
    plot: bool = True,
) -> SweepSummary:
    """Run the shard's points not yet in the folder, storing each at once; return the summary.

    Call with the folder claimed (locked). On Ctrl-C or SIGTERM the finished points are
    already on disk: the summary is written marked `interrupted` and the interrupt goes on
    to the caller. A failed append (ENOSPC, EIO) stops the sweep the same way, as StoreFailed.
    """
    sweep = _Sweep(grid, shard, folder, progress or Progress(), plot)
    todo = sweep.todo()
    sweep.progress.start(len(sweep.mine), len(sweep.mine) - len(todo))
    try:
        run_points(todo, sweep.keep, isolate=isolate, point_timeout=point_timeout, memory_limit=memory_limit,
                   before_point=sweep.progress.point_started, progress=sweep.progress)
    except KeyboardInterrupt:
        sweep.summary(interrupted=True)
        raise
    except (StoreFailed, BrokenCode):
        try:
            sweep.summary(interrupted=True)
        except OSError:
            pass  # the disk is still full: points.jsonl alone is enough to resume
        raise
    return sweep.summary(interrupted=False)


def run_sweep(
    config: Config,
    grid: Mapping[str, Sequence[Any]],
    *,
    output_dir: str | os.PathLike[str] | None = None,
    progress: Progress | Callable[[str], None] | None = None,
    overwrite: bool = False,
    memory_limit: int | None = None,
) -> SweepSummary:
    """Run every point of `grid` over `config` in this process and return the sweep summary.

    grid maps config field paths to lists of values, e.g. {"num_heads": [1, 2, 4], "local.window": [64, 128]};
    the points are their Cartesian product, the last path varying fastest. Combinations that do not
    make a valid config are `skipped` with the reason. With `output_dir` (a str or any path-like) the
    folder is written as `mha sweep --output-dir` writes it (points.jsonl as points finish, summary files,
    sweep.png when matplotlib is installed) and can be resumed with `mha sweep --resume`; a folder that
    already holds results is refused unless overwrite=True. A call that fails or is interrupted before any
    point was measured removes what it wrote, so the same call can simply be retried.

    progress: a function taking one message (a str), such as print, gets a line per step and per point;
    an object with the methods of `Progress` (start, point_started, point_finished, note, warn; any it
    lacks are skipped) gets the events themselves.

    Arguments are checked first: a wrong type is a TypeError, a wrong value (an empty axis, a path that
    is no config field, a value the field does not take) a ValueError, each naming the parameter.

    Example:

        >>> from mha_cli import load_config, run_sweep
        >>> summary = run_sweep(load_config(None, ["timing.min_run_time=0.01"]), {"num_heads": [1, 2]})
        >>> summary["counts"]["done"], [row["impl"] for row in summary["fastest"]] != []
        (2, True)
    """
    check_config(config)
    axes = check_grid(grid, bool(config.sweep))
    folder = check_path("output_dir", output_dir)
    check_flag("overwrite", overwrite)
    memory_limit = check_memory_limit(memory_limit)
    reporter = progress_for(progress)
    try:
        points = grid_for(config, axes)
    except UsageError as error:  # the axis check `mha sweep` uses, worded for the command line
        raise as_argument_error("grid", error) from None
    if folder is None:
        return execute(points, Shard(1, 1), None, progress=reporter, memory_limit=memory_limit, plot=False)
    with new_sweep_folder(points, Shard(1, 1), folder, overwrite=overwrite, names=PYTHON_NAMES) as sweep_folder:
        return execute(points, Shard(1, 1), sweep_folder, progress=reporter, memory_limit=memory_limit)


def progress_for(progress: Progress | Callable[[str], None] | None) -> Progress:
    """run_sweep's progress as a Progress: an object with Progress's methods, or a function of one message."""
    if progress is None or isinstance(progress, Progress):
        return progress or Progress()
    if any(callable(getattr(progress, name, None)) for name in _PROGRESS_METHODS):
        return _Forwarded(progress)
    if callable(progress):
        return _Messages(progress)
    raise ArgumentTypeError(
        f"progress: expected a function taking one message (a str), such as print, or an object with the methods "
        f"of mha_cli.sweep.runner.Progress ({', '.join(_PROGRESS_METHODS)}), got {a_type(progress)}"
    )


_PROGRESS_METHODS = ("start", "point_started", "point_finished", "note", "warn")


class _Forwarded(Progress):
    """A progress object with some of Progress's methods: those it has are called, the others skipped."""

    def __init__(self, target: Any) -> None:
        self.target = target

    def _call(self, name: str, *args: Any) -> None:
        method = getattr(self.target, name, None)
        if callable(method):
            method(*args)

    def warn(self, message: str) -> None:
        self._call("warn", message)

    def start(self, total: int, already_done: int) -> None:
        self._call("start", total, already_done)

    def point_started(self, point: Point) -> None:
        self._call("point_started", point)

    def point_finished(self, point: Point, record: Record) -> None:
        self._call("point_finished", point, record)

    def note(self, message: str) -> None:
        self._call("note", message)


class _Messages(Progress):
    """Progress as lines for a function of one message (print, logging.info, a list's append)."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.total = 0
        self.finished = 0

    def warn(self, message: str) -> None:
        self.say(f"warning: {message}")

    def start(self, total: int, already_done: int) -> None:
        self.total, self.finished = total, already_done
        self.say(f"sweep: {total} point{'' if total == 1 else 's'}" + (f", {already_done} already done" if already_done else ""))

    def point_started(self, point: Point) -> None:
        self.say(f"checking {point.label or f'point {point.index}'}")

    def point_finished(self, point: Point, record: Record) -> None:
        from ..report.rows import format_seconds

        self.finished += 1
        reason = f": {record['reason']}" if record["reason"] else ""
        self.say(f"[{self.finished}/{self.total}] {point.label or f'point {point.index}'}: {record['status']} "
                 f"in {format_seconds(record['wall_s'])}{reason}")

    def note(self, message: str) -> None:
        self.say(message)
