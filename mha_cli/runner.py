"""`run_experiment`: one config in, one RunReport out. The CLI's `run` is a thin wrapper.

Order of work: memory guard (before anything is allocated), inputs and shared
weights, the float64 reference, the shape table, then each implementation:
its own memory verdict, build, one checked call, one memory-profiled call,
then timing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import torch

from . import __version__
from .attention import Unavailable, get_impl
from .block_plan import allowed_pair_count
from .check import Reference, check_against_reference, run_reference
from .clock import utc_now_iso
from .config import Config
from .envinfo import run_env
from .inputs import Inputs, make_inputs, resolve_device
from .measure import FlopCount, count_flops, peak_memory_bytes, time_call
from .memory import MemoryEstimate, check_fits, format_bytes, resolve_memory_limit
from .peak import Peak, peak_gflops
from .results import Result, RunReport
from .shapes import shape_table
from .training import (
    GradientReference,
    check_gradients,
    gradient_reference,
    timed_pass,
    training_inputs,
    upstream_gradient,
)

Progress = Callable[[str], None]


def _run_one(
    name: str,
    config: Config,
    inputs: Inputs,
    reference: Reference,
    flops: FlopCount,
    density: float,
    threads: int,
    memory_ok: tuple[bool, str],
    progress: Callable[[str], None],
    machine_peak: Peak,
    gradients: _Gradients | None,
) -> Result:
    base = {
        "impl": name, "variant": config.variant, "dtype": config.dtype, "device": str(inputs.device),
        "scope": config.timing.scope, "pass_": config.timing.pass_, "atol": reference.tolerance.atol, "density": density,
    }
    fits, why_not = memory_ok
    if not fits:
        return Result(status="skipped", reason=why_not, **base)
    if name == "flex":  # its own step: a compile can take a minute, which "timing (0.2 s)" would misstate
        progress("compiling with torch.compile (often tens of seconds)")
    leaves = None
    if gradients is not None:  # what the gradients are taken of becomes leaves that require grad
        inputs, leaves = training_inputs(inputs)
    try:
        forward = get_impl(name)(inputs, config)
    except Unavailable as unavailable:
        return Result(status="skipped", reason=unavailable.reason, **base)
    progress(f"checking and timing ({config.timing.min_run_time:g} s)")
    grad_checked = None
    try:
        # The forward is timed without autograd; a training pass needs it.
        with torch.inference_mode() if gradients is None else torch.no_grad():
            checked = check_against_reference(config, forward(), reference)
        timed = forward
        if gradients is not None:
            assert leaves is not None
            grad_checked = check_gradients(config, inputs, forward, leaves, gradients.upstream, gradients.reference)
            timed = timed_pass(config, forward, leaves, gradients.upstream)
        with torch.inference_mode() if gradients is None else contextlib.nullcontext():
            peak = peak_memory_bytes(timed, inputs.device)
            timing = time_call(timed, threads=threads, min_run_time=config.timing.min_run_time, label=name)
    except (RuntimeError, torch.OutOfMemoryError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return Result(status="error", reason=f"{type(error).__name__}: {message}", **base)
    notes = [checked.describe()] if checked.describe() else []
    if grad_checked is not None and grad_checked.problems:
        notes.append("gradients: " + "; ".join(grad_checked.problems))
    ok = checked.ok and (grad_checked is None or grad_checked.ok)
    if len(reference.rows) < config.seq_len:
        notes.append(f"checked on {len(reference.rows)} of {config.seq_len} query rows, evenly spread")
    total = flops.total(config.timing.scope)
    return Result(
        status="ok" if ok else "fail",
        reason="; ".join(notes),
        median_s=timing.median_s,
        iqr_s=timing.iqr_s,
        runs=timing.runs,
        noisy=timing.noisy,
        flops=total,
        gflops=total / timing.median_s / 1e9,
        peak_mem_bytes=peak,
        max_abs_err=checked.max_abs_err,
        grad_max_abs_err=grad_checked.max_abs_err if grad_checked is not None else None,
        compile_s=getattr(forward, "compile_s", None),
        plan_s=getattr(forward, "plan_s", None),
        peak_gflops=machine_peak.gflops,
        checked_rows=len(reference.rows),
        ok=ok,
        **base,
    )


@dataclass(frozen=True)
class _Gradients:
    """What every implementation's gradients are checked against, for a training pass."""

    upstream: torch.Tensor
    reference: GradientReference


def _memory_verdicts(config: Config, found: MemoryEstimate, device: torch.device, limit: int, limit_source: str) -> dict[str, tuple[bool, str]]:
    if device.type == "cuda":
        limit, limit_source = torch.cuda.mem_get_info(device)[0], f"free on {torch.cuda.get_device_name(device)}"
    verdicts = {}
    for name in config.impls:
        need = found.peak(name)
        verdicts[name] = (
            need <= limit,
            f"estimated to need {format_bytes(need)}, but {format_bytes(limit)} is {limit_source}",
        )
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


def run_experiment(
    config: Config, *, memory_limit: int | None = None, progress: Progress = lambda _: None, reprobe: bool = False
) -> RunReport:
    """Run every implementation in `config.impls` on one config and report shapes, agreement and timing.

    Refuses (UsageError) what the memory guard says cannot fit; an implementation that
    cannot run here is a `skipped` row, one that crashes an `error` row. torch's thread
    count and flush-denormal setting are restored when it returns. Timed rows carry this
    machine's matmul peak (peak.py: cached, probed again with reprobe=True).

    Example:

        >>> from mha_cli import load_config, run_experiment
        >>> report = run_experiment(load_config(None, ["timing.min_run_time=0.01"]))
        >>> [(r.impl, r.status) for r in report.results]
        [('torch', 'ok'), ('manual', 'ok'), ('sdpa', 'ok')]
    """
    limit, limit_source = resolve_memory_limit(memory_limit)
    found = check_fits(config, limit, limit_source)
    device = resolve_device(config.device)
    with _measuring_threads(config.timing.threads) as threads:
        progress("building inputs and weights")
        inputs = make_inputs(config, device)
        progress("float64 reference")
        reference = run_reference(config, inputs)
        rows, shapes = shape_table(config)
        pairs = allowed_pair_count(config)
        flops = count_flops(config, pairs)
        density = pairs / (config.batch_size * config.num_heads * config.seq_len * config.source_length)
        verdicts = _memory_verdicts(config, found, device, limit, limit_source)
        gradients = None
        if config.timing.pass_ != "forward":
            progress("float64 gradients")
            upstream = upstream_gradient(config, device)
            gradients = _Gradients(upstream, gradient_reference(config, inputs, reference, upstream))
        peak = peak_gflops(config.dtype, threads, device, reprobe=reprobe,
                           probing=lambda: progress("measuring this machine's matmul peak (once per dtype and thread count)"))

        results = []
        for index, name in enumerate(config.impls, start=1):
            def step(message: str, prefix: str = f"[{index}/{len(config.impls)}] {name}") -> None:
                progress(f"{prefix}: {message}")

            results.append(_run_one(name, config, inputs, reference, flops, density, threads, verdicts[name], step, peak, gradients))
    return RunReport(
        mha_version=__version__,
        created=utc_now_iso(),
        config=config.to_dict(),
        env=run_env(str(device), threads),
        shapes=shapes,
        shape_table=rows,
        results=_with_speedups(results),
    )
