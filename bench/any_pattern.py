"""Issue 10's targets (any attention pattern, sub-quadratic on the CPU), measured by `mha` itself in one run.

CPU, float32, all threads, `timing.scope: core`, N=2, H=8, E=512 (head_dim 64), L=8192:
  1. efficiency: every built-in pattern's `blocked` reaches >= 0.7 of the GFLOP/s (counted on
     allowed pairs) of unmasked dense SDPA at the same shape (dense measured before and after);
  2. generic plan: a custom rule equal to causal local w=128 (attention-gym's
     generate_sliding_window(128)) within 1.3x of the hand-written causal local plan, and >= 8x
     faster than dense-masked SDPA;
  3. mask.documents, 8 documents of 1024: blocked >= 5x faster than dense-masked SDPA;
  4. dilated window (window 256, dilation 2): blocked >= 8x faster than dense-masked SDPA;
  5. planning a custom rule: under 5 s at L=16384, and under 256 MiB of extra memory at L=65536
     (each in a fresh process, peak RSS read before and after).
Every time comes from run_experiment, the function behind `mha run`; ratios are taken
between rows of the same run (or neighbouring runs), since this machine is noisy.

    python bench/any_pattern.py [--min-run-time 2] [--rounds 3] [--skip-planning]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import textwrap
import time

import torch
from verdicts import report  # bench/verdicts.py, beside this script

from mha_cli.config import load_config
from mha_cli.results import Result
from mha_cli.runner import run_experiment

BASE = ["name=bench", "embed_dim=512", "num_heads=8", "batch_size=2", "seq_len=8192", "mask.key_padding=null",
        "need_weights=false", "timing.scope=core"]
SLIDING_WINDOW = ["variant=sparse", "sparse.pattern=custom", "sparse.mask_mod=attn_gym.masks:generate_sliding_window",
                  "sparse.mask_mod_args={window_size: 128}"]
BUILT_IN = {
    "local window 128": ["variant=local", "local.window=128"],
    "local window 128, causal": ["variant=local", "local.window=128", "mask.causal=true"],
    "local window 256, dilation 2": ["variant=local", "local.window=256", "local.dilation=2"],
    "local window 128, 4 sinks": ["variant=local", "local.window=128", "local.sinks=4"],
    "bigbird defaults": ["variant=sparse", "sparse.pattern=bigbird"],
    "strided, stride 128": ["variant=sparse", "sparse.pattern=strided", "sparse.stride=128"],
    "8 documents of 1024": ["mask.documents.lengths=[1024,1024,1024,1024,1024,1024,1024,1024]"],
}


def run(overrides: list[str], impls: str, min_run_time: float) -> dict[str, Result]:
    config = load_config(None, BASE + overrides + [f"impls={impls}", f"timing.min_run_time={min_run_time}"])
    start = time.perf_counter()
    report = run_experiment(config)
    results = {r.impl: r for r in report.results}
    for r in results.values():
        timing = f"{r.median_s * 1e3:9.1f} ms ({r.runs} runs) {r.gflops:6.1f} GFLOP/s" if r.median_s else r.status
        plan = f", plan {r.plan_s:.2f} s" if r.plan_s is not None else ""
        print(f"    {' '.join(overrides)[:70]:70} {r.impl:8} {timing}{plan} {r.reason[:60]}", flush=True)
    print(f"      ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    return results


PLANNING = textwrap.dedent("""
    import time
    from pathlib import Path
    from mha_cli.block_plan import generic_plan
    from mha_cli.config import load_config
    from mha_cli.experiment import resolve
    from mha_cli.prepared import Prepared

    def status_kib(field):
        line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field))
        return int(line.split()[1])

    prepared = Prepared(resolve(load_config(None, {base!r} + ["seq_len={length}"])))
    prepared.groups  # imports and probes the rule: not planning
    before = status_kib("VmRSS:")
    Path("/proc/self/clear_refs").write_text("5")  # resets the peak (VmHWM) to the current RSS
    start = time.perf_counter()
    plan = generic_plan(prepared.plan_context)
    seconds = time.perf_counter() - start
    extra = (status_kib("VmHWM:") - before) / 1024
    print(f"{{seconds:.2f}} {{extra:.1f}} {{plan.block}}")
""")


def planning(length: int) -> tuple[float, float, int]:
    """Seconds and extra peak MiB to plan the custom sliding window at this length, in a fresh process."""
    code = PLANNING.format(base=BASE + SLIDING_WINDOW, length=length)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1]), int(out[2])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--min-run-time", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of generic against hand-written")
    parser.add_argument("--skip-planning", action="store_true", help="leave out target 5 (about a minute)")
    args = parser.parse_args()
    t = args.min_run_time
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, timing.scope core, N=2 H=8 d=64 L=8192")
    verdicts: list[tuple[str, bool]] = []

    print("1. efficiency against unmasked dense sdpa")
    dense = [run(["variant=full"], "[sdpa]", t)["sdpa"].gflops]
    blocked = {name: run(overrides, "[blocked]", t)["blocked"] for name, overrides in BUILT_IN.items()}
    dense.append(run(["variant=full"], "[sdpa]", t)["sdpa"].gflops)
    reference = sum(dense) / 2
    print(f"    dense sdpa: {dense[0]:.1f} and {dense[1]:.1f} GFLOP/s (before, after); mean {reference:.1f}")
    for name, result in blocked.items():
        share = result.gflops / reference
        verdicts.append((f"{name}: blocked {result.gflops:.1f} GFLOP/s on allowed pairs = {share:.2f} of dense "
                         "(target >= 0.7)", share >= 0.7))

    print("2. the generic plan on attention-gym's sliding window (128) against the hand-written causal local plan")
    dense_masked = run(BUILT_IN["local window 128, causal"], "[sdpa]", t)["sdpa"]
    ratios, generic_times = [], []
    for _ in range(args.rounds):  # interleaved: the machine's noise moves both alike
        hand = run(BUILT_IN["local window 128, causal"], "[blocked]", t)["blocked"]
        generic = run(SLIDING_WINDOW, "[blocked]", t)["blocked"]
        ratios.append(generic.median_s / hand.median_s)
        generic_times.append(generic.median_s)
    ratio = statistics.median(ratios)
    verdicts.append((f"generic / hand-written = {ratio:.2f} (rounds {', '.join(f'{r:.2f}' for r in ratios)}; "
                     "target <= 1.3)", ratio <= 1.3))
    speedup = dense_masked.median_s / statistics.median(generic_times)
    verdicts.append((f"generic plan {speedup:.1f}x faster than dense-masked sdpa (target >= 8x)", speedup >= 8))

    for number, name, target in ((3, "8 documents of 1024", 5), (4, "local window 256, dilation 2", 8)):
        print(f"{number}. {name}: blocked against dense-masked sdpa")
        both = run(BUILT_IN[name], "[blocked,sdpa]", t)
        speedup = both["sdpa"].median_s / both["blocked"].median_s
        verdicts.append((f"{name}: blocked {speedup:.1f}x faster than dense-masked sdpa (target >= {target}x)", speedup >= target))

    if not args.skip_planning:
        print("5. planning the custom sliding window (a fresh process each)")
        seconds, _, block = planning(16384)
        verdicts.append((f"L=16384: planned in {seconds:.2f} s, block {block} (target < 5 s)", seconds < 5))
        seconds, extra, block = planning(65536)
        verdicts.append((f"L=65536: planned in {seconds:.1f} s with {extra:.0f} MiB extra peak memory (target < 256 MiB)",
                         extra < 256))

    return report(verdicts)


if __name__ == "__main__":
    sys.exit(main())
