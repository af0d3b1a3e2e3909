"""`mha sweep`: a grid of configs, one point after another, nothing lost on the way."""


import contextlib
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import ExitCode, UsageError
from .common import (
    ConfigArg,
    JsonOption,
    OverridesArg,
    OverwriteOption,
    ReprobeOption,
    animated,
    handle_errors,
    split_config_args,
    stderr_console,
    stdout_console,
    stdout_for_results,
)


def _list_option(flag: str, field: str) -> Any:
    return typer.Option(f"--{flag}", metavar="A,B,...", help=f"Values of {field}, comma separated.", show_default=False)


class _ConsoleProgress:
    """A Rich progress bar with point count and ETA on a terminal; one plain line per point otherwise."""

    def __init__(self, console) -> None:  # type: ignore[no-untyped-def]
        self.console = console
        self.bar = None
        self.task = None
        self.total = 0
        self.finished = 0

    def warn(self, message: str) -> None:
        # The bar draws on this console: Rich prints the line above a live bar.
        self.console.print(f"warning: {message}", highlight=False, markup=False)

    def start(self, total: int, already_done: int) -> None:
        self.total, self.finished = total, already_done
        if already_done:
            self.console.print(f"{already_done} of {total} points already done; running the other {total - already_done}")
        if animated(self.console):
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("eta"), TimeRemainingColumn(), console=self.console, transient=False,
            )
            self.bar.start()
            self.task = self.bar.add_task("sweep", total=total, completed=already_done)

    def note(self, message: str) -> None:
        if self.bar is not None:
            from rich.markup import escape

            self.bar.update(self.task, description=escape(message))
            return
        self.console.print(message, highlight=False, markup=False)

    def point_started(self, point) -> None:  # type: ignore[no-untyped-def]
        if self.bar is not None:
            from rich.markup import escape

            self.bar.update(self.task, description=escape(point.label or "point"))

    def point_finished(self, point, record: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
        self.finished += 1
        if self.bar is not None:
            self.bar.advance(self.task)
            return
        from ..report.rows import format_seconds

        results = record["report"]["results"] if record.get("report") else []
        brief = ", ".join(
            f"{r['impl']} {format_seconds(r['median_s'])}" if r["median_s"] else f"{r['impl']} {r['status']}" for r in results
        )
        reason = f": {record['reason']}" if record["reason"] else ""
        line = f"[{self.finished}/{self.total}] {point.label}: {record['status']} in {format_seconds(record['wall_s'])}{reason}"
        self.console.print(line + (f" ({brief})" if brief else ""), highlight=False, markup=False)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


@handle_errors
def sweep(
    config: ConfigArg = None,
    overrides: OverridesArg = None,
    heads: Annotated[str | None, _list_option("heads", "num_heads")] = None,
    kv_heads: Annotated[str | None, _list_option("kv-heads", "num_kv_heads (grouped-query attention)")] = None,
    seq_len: Annotated[str | None, _list_option("seq-len", "seq_len")] = None,
    embed_dim: Annotated[str | None, _list_option("embed-dim", "embed_dim")] = None,
    batch: Annotated[str | None, _list_option("batch", "batch_size")] = None,
    window: Annotated[str | None, _list_option("window", "local.window")] = None,
    variant: Annotated[str | None, _list_option("variant", "variant")] = None,
    impl: Annotated[str | None, typer.Option("--impl", metavar="A,B,...", help="Implementations to run at every point (sets impls).")] = None,
    dtype: Annotated[str | None, _list_option("dtype", "dtype")] = None,
    passes: Annotated[str | None, _list_option("pass", "timing.pass (forward, backward, forward_backward)")] = None,
    resume: Annotated[Path | None, typer.Option("--resume", metavar="DIR", help="Finish an interrupted sweep in DIR, skipping its finished points.")] = None,
    isolate: Annotated[bool, typer.Option("--isolate", help="Run each point in a child process; crashes and timeouts are recorded.")] = False,
    point_timeout: Annotated[float | None, typer.Option("--point-timeout", metavar="S", help="With --isolate: seconds before a point is killed.")] = None,
    shard: Annotated[str | None, typer.Option("--shard", metavar="I/N", help="Run only the I-th of N deterministic slices of the grid.")] = None,
    as_json: JsonOption = False,
    no_save: Annotated[bool, typer.Option("--no-save", help="Write nothing to disk.")] = False,
    output_dir: Annotated[Path | None, typer.Option("--output-dir", metavar="DIR", help="The sweep folder (default outputs/<UTC time>-<name>-sweep/).")] = None,
    overwrite: OverwriteOption = False,
    max_memory: Annotated[str | None, typer.Option("--max-memory", metavar="SIZE", help="Memory limit per point (e.g. 4GiB).")] = None,
    plot: Annotated[bool, typer.Option("--plot/--no-plot", help="Write sweep.png (needs matplotlib; about 1 s).")] = True,
    reprobe: ReprobeOption = False,
) -> None:
    """Run a grid of configs: the Cartesian product of the given values over the base config.

    Every finished point is appended to points.jsonl at once; Ctrl-C, SIGTERM
    and SIGHUP keep them (exit 128 + the signal, e.g. 130 for Ctrl-C) and
    `--resume DIR` finishes the rest. Invalid combinations are listed as
    skipped. Exit code 1 when no point produced a result, a point crashed or
    timed out, or an implementation failed its check. The summary shows a
    table per implementation, the fastest implementation per point and, when
    seq_len is swept, the scaling exponent of time in seq_len.

    Examples:

      mha sweep --heads 1,2,4

      mha sweep example:local_window --seq-len 1024,2048,4096 --impl sdpa,blocked

      mha sweep --seq-len 256,512 --shard 2/4 --output-dir sweeps/shard2

      mha sweep --resume outputs/20261127T120000Z-quickstart-sweep
    """
    from ..memory import parse_max_memory
    from ..sweep.runner import execute

    limit = parse_max_memory(max_memory)
    flags = {"heads": heads, "kv_heads": kv_heads, "seq_len": seq_len, "embed_dim": embed_dim, "batch": batch, "window": window,
             "variant": variant, "dtype": dtype, "pass": passes}
    _refuse_contradictions(isolate, point_timeout, no_save, resume, output_dir, overwrite,
                           grid_given=bool(config is not None or overrides or impl or shard or any(v is not None for v in flags.values())))

    err = stderr_console()
    with stdout_for_results(as_json) as results, \
            _sweep_folder(resume, config, overrides, flags, impl, shard, output_dir, overwrite, no_save) as (grid, part, folder):
        if reprobe:
            _reprobe_peak(grid.base, err)
        progress = _ConsoleProgress(err)
        try:
            summary = execute(grid, part, folder, isolate=isolate, point_timeout=point_timeout, memory_limit=limit,
                              progress=progress, plot=plot)
        finally:
            progress.stop()
            if folder is not None:
                err.print(f"sweep folder: {folder.path}/", highlight=False, markup=False)
    if as_json:
        from ..results import to_json

        results.write(to_json(summary))
    else:
        from ..report.sweep_tables import print_summary

        print_summary(stdout_console(), summary)
    verdict = summary["problem"]
    if verdict:
        err.print(f"error: {verdict}" + ("" if verdict.startswith("no point") else " (see the tables above)"),
                  highlight=False, markup=False)
        raise typer.Exit(int(ExitCode.FAILED))


def _refuse_contradictions(isolate: bool, point_timeout: float | None, no_save: bool, resume: Path | None,
                           output_dir: Path | None, overwrite: bool, grid_given: bool) -> None:
    """Options that cannot go together, refused before anything runs."""
    if point_timeout is not None and not isolate:
        raise UsageError("--point-timeout needs --isolate (a point in this process cannot be stopped safely)")
    if point_timeout is not None and not 0 < point_timeout < float("inf"):
        raise UsageError("--point-timeout must be a positive number of seconds")
    if no_save and (output_dir is not None or resume is not None or overwrite):
        raise UsageError("--no-save cannot be combined with --output-dir, --resume or --overwrite")
    if resume is not None and (grid_given or output_dir is not None or overwrite):
        raise UsageError("--resume takes only the sweep folder: the grid is read from its sweep.json")


@contextlib.contextmanager
def _sweep_folder(resume, config, overrides, flags, impl, shard, output_dir, overwrite, no_save):  # type: ignore[no-untyped-def]
    """(grid, shard, folder) of the sweep to run: the resumed one, or a new one (claimed unless --no-save)."""
    from ..sweep.grid import FLAG_FIELDS, Shard, build_grid
    from ..sweep.runner import new_sweep_folder, resumed_sweep_folder

    if resume is not None:
        with resumed_sweep_folder(resume) as (folder, grid, part):
            yield grid, part, folder
        return
    from ..config import load_config

    path, extra = split_config_args(config, overrides)
    grid = build_grid(load_config(path, extra), {k: v for k, v in flags.items() if k in FLAG_FIELDS}, impl)
    part = Shard.parse(shard)
    if no_save:
        yield grid, part, None
        return
    with new_sweep_folder(grid, part, output_dir, overwrite=overwrite) as folder:
        yield grid, part, folder


def _reprobe_peak(base: dict[str, Any], err) -> None:  # type: ignore[no-untyped-def]
    """--reprobe: measure the matmul peak again for the base config's dtype, threads and device;
    points read it from the cache (a swept dtype is probed on first use when not cached)."""
    import torch

    from ..inputs import resolve_device
    from ..peak import peak_gflops

    threads = base["timing"].get("threads") or torch.get_num_threads()
    peak_gflops(base["dtype"], threads, resolve_device(base["device"]), reprobe=True,
                probing=lambda: err.print("measuring the matmul peak (about half a second)"))
