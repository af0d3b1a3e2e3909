"""Performance targets of the local and sparse variants, measured by `mha` itself in one process.

CPU, float32, all threads, `timing.scope: core`, N=2, H=8, E=512 (head_dim 64):
  1. local, window 128, L=8192: blocked >= 12x faster than sdpa with the dense mask,
     and no slower than flex after compilation.
  2. local, window 128, L = 2048 .. 16384: blocked time grows linearly (slope of
     log time against log L <= 1.15), and so does its peak memory.
  3. sparse bigbird (block 64, window_blocks 3, global_blocks 1, random_blocks 2),
     L=8192: blocked >= 8x faster than dense-masked sdpa.
  4. local, window 128, L=65536, N=1: blocked runs with peak memory under 2 GiB
     while the memory guard skips the dense rows.
Every figure comes from run_experiment, the function behind `mha run`.

    python bench/patterns.py [--min-run-time 2] [--rounds 3] [--skip-flex]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

import torch
from verdicts import report  # bench/verdicts.py, beside this script

from mha_cli.config import load_config
from mha_cli.memory import format_bytes
from mha_cli.results import Result
from mha_cli.runner import run_experiment

BASE = ["name=bench", "embed_dim=512", "num_heads=8", "batch_size=2", "mask.key_padding=null",
        "need_weights=false", "timing.scope=core"]
LOCAL = ["variant=local", "local.window=128"]
BIGBIRD = ["variant=sparse", "sparse.pattern=bigbird", "sparse.block=64", "sparse.window_blocks=3",
           "sparse.global_blocks=1", "sparse.random_blocks=2"]


def run(overrides: list[str], min_run_time: float) -> dict[str, Result]:
    config = load_config(None, BASE + overrides + [f"timing.min_run_time={min_run_time}"])
    start = time.perf_counter()
    report = run_experiment(config, progress=lambda message: print(f"    {message}", file=sys.stderr, flush=True))
    print(f"  ({' '.join(overrides)}: {time.perf_counter() - start:.0f} s)", file=sys.stderr)
    return {r.impl: r for r in report.results}


def show(results: dict[str, Result]) -> None:
    for r in results.values():
        timing = f"{r.median_s * 1e3:9.1f} ms ±{100 * r.iqr_s / r.median_s:4.1f}%" if r.median_s else f"{r.status:>18}"
        extra = f" compile {r.compile_s:.1f} s" if r.compile_s else ""
        memory = format_bytes(r.peak_mem_bytes) if r.peak_mem_bytes is not None else "-"
        print(f"    {r.impl:8} {timing}  peak {memory:>10}  {r.status}{extra}  {r.reason[:90]}")


def slope(xs: list[float], ys: list[float]) -> float:
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--min-run-time", type=float, default=2.0)
    parser.add_argument("--skip-flex", action="store_true", help="leave out FlexAttention (its compile takes ~30 s)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each comparison (the median ratio is judged)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, timing.scope core")
    verdicts: list[tuple[str, bool]] = []

    print(f"1. local, window 128, L=8192, N=2, H=8, d=64 ({args.rounds} rounds)")
    impls = "[blocked,sdpa]" if args.skip_flex else "[blocked,sdpa,flex]"
    rounds = [run(LOCAL + ["seq_len=8192", f"impls={impls}"], args.min_run_time) for _ in range(args.rounds)]
    for one in rounds:
        show(one)
    speedups = [one["sdpa"].median_s / one["blocked"].median_s for one in rounds]
    verdicts.append((f"blocked {statistics.median(speedups):.1f}x faster than dense-masked sdpa "
                     f"(rounds: {', '.join(f'{x:.1f}' for x in speedups)}; target >= 12x)", statistics.median(speedups) >= 12))
    if not args.skip_flex and all(one["flex"].median_s for one in rounds):
        ratios = [one["blocked"].median_s / one["flex"].median_s for one in rounds]
        verdicts.append((f"blocked / flex time = {statistics.median(ratios):.2f} "
                         f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)}; target <= 1)", statistics.median(ratios) <= 1))

    print(f"2. local, window 128, blocked, L = 2048 .. 16384 ({args.rounds} interleaved rounds, median per L)")
    lengths = [2048, 4096, 8192, 16384]
    samples: dict[int, list[Result]] = {length: [] for length in lengths}
    for _ in range(args.rounds):  # interleaved, so a busy spell on the machine hits every length alike
        for length in lengths:
            samples[length].append(run(LOCAL + [f"seq_len={length}", "impls=[blocked]"], args.min_run_time)["blocked"])
    times = [statistics.median(r.median_s for r in samples[length]) for length in lengths]
    peaks = [statistics.median(r.peak_mem_bytes for r in samples[length]) for length in lengths]
    for length, seconds, peak in zip(lengths, times, peaks):
        print(f"    L={length:6}  {seconds * 1e3:8.1f} ms  peak {format_bytes(peak)}")
    time_slope, memory_slope = slope(lengths, times), slope(lengths, peaks)
    verdicts.append((f"time slope {time_slope:.2f} (target <= 1.15)", time_slope <= 1.15))
    growth = [(b - a) / (d - c) for a, b, c, d in zip(peaks, peaks[1:], lengths, lengths[1:])]
    print(f"    peak memory per extra query position: {', '.join(f'{g / 1024:.1f} KiB' for g in growth)}")
    verdicts.append((f"peak memory slope {memory_slope:.2f}, i.e. at most linear (target <= 1.15)", memory_slope <= 1.15))

    print(f"3. sparse bigbird, block 64, window 3, global 1, random 2, L=8192 ({args.rounds} rounds)")
    rounds = [run(BIGBIRD + ["seq_len=8192", "impls=[blocked,sdpa]"], args.min_run_time) for _ in range(args.rounds)]
    for three in rounds:
        show(three)
    speedups = [three["sdpa"].median_s / three["blocked"].median_s for three in rounds]
    verdicts.append((f"bigbird: blocked {statistics.median(speedups):.1f}x faster than dense-masked sdpa "
                     f"(rounds: {', '.join(f'{x:.1f}' for x in speedups)}; target >= 8x)", statistics.median(speedups) >= 8))

    print("4. local, window 128, L=65536, N=1")
    four = run(LOCAL + ["seq_len=65536", "batch_size=1", "impls=[blocked,sdpa,manual]"], args.min_run_time)
    show(four)
    blocked = four["blocked"]
    dense_skipped = all(four[name].status == "skipped" for name in ("sdpa", "manual"))
    verdicts.append((f"L=65536: blocked {blocked.status}, peak {format_bytes(blocked.peak_mem_bytes or 0)} (target < 2 GiB)",
                     blocked.status == "ok" and (blocked.peak_mem_bytes or 0) < 2 * 2**30))
    verdicts.append(("L=65536: dense rows skipped by the memory guard", dense_skipped))

    return report(verdicts)


if __name__ == "__main__":
    sys.exit(main())
