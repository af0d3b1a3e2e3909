"""Timing, peak memory and FLOP counts.

Timing is torch.utils.benchmark's (it synchronises CUDA and keeps the
statistics), after a warm-up call of ours (two for short calls) that sizes
its blocks. Its thread count defaults to 1, so it is always passed
explicitly. Peak memory is measured on one call: on CUDA with
max_memory_allocated, on the CPU from the profiler's allocation events
(bytes the PyTorch CPU allocator handed out minus bytes freed, at their peak).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch.utils import benchmark

from .experiment import Experiment
from .results import MIN_RUNS, NOISY_IQR_RATIO


@dataclass(frozen=True)
class Timing:
    median_s: float
    iqr_s: float
    runs: int  # number of measurements (each the mean of a block of calls)

    @property
    def noisy(self) -> bool:
        return self.runs < MIN_RUNS or self.iqr_s > NOISY_IQR_RATIO * self.median_s


class _CalibratedTimer(benchmark.Timer):
    """torch.utils.benchmark.Timer with its block size set from a call already timed.

    Timer's own calibration multiplies the block size by 10 until the timer's
    overhead is below 1e-4 of a block: for a 100 us call that spends ~0.1 s per
    implementation before measuring, half of a 0.2 s budget. Here one timed
    call sets the block size directly; measuring, statistics and thread
    handling stay Timer's.
    """

    def __init__(self, *args: object, block_size: int, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._block_size = block_size

    def _estimate_block_size(self, min_run_time: float) -> int:
        return self._block_size


def block_size_for(single_call_s: float, min_run_time: float) -> int:
    """Calls per measurement: ~100 measurements in the budget, each at least 1 ms (timer overhead ~1 us).

    Small blocks keep the overshoot past min_run_time (at most one block) small too."""
    block_seconds = max(min_run_time / 100, 1e-3)
    return max(1, int(block_seconds / max(single_call_s, 1e-9)))


# A call shorter than this gets a second warm-up call: cheap for it, and what a slow call's heap still grows
# by is small beside its own time.
SECOND_WARM_UP_UNDER = 0.05


def time_call(fn: Callable[[], object], *, threads: int, min_run_time: float, label: str = "",
              at_least: tuple[int, float] = (1, 0.0)) -> Timing:
    """Time fn for min_run_time seconds, after a warm-up call (two for short calls) that also sizes the blocks.

    at_least=(calls, seconds): measure at least that many calls when they fit in that many seconds (a repetition's
    small share of the budget would otherwise hold one call of a millisecond-scale layer, all call-to-call noise)."""
    # The first call of a fresh process is often slower (allocator, caches, thread pool): timed, never measured.
    # Timer.timeit(1) would make two more warm-up calls first: a third of a second each at long sequences.
    single = _one_call(fn)
    if single < SECOND_WARM_UP_UNDER:
        # The second call can still grow the heap (page faults: measured, ~2,000 of them, +50% for a 4 ms call).
        single = _one_call(fn)
    calls, within = at_least
    run_time = max(min_run_time, min(calls * single, within))
    timer = _CalibratedTimer(
        stmt="fn()", globals={"fn": fn}, num_threads=threads, label=label, block_size=block_size_for(single, run_time)
    )
    measurement = timer.blocked_autorange(min_run_time=run_time)
    return Timing(median_s=measurement.median, iqr_s=measurement.iqr, runs=len(measurement.times))


def _one_call(fn: Callable[[], object]) -> float:
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    if cuda:
        torch.cuda.synchronize()
    began = time.perf_counter()
    fn()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - began


def flush_denormal_is_on() -> bool:
    # torch has a setter and no getter: a denormal product reads back as 0 when flushing is on.
    return float(torch.tensor([1e-38]) * torch.tensor([1e-2])) == 0.0


@contextlib.contextmanager
def measuring_threads(threads: int | None) -> Iterator[int]:
    """Set torch's thread count and flush-denormal for measuring; put both back afterwards,
    so a notebook or script calling run_experiment finds torch as it left it."""
    threads_before, flush_before = torch.get_num_threads(), flush_denormal_is_on()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        torch.set_flush_denormal(True)  # denormals make CPU math up to 100x slower
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(threads_before)
        torch.set_flush_denormal(flush_before)


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """The profiler's native code prints start/stop lines to fd 2; keep the user's stderr clean."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def peak_memory_bytes(fn: Callable[[], object], device: torch.device) -> int:
    """Peak bytes allocated during one call, above what was allocated before it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    # The autograd profiler records the same allocator events as torch.profiler, without
    # torch.profiler's first-use import of the compiler stack (~1.3 s per process).
    with _native_stderr_silenced(), torch.autograd.profiler.profile(use_cpu=True, profile_memory=True) as prof:
        fn()
    events = sorted(
        (e for e in prof.kineto_results.events() if e.name() == "[memory]"),
        key=lambda e: e.start_ns(),
    )
    live = peak = 0
    for event in events:
        live += event.nbytes()
        peak = max(peak, live)
    return peak


@dataclass(frozen=True)
class FlopCount:
    projections: int
    attention: int  # QK^T and PV over allowed pairs only

    def total(self, scope: str) -> int:
        """FLOPs of what is timed: the attention core alone, or the whole layer."""
        return self.attention if scope == "core" else self.projections + self.attention


def count_flops(experiment: Experiment, allowed_pairs: int) -> FlopCount:
    """Multiply-adds counted as 2 FLOPs; masked-out pairs are not work we asked for.
    allowed_pairs is summed over batch items and heads (Prepared.allowed_pairs).
    For the pass timed, as FlashAttention counts them: the attention backward is 2.5 times its
    forward (five matrix products against two), a projection's backward twice its forward."""
    sizes = experiment.sizes
    n, length, source, e = sizes.batch_size, sizes.seq_len, sizes.source_len, sizes.embed_dim
    projected = length if experiment.decoding else source  # decoding projects only the new tokens' keys
    projections = 2 * n * length * e * e * 2 + 2 * n * projected * sizes.kv_width * (sizes.kdim + sizes.vdim)
    attention = 4 * allowed_pairs * sizes.head_dim
    attention_factor, projection_factor = PASS_FACTORS[experiment.timing.pass_]
    return FlopCount(projections=int(projections * projection_factor), attention=int(attention * attention_factor))


def count_bytes(experiment: Experiment, keys_read: int) -> int:
    """The bytes one forward must move at least, the way memory-bound kernels are judged: K and V read once per
    key/value head (keys_read: the keys some query may attend, summed over batch items), q read and the output written;
    at layer scope also the weights and the layer's input and output. keys_read is S unless a window or a
    mask leaves keys no query reads."""
    from .dtypes import DTYPE_BYTES

    sizes, b = experiment.sizes, DTYPE_BYTES[experiment.dtype]
    n, h, length, d, e = sizes.batch_size, sizes.num_heads, sizes.seq_len, sizes.head_dim, sizes.embed_dim
    core = sizes.kv_heads * keys_read * d * 2 + 2 * n * h * length * d
    if experiment.timing.scope == "core":
        return b * core
    weights = 2 * e * e + sizes.kv_width * (sizes.kdim + sizes.vdim)
    return b * (core + weights + 2 * n * length * e)


# (attention, projections) FLOPs of each pass, in forwards.
PASS_FACTORS = {"forward": (1.0, 1.0), "backward": (2.5, 2.0), "forward_backward": (3.5, 3.0)}
