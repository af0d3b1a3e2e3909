"""`run_experiment`: one config in, one RunReport out. The CLI's `run` is a thin wrapper.

Order of work: the config resolved once into an Experiment, its implementations
found (your own imported: a problem there is a config error, exit 2), the
memory guard (before anything is allocated), inputs and shared weights, the
float64 reference, the shape table, your own implementations' first call
(a wrong output is a config error too, before anything is measured), then each
implementation: its own memory verdict, whether it supports the experiment,
build, one checked call, one memory-profiled call, then timing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .attention import Forward, Implementation, implementations_for
from .attention.yours import Yours
from .check import CheckResult, Reference, check_against_reference, run_reference
from .clock import utc_now_iso
from .config import Config, config_to_yaml
from .envinfo import run_env
from .errors import ConfigError, Unsupported, first_line
from .experiment import Experiment, resolve
from .inputs import make_inputs, resolve_device
from .measure import FlopCount, Timing, count_flops, peak_memory_bytes, time_call
from .memory import MemoryEstimate, check_fits, format_bytes, resolve_memory_limit
from .peak import Peak, peak_gflops
from .prepared import Prepared
from .results import Result, RunReport
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
class _Rows:
    """What every row of one run shares: the workload, the reference, the counts and the machine."""

    work: Workload
    reference: Reference
    flops: FlopCount
    density: float
    threads: int
    peak: Peak
    gradients: _Gradients | None

    def fields(self, name: str) -> dict[str, Any]:
        """What every row of this run says about itself, whatever became of it."""
        experiment = self.work.experiment
        return {"impl": name, "variant": experiment.variant, "dtype": experiment.dtype, "device": str(self.work.device),
                "scope": experiment.timing.scope, "pass_": experiment.timing.pass_, "atol": self.reference.tolerance.atol,
                "density": self.density}

    def skipped(self, name: str, reason: str) -> Result:
        return Result(status="skipped", reason=reason, **self.fields(name))

    def measure(self, name: str, implementation: Implementation, progress: ProgressMessage) -> Result:
        """Build, check (output, and gradients when training), profile memory and time one implementation."""
        if name == "flex":  # its own step: a compile can take a minute, which "timing (0.2 s)" would misstate
            progress("compiling with torch.compile (often tens of seconds)")
        work, leaves = training_workload(self.work) if self.gradients is not None else (self.work, None)
        try:
            forward = implementation.build(work)
            progress(f"checking and timing ({work.experiment.timing.min_run_time:g} s)")
            checked, grad_checked, timed = self._checked(work, forward, leaves)
            # The forward is timed without autograd; a training pass needs it.
            with torch.inference_mode() if self.gradients is None else contextlib.nullcontext():
                peak = peak_memory_bytes(timed, work.device)
                timing = time_call(timed, threads=self.threads, min_run_time=work.experiment.timing.min_run_time, label=name)
        except Unsupported as unsupported:
            return self.skipped(name, unsupported.reason)
        except ConfigError:
            raise
        except Exception as error:  # noqa: BLE001 - a crash is this row's error; the other rows still run
            return Result(status="error", reason=first_line(error), **self.fields(name))
        return self._result(name, forward, checked, grad_checked, peak, timing)

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

    def _result(self, name: str, forward: Forward, checked: CheckResult, grad_checked: CheckResult | None,
                peak: int, timing: Timing) -> Result:
        experiment, rows = self.work.experiment, len(self.reference.rows)
        notes = [checked.describe()] if checked.describe() else []
        if grad_checked is not None and grad_checked.problems:
            notes.append("gradients: " + "; ".join(grad_checked.problems))
        ok = checked.ok and (grad_checked is None or grad_checked.ok)
        if rows < experiment.sizes.seq_len:
            notes.append(f"checked on {rows} of {experiment.sizes.seq_len} query rows, evenly spread")
        total = self.flops.total(experiment.timing.scope)
        return Result(
            status="ok" if ok else "fail", reason="; ".join(notes),
            median_s=timing.median_s, iqr_s=timing.iqr_s, runs=timing.runs, noisy=timing.noisy,
            flops=total, gflops=total / timing.median_s / 1e9, peak_mem_bytes=peak,
            max_abs_err=checked.max_abs_err, grad_max_abs_err=grad_checked.max_abs_err if grad_checked is not None else None,
            compile_s=getattr(forward, "compile_s", None), plan_s=getattr(forward, "plan_s", None),
            peak_gflops=self.peak.gflops, checked_rows=rows, ok=ok, **self.fields(name),
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
    baseline = next((r.median_s for r in results if r.impl == "torch" and r.median_s), None)
    if baseline is None:
        return results
    return [replace(r, speedup_vs_torch=baseline / r.median_s) if r.median_s else r for r in results]


def _flush_denormal_is_on() -> bool:
    # torch has a setter and no getter: a denormal product reads back as 0 when flushing is on.
    return float(torch.tensor([1e-38]) * torch.tensor([1e-2])) == 0.0


@contextlib.contextmanager
def _measuring_threads(threads: int | None) -> Iterator[int]:
    """Set torch's thread count and flush-denormal for measuring; put both back afterwards,
    so a notebook or script calling run_experiment finds torch as it left it."""
    threads_before, flush_before = torch.get_num_threads(), _flush_denormal_is_on()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        torch.set_flush_denormal(True)  # denormals make CPU math up to 100x slower
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(threads_before)
        torch.set_flush_denormal(flush_before)


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
    config: Config, *, memory_limit: int | None = None, progress: ProgressMessage = lambda _: None, reprobe: bool = False,
    output_dir: str | os.PathLike[str] | None = None, overwrite: bool = False,
) -> RunReport:
    """Run every implementation in `config.impls` on one config and report shapes, agreement and timing.

    Refuses (UsageError) what the memory guard says cannot fit, and (ConfigError) your own implementation
    when it cannot be imported or returns the wrong shape or dtype; an implementation that cannot run here
    is a `skipped` row, one that crashes an `error` row. torch's thread count and flush-denormal setting
    are restored when it returns. Timed rows carry this machine's matmul peak (peak.py: cached, probed
    again with reprobe=True). With output_dir, the folder is written as `mha run --output-dir` writes it
    (claimed first; earlier results there are refused unless overwrite=True).

    Example:

        >>> from mha_cli import load_config, run_experiment
        >>> report = run_experiment(load_config(None, ["timing.min_run_time=0.01"]))
        >>> [(r.impl, r.status) for r in report.results]
        [('torch', 'ok'), ('manual', 'ok'), ('sdpa', 'ok')]
    """
    if output_dir is not None:
        return run_in_folder(config, Path(output_dir), overwrite=overwrite, memory_limit=memory_limit, progress=progress,
                             reprobe=reprobe).report
    return _measured(Prepared(resolve(config)), memory_limit, progress, reprobe)


@dataclass(frozen=True)
class SavedRun:
    report: RunReport
    folder: Path
    notes: list[str]  # for the user: what was not written, and why


def run_in_folder(
    config: Config, output_dir: Path | None, *, overwrite: bool = False, memory_limit: int | None = None,
    progress: ProgressMessage = lambda _: None, reprobe: bool = False, shown: Callable[[RunReport], None] = lambda _: None,
) -> SavedRun:
    """run_experiment, saved: output_dir (None: a new outputs/<UTC time>-<name>/) is claimed before anything is
    measured; `shown` gets the report before the files are written, so a failed write loses nothing shown."""
    from .run_folder import claimed_run_folder, save_run  # matplotlib for pattern.png: only when saving

    prepared = Prepared(resolve(config))
    with claimed_run_folder(output_dir, config.name, overwrite=overwrite) as folder:
        report = _measured(prepared, memory_limit, progress, reprobe)
        shown(report)
        notes = save_run(report, folder, config_to_yaml(config), prepared)
    return SavedRun(report, folder, notes)


def _measured(prepared: Prepared, memory_limit: int | None, progress: ProgressMessage, reprobe: bool) -> RunReport:
    """Every implementation of the experiment measured, in one report (see run_experiment)."""
    experiment = prepared.experiment
    implementations = implementations_for(experiment)
    declared = {name: need for name, impl in implementations.items() if (need := impl.memory_bytes(experiment)) is not None}
    limit, limit_source = resolve_memory_limit(memory_limit)
    found = check_fits(experiment, limit, limit_source, declared=declared,
                       blocked_keys=prepared.blocked_keys_per_query if experiment.needs_plan else None)
    device = resolve_device(experiment.device)
    with _measuring_threads(experiment.timing.threads) as threads:
        rows = _shared_rows(prepared, device, threads, reprobe, progress)
        verdicts = _memory_verdicts(experiment, found, device, limit, limit_source)
        decided = _first_calls(implementations, rows.work, verdicts, rows)
        results = []
        for index, (name, implementation) in enumerate(implementations.items(), start=1):
            def step(message: str, prefix: str = f"[{index}/{len(implementations)}] {name}") -> None:
                progress(f"{prefix}: {message}")

            if name in decided:
                results.append(decided[name])
                continue
            why_not = implementation.unsupported(experiment) or verdicts[name]  # what it cannot run, then the memory guard
            results.append(rows.skipped(name, why_not) if why_not is not None else rows.measure(name, implementation, step))
    table, shapes = shape_table(experiment)
    return RunReport(
        mha_version=__version__, created=utc_now_iso(), config=experiment.config, env=run_env(str(device), threads),
        shapes=shapes, shape_table=table, results=_with_speedups(results),
    )


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
    return _Rows(work, reference, count_flops(experiment, pairs), prepared.density, threads, peak, gradients)
