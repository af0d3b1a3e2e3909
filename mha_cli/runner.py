"""`run_experiment`: one config in, one RunReport out. The CLI's `run` is a thin wrapper.

Order of work: the config resolved once into an Experiment, its implementations
found (your own imported: a problem there is a config error, exit 2), the
memory guard (before anything is allocated), inputs and shared weights, the
float64 reference, your own implementations' first call (a wrong output is a
config error too, before anything is measured), then each implementation: its
own memory verdict, whether it supports the experiment, build, one checked
call, one memory-profiled call (check_point). Then the timing, in
timing.repetitions rounds, each in a fresh process (time_rounds; a sweep runs
the rounds over all its points, so that each point's repetitions are spread
over the sweep's whole duration), and the report (CheckedPoint.report).
"""

from __future__ import annotations

import contextlib
import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .attention import Forward, Implementation, implementations_for
from .attention.yours import Yours
from .check import CheckResult, Reference, check_against_reference, run_reference
from .clock import utc_now_iso
from .arguments import check_callable, check_flag, check_memory_limit, check_path
from .config import Config, check_config, config_to_yaml
from .envinfo import run_env
from .errors import ConfigError, Unsupported, first_line
from .experiment import Experiment, resolve
from .inputs import make_inputs, resolve_device
from .measure import FlopCount, count_bytes, count_flops, measuring_threads, peak_memory_bytes
from .memory import MemoryEstimate, check_fits, format_bytes, resolve_memory_limit
from .output_folder import CLI_NAMES, PYTHON_NAMES, Naming
from .bandwidth import Bandwidth, bandwidth
from .peak import Peak, peak_gflops
from .prepared import Prepared
from .repetitions import Samples, can_fork_server, repetitions_in_a_process, rotated, start_server, time_slice
from .rank_test import median_interval, paired_ratios
from .results import MIN_RUNS, NOISY_IQR_RATIO, Result, RunReport, ShapeRow
from .shapes import shape_table
from .training import (
    GradientReference,
    Leaves,
    check_gradients,
    gradient_reference,
    timed_pass,
    training_workload,
    upstream_gradient,
)
from .workload import Workload, make_workload

# What a run says while it works: one line per step (the CLI shows it on stderr).
ProgressMessage = Callable[[str], None]


@dataclass(frozen=True)
class _Gradients:
    """What every implementation's gradients are checked against, for a training pass."""

    upstream: torch.Tensor
    reference: GradientReference


@dataclass(frozen=True)
class _Checked:
    """An implementation that built, ran and was checked: what its row needs besides its timing."""

    checked: CheckResult
    grad_checked: CheckResult | None
    peak: int
    compile_s: float | None
    plan_s: float | None
    here: Callable[[], object] | None  # what to time in this process; None: timed in fresh processes


@dataclass(frozen=True)
class _Rows:
    """What every row of one run shares: the workload, the reference, the counts and the machine."""

    work: Workload
    reference: Reference
    flops: FlopCount
    density: float
    threads: int
    peak: Peak
    gradients: _Gradients | None
    bytes_moved: int = 0
    bandwidth: Bandwidth | None = None

    def fields(self, name: str) -> dict[str, Any]:
        return self.facts().fields(name)

    def skipped(self, name: str, reason: str) -> Result:
        return Result(status="skipped", reason=reason, **self.fields(name))

    def check(self, name: str, implementation: Implementation, progress: ProgressMessage, here: bool) -> _Checked | Result:
        """Build, check (output, and gradients when training) and profile the memory of one implementation; what
        is timed is kept when it is timed in this process (here). A Result when it was skipped or crashed."""
        if name == "flex":  # its own step: a compile can take a minute, which "checking" would misstate
            progress("compiling with torch.compile (often tens of seconds)")
        work, leaves = training_workload(self.work) if self.gradients is not None else (self.work, None)
        try:
            forward = implementation.build(work)
            progress("checking against float64")
            checked, grad_checked, timed = self._checked(work, forward, leaves)
            # The forward is timed without autograd; a training pass needs it.
            with torch.inference_mode() if self.gradients is None else contextlib.nullcontext():
                peak = peak_memory_bytes(timed, work.device)
        except Unsupported as unsupported:
            return self.skipped(name, unsupported.reason)
        except ConfigError:
            raise
        except Exception as error:  # noqa: BLE001 - a crash is this row's error; the other rows still run
            return Result(status="error", reason=first_line(error), **self.fields(name))
        return _Checked(checked, grad_checked, peak, getattr(forward, "compile_s", None), getattr(forward, "plan_s", None),
                        timed if here else None)

    def _checked(self, work: Workload, forward: Forward,
                 leaves: Leaves | None) -> tuple[CheckResult, CheckResult | None, Callable[[], object]]:
        """The output checked against float64, the gradients too for a training pass, and what to time."""
        with torch.inference_mode() if self.gradients is None else torch.no_grad():
            checked = check_against_reference(work.experiment, forward(), self.reference)
        if self.gradients is None:
            return checked, None, forward
        assert leaves is not None
        grad_checked = check_gradients(work, forward, leaves, self.gradients.upstream, self.gradients.reference)
        return checked, grad_checked, timed_pass(work.experiment, forward, leaves, self.gradients.upstream)

    def facts(self) -> _Facts:
        """What the rows need once the checks are done (nothing of the inputs: a sweep keeps one per point)."""
        experiment = self.work.experiment
        return _Facts(experiment, str(self.work.device), self.reference.tolerance.atol, len(self.reference.rows),
                      self.density, self.flops, self.peak, self.threads, self.bytes_moved, self.bandwidth)


@dataclass(frozen=True)
class _Facts:
    """What every row of one point says besides its own check and timing."""

    experiment: Experiment
    device: str
    atol: float
    checked_rows: int
    density: float
    flops: FlopCount
    peak: Peak
    threads: int
    bytes_moved: int = 0  # of one forward (0: not counted, a training pass)
    bandwidth: Bandwidth | None = None

    def fields(self, name: str) -> dict[str, Any]:
        """What every row of this run says about itself, whatever became of it."""
        experiment = self.experiment
        return {"impl": name, "variant": experiment.variant, "dtype": experiment.dtype, "device": self.device,
                "scope": experiment.timing.scope, "pass_": experiment.timing.pass_, "atol": self.atol,
                "density": self.density}

    def result(self, name: str, found: _Checked, samples: Samples) -> Result:
        """The row: the check's verdict and notes, and the timing over every repetition."""
        experiment, rows = self.experiment, self.checked_rows
        notes = [found.checked.describe()] if found.checked.describe() else []
        if found.grad_checked is not None and found.grad_checked.problems:
            notes.append("gradients: " + "; ".join(found.grad_checked.problems))
        ok = found.checked.ok and (found.grad_checked is None or found.grad_checked.ok)
        if rows < experiment.sizes.seq_len:
            notes.append(f"checked on {rows} of {experiment.sizes.seq_len} query rows, evenly spread")
        notes += samples.notes(experiment.timing.repetitions, experiment.timing.max_row_time)
        checks = {"max_abs_err": found.checked.max_abs_err, "peak_mem_bytes": found.peak, "compile_s": found.compile_s,
                  "plan_s": found.plan_s, "checked_rows": rows, **self.fields(name),
                  "grad_max_abs_err": found.grad_checked.max_abs_err if found.grad_checked is not None else None}
        medians = samples.medians()
        if not medians:
            return Result(status="error", reason="; ".join([*notes, "no repetition was timed"]), **checks)
        median, runs = statistics.median(medians), samples.runs()
        iqr = samples.iqr()
        load = samples.load()
        total = self.flops.total(experiment.timing.scope)
        return Result(
            status="ok" if ok else "fail", reason="; ".join(notes), median_s=median, iqr_s=iqr, runs=runs,
            noisy=runs < MIN_RUNS or iqr is None or iqr > NOISY_IQR_RATIO * median, samples_s=samples.by_repetition(),
            load=load.others if load is not None else None, steal=load.steal if load is not None else None,
            busy=load.busy if load is not None else None, flops=total, gflops=total / median / 1e9,
            peak_gflops=self.peak.gflops, ok=ok, **checks,
            **({"bytes_moved": self.bytes_moved, "gb_per_s": self.bytes_moved / median / 1e9,
                "bandwidth_gb_per_s": self.bandwidth.gb_per_s if self.bandwidth is not None else None}
               if self.bytes_moved else {}),
        )


def _memory_verdicts(experiment: Experiment, found: MemoryEstimate, device: torch.device, limit: int,
                     limit_source: str) -> dict[str, str | None]:
    """Per implementation: why the memory guard skips it, or None when it fits."""
    if device.type == "cuda":
        limit, limit_source = torch.cuda.mem_get_info(device)[0], f"free on {torch.cuda.get_device_name(device)}"
    verdicts: dict[str, str | None] = {}
    for name in experiment.impls:
        need = found.peak(name)
        verdicts[name] = None if need <= limit else f"estimated to need {format_bytes(need)}, but {format_bytes(limit)} is {limit_source}"
    return verdicts


def _with_speedups(results: list[Result]) -> list[Result]:
    """vs torch: the median of the repetitions' ratios, torch's time over this one's in the same repetition,
    and an interval for it (order statistics of those ratios: at least 90% coverage, rank_test.median_interval)."""
    torch_row = next((r for r in results if r.impl == "torch" and r.median_s), None)
    if torch_row is None:
        return results
    out = []
    for r in results:
        if not r.median_s:
            out.append(r)
            continue
        ratios = paired_ratios(torch_row.samples_s, r.samples_s)
        if ratios:
            out.append(replace(r, speedup_vs_torch=statistics.median(ratios), speedup_interval=list(median_interval(ratios))))
        else:
            out.append(replace(r, speedup_vs_torch=torch_row.median_s / r.median_s))
    return out


def _first_calls(implementations: dict[str, Implementation], work: Workload, verdicts: dict[str, str | None],
                 rows: _Rows) -> dict[str, Result]:
    """Your own implementations' first call, before anything is measured: a wrong output is a config error
    (exit 2); Unsupported skips the row and a crash is its error. Returns those rows, already decided."""
    decided: dict[str, Result] = {}
    for name, implementation in implementations.items():
        if not isinstance(implementation, Yours):
            continue
        try:
            reason = implementation.unsupported(work.experiment) or verdicts[name]
            if reason is not None:
                raise Unsupported(reason)
            implementations[name] = implementation.probe(work)
        except Unsupported as unsupported:
            decided[name] = rows.skipped(name, unsupported.reason)
        except ConfigError:
            raise
        except Exception as error:  # noqa: BLE001 - a crash inside the call is the row's error, not the run's
            decided[name] = Result(status="error", reason=first_line(error), **rows.fields(name))
    return decided


def run_experiment(
    config: Config, *, memory_limit: int | None = None, progress: ProgressMessage | None = None, reprobe: bool = False,
    output_dir: str | os.PathLike[str] | None = None, overwrite: bool = False,
) -> RunReport:
    """Run every implementation in `config.impls` on one config and report shapes, agreement and timing.

    Refuses (UsageError) what the memory guard says cannot fit, and (ConfigError) your own implementation
    when it cannot be imported or returns the wrong shape or dtype; an implementation that cannot run here
    is a `skipped` row, one that crashes an `error` row. torch's thread count and flush-denormal setting
    are restored when it returns. Timed rows carry this machine's matmul peak (peak.py: cached, probed
    again with reprobe=True). With output_dir (a str or any path-like), the folder is written as
    `mha run --output-dir` writes it (claimed first; earlier results there are refused unless overwrite=True);
    a run that fails leaves no half-written folder behind. progress, when given, is called with one message
    (a str) per step, so `progress=print` shows them.

    Arguments are checked first: a wrong type is a TypeError, a wrong value a ValueError, each naming the
    parameter (config must be a Config from load_config, not a path).

    Example:

        >>> from mha_cli import load_config, run_experiment
        >>> report = run_experiment(load_config(None, ["timing.min_run_time=0.01"]))
        >>> [(r.impl, r.status) for r in report.results]
        [('torch', 'ok'), ('manual', 'ok'), ('sdpa', 'ok')]
    """
    check_config(config)
    folder = check_path("output_dir", output_dir)
    check_flag("overwrite", overwrite)
    check_flag("reprobe", reprobe)
    memory_limit = check_memory_limit(memory_limit)
    if progress is None:
        progress = _quiet
    check_callable("progress", progress, "a function taking one message (a str), such as print, or None")
    if folder is not None:
        return run_in_folder(config, folder, overwrite=overwrite, memory_limit=memory_limit, progress=progress,
                             reprobe=reprobe, names=PYTHON_NAMES).report
    return _measured(Prepared(resolve(config)), memory_limit, progress, reprobe)


def _quiet(_: str) -> None:
    pass


def _measured(prepared: Prepared, memory_limit: int | None, progress: ProgressMessage, reprobe: bool) -> RunReport:
    point = check_point(prepared, memory_limit, progress, reprobe)
    time_rounds([point], progress)
    return point.report()


@dataclass(frozen=True)
class SavedRun:
    report: RunReport
    folder: Path
    notes: list[str]  # for the user: what was not written, and why


def run_in_folder(
    config: Config, output_dir: Path | None, *, overwrite: bool = False, memory_limit: int | None = None,
    progress: ProgressMessage = lambda _: None, reprobe: bool = False, shown: Callable[[RunReport], None] = lambda _: None,
    names: Naming = CLI_NAMES,
) -> SavedRun:
    """run_experiment, saved: output_dir (None: a new outputs/<UTC time>-<name>/) is claimed before anything is
    measured; `shown` gets the report before the files are written, so a failed write loses nothing shown.
    A failure before or while saving leaves no half-written folder: a folder made for this run is removed
    again, and files this run wrote into an existing one are removed (the retry is not refused).
    names: how a refusal names the overwrite option (the CLI's flag, or the Python parameter)."""
    from .run_folder import claimed_run_folder, save_run, undone_if_failed  # matplotlib for pattern.png: only when saving

    prepared = Prepared(resolve(config))
    with claimed_run_folder(output_dir, config.name, overwrite=overwrite, names=names) as folder:
        report = _measured(prepared, memory_limit, progress, reprobe)
        shown(report)
        with undone_if_failed(folder):
            notes = save_run(report, folder, config_to_yaml(config), prepared)
    return SavedRun(report, folder, notes)


@dataclass
class CheckedPoint:
    """A point whose implementations were all checked (and the ones timed here, timed): its timing in fresh
    processes comes in rounds (time_rounds), then report() makes the RunReport. Holds none of the inputs."""

    facts: _Facts
    order: list[str]  # the implementations, in the config's order
    decided: dict[str, Result]  # rows already final: skipped, crashed, refused
    checked: dict[str, _Checked]
    here: dict[str, Samples]  # rows timed in this process already (code handed over from Python, flex)
    env: dict[str, Any]
    shapes: dict[str, list[int] | None]
    shape_table: list[ShapeRow]

    @property
    def experiment(self) -> Experiment:
        return self.facts.experiment

    @property
    def away(self) -> list[str]:
        """The rows timed in fresh processes."""
        return [name for name in self.checked if name not in self.here]

    def request(self, index: int) -> dict[str, Any] | None:
        """What repetition `index`'s process times of this point: its config and the order; None when nothing."""
        timing = self.experiment.timing
        if index >= timing.repetitions:
            return None
        order = [name for name in rotated(self.away, index) if self.samples[name].fits(index, timing.max_row_time)]
        if not order:
            return None
        config = self.experiment.config
        given = {k: v for k, v in config.get("implementations", {}).items() if k in order}
        return {"config": {**config, "impls": order, "implementations": given}, "order": order,
                "budget": timing.min_run_time / timing.repetitions}

    def __post_init__(self) -> None:
        self.samples: dict[str, Samples] = {**{name: Samples() for name in self.away}, **self.here}

    def report(self) -> RunReport:
        results = [self.decided[name] if name in self.decided else self.facts.result(name, self.checked[name],
                                                                                     self.samples[name])
                   for name in self.order]
        return RunReport(mha_version=__version__, created=utc_now_iso(), config=self.experiment.config, env=self.env,
                         shapes=self.shapes, shape_table=self.shape_table, results=_with_speedups(results))


def check_point(prepared: Prepared, memory_limit: int | None = None, progress: ProgressMessage = lambda _: None,
                reprobe: bool = False) -> CheckedPoint:
    """Everything of run_experiment but the timing in fresh processes (see time_rounds)."""
    experiment = prepared.experiment
    implementations = implementations_for(experiment)
    declared = {name: need for name, impl in implementations.items() if (need := impl.memory_bytes(experiment)) is not None}
    limit, limit_source = resolve_memory_limit(memory_limit)
    found = check_fits(experiment, limit, limit_source, declared=declared,
                       blocked_keys=prepared.blocked_keys_per_query if experiment.needs_plan else None)
    device = resolve_device(experiment.device)
    elsewhere = experiment.timing.repetitions > 1 and can_fork_server()
    if elsewhere:
        start_server()  # its own torch import runs while this process builds and checks
    with measuring_threads(experiment.timing.threads) as threads:
        rows = _shared_rows(prepared, device, threads, reprobe, progress)
        verdicts = _memory_verdicts(experiment, found, device, limit, limit_source)
        decided = _first_calls(implementations, rows.work, verdicts, rows)
        checked: dict[str, _Checked] = {}
        for index, (name, implementation) in enumerate(implementations.items(), start=1):
            def step(message: str, prefix: str = f"[{index}/{len(implementations)}] {name}") -> None:
                progress(f"{prefix}: {message}")

            if name in decided:
                continue
            why_not = implementation.unsupported(experiment) or verdicts[name]  # what it cannot run, then the memory guard
            if why_not is not None:
                decided[name] = rows.skipped(name, why_not)
                continue
            outcome = rows.check(name, implementation, step, here=not (elsewhere and implementation.portable))
            if isinstance(outcome, Result):
                decided[name] = outcome
            else:
                checked[name] = outcome
        here = _timed_here(rows, checked, progress)
        for name in here:
            checked[name] = replace(checked[name], here=None)  # timed: let go of what it held
    table, shapes = shape_table(experiment)
    return CheckedPoint(rows.facts(), list(implementations), decided, checked, here, run_env(str(device), threads),
                        shapes, table)


def _timed_here(rows: _Rows, checked: dict[str, _Checked], progress: ProgressMessage) -> dict[str, Samples]:
    """The rows that cannot go to a fresh process, timed in this one, their repetitions one after another."""
    timing = rows.work.experiment.timing
    here = {name: found.here for name, found in checked.items() if found.here is not None}
    samples = {name: Samples() for name in here}
    for index in range(timing.repetitions):
        order = [name for name in rotated(list(here), index) if samples[name].fits(index, timing.max_row_time)]
        if order:
            progress(f"repetition {index + 1}/{timing.repetitions} in this process: timing {', '.join(order)}")
        for name in order:
            samples[name].add(index, time_slice(here[name], threads=rows.threads, budget=timing.min_run_time / timing.repetitions,
                                                label=name, trains=timing.trains, device=rows.work.device))
    return samples


def time_rounds(points: list[CheckedPoint], progress: ProgressMessage = lambda _: None) -> None:
    """Time every point's remaining rows in rounds: round k is one fresh process that times repetition k of
    every point, each point's implementations in an order rotated by one each round. A lost round (its
    process died) costs every point that repetition; Ctrl-C stops between or inside rounds, the samples
    gathered so far kept in the points."""
    rounds = max((p.experiment.timing.repetitions for p in points), default=0)
    for index in range(rounds):
        requests = [(point, point.request(index)) for point in points]
        requests = [(point, request) for point, request in requests if request is not None]
        if not requests:
            return
        names = sorted({name for _, request in requests for name in request["order"]})
        where = "a fresh process" if len(requests) == 1 else f"a fresh process, {len(requests)} points"
        progress(f"repetition {index + 1}/{rounds} ({where}): timing {', '.join(names)}")
        found = repetitions_in_a_process([request for _, request in requests])
        for (point, request), result in zip(requests, found, strict=True):
            for name in request["order"]:
                point.samples[name].add(index, result.get(name) or {"error": result.get("__error__", "no result")})


def _shared_rows(prepared: Prepared, device: torch.device, threads: int, reprobe: bool, progress: ProgressMessage) -> _Rows:
    """Inputs, the float64 reference (and gradients, for a training pass), counts and the matmul peak."""
    experiment = prepared.experiment
    progress("building inputs and weights")
    work = make_workload(prepared, make_inputs(experiment, device))
    progress("float64 reference")
    reference = run_reference(work)
    gradients = None
    if experiment.timing.trains:
        progress("float64 gradients")
        upstream = upstream_gradient(experiment, device)
        gradients = _Gradients(upstream, gradient_reference(work, reference, upstream))
    peak = peak_gflops(experiment.dtype, threads, device, reprobe=reprobe,
                       probing=lambda: progress("measuring this machine's matmul peak (once per dtype and thread count)"))
    pairs = prepared.allowed_pairs
    # Bytes for a forward pass: what memory-bound shapes (decoding) are judged by, against the copy bandwidth.
    moved, memory = 0, None
    if not experiment.timing.trains:
        moved = count_bytes(experiment, prepared.keys_read)
        memory = bandwidth(threads, device, reprobe=reprobe,
                           probing=lambda: progress("measuring this machine's memory bandwidth (once per thread count)"))
    return _Rows(work, reference, count_flops(experiment, pairs), prepared.density, threads, peak, gradients, moved, memory)
