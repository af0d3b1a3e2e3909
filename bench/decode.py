"""Issue 19's targets (grouped heads and decoding), measured by `mha` itself: run_experiment, float32, 2 threads.

  1. Llama-3-8B-like decode step (N=4, H=32, H_kv=8, d=128, one new token, 32,768 cached, core scope):
     blocked >= 3x faster than sdpa (enable_gqa) and >= 40% of the copy-bandwidth probe, checked against float64;
  2. sliding-window decode (window 4096, 131,072 cached, N=4, H=32, H_kv=8, d=128, causal): blocked >= 20x
     faster than dense-masked sdpa over the whole cache;
  3. blocked with grouped heads on the band (local w=128, L=8192, N=2, H=8, d=64, core): H_kv=2 within 1.05x
     of H_kv=8's time, with lower peak memory;
  4. the shipped Llama-3-8B-like example (`mha run example:llama3_8b_decode`) as a user runs it: every row agrees
     with float64, GB/s shown as a share of the probe, the whole run under 60 s;
  5. decode at S = 1,048,576 (N=1, H=8, H_kv=1, d=128): every row checked, the process's peak memory under 8 GiB
     (in a child process, so that its peak is its own).
Rows that are compared are measured in one run_experiment call: interleaved repetitions, side by side.

    python bench/decode.py [--min-run-time 1.0] [--only 1,2,3,4,5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from verdicts import report  # bench/verdicts.py, beside this script

from mha_cli.config import load_config
from mha_cli.memory import format_bytes
from mha_cli.results import Result
from mha_cli.runner import run_experiment

# Target 5 runs under the memory guard's limit just below 8 GiB: a row that needs more (PyTorch's enable_gqa
# repeats K and V for every query head: 8 GiB at S = 2^20) is skipped with the reason, the rest are checked.
MILLION_LIMIT = int(7.5 * 2**30)
LLAMA = ["name=llama-decode", "embed_dim=4096", "num_heads=32", "num_kv_heads=8", "batch_size=4", "seq_len=1",
         "mask.key_padding=null", "mask.causal=true", "need_weights=false", "timing.scope=core", "timing.threads=2"]


def run(overrides: list[str], min_run_time: float, base: str | None = None) -> dict[str, Result]:
    config = load_config(base, overrides + [f"timing.min_run_time={min_run_time}"])
    start = time.perf_counter()
    results = {r.impl: r for r in run_experiment(config).results}
    for r in results.values():
        timing = f"{r.median_s * 1e3:9.2f} ms ({r.runs} runs)" if r.median_s else r.status
        rate = f"{r.gb_per_s:6.2f} GB/s ({100 * r.gb_per_s / r.bandwidth_gb_per_s:.0f}% of {r.bandwidth_gb_per_s:.1f})" \
            if r.gb_per_s and r.bandwidth_gb_per_s else ""
        memory = format_bytes(r.peak_mem_bytes) if r.peak_mem_bytes is not None else "-"
        print(f"    {r.impl:8} {timing}  {rate:30} peak {memory:>10}  {'ok' if r.ok else r.status} "
              f"err {r.max_abs_err if r.max_abs_err is not None else '-'} {r.reason[:80]}", flush=True)
    print(f"      ({time.perf_counter() - start:.0f} s)", flush=True)
    return results


def llama(min_run_time: float) -> list[tuple[str, bool]]:
    print("1. Llama-3-8B-like decode step, core, 32,768 cached tokens")
    rows = run([*LLAMA, "decode.cache_len=32768", "impls=[sdpa,blocked]"], min_run_time)
    sdpa, blocked = rows["sdpa"], rows["blocked"]
    speedup = sdpa.median_s / blocked.median_s
    share = blocked.gb_per_s / blocked.bandwidth_gb_per_s
    return [(f"llama decode: blocked {speedup:.2f}x faster than sdpa enable_gqa (target >= 3), both agree with float64",
             speedup >= 3 and sdpa.ok and blocked.ok),
            (f"llama decode: blocked at {blocked.gb_per_s:.1f} GB/s = {100 * share:.0f}% of the "
             f"{blocked.bandwidth_gb_per_s:.1f} GB/s probe (target >= 40%)", share >= 0.4)]


def sliding(min_run_time: float) -> list[tuple[str, bool]]:
    print("2. sliding-window decode, window 4096, 131,072 cached tokens")
    rows = run([*LLAMA, "decode.cache_len=131072", "variant=local", "local.window=4096", "impls=[sdpa,blocked]"],
               min_run_time)
    sdpa, blocked = rows["sdpa"], rows["blocked"]
    speedup = sdpa.median_s / blocked.median_s
    return [(f"sliding-window decode: blocked {speedup:.1f}x faster than dense-masked sdpa (target >= 20), both agree",
             speedup >= 20 and sdpa.ok and blocked.ok)]


def grouped_band(min_run_time: float) -> list[tuple[str, bool]]:
    print("3. blocked on the band, H_kv = 2 against H_kv = 8 (local w=128, L=8192, core)")
    band = ["name=band", "embed_dim=512", "num_heads=8", "batch_size=2", "seq_len=8192", "mask.key_padding=null",
            "need_weights=false", "timing.scope=core", "variant=local", "local.window=128", "impls=[blocked]"]
    # The two configs differ in their inputs, so they are two runs: alternated, the median of each.
    times: dict[int, list[float]] = {8: [], 2: []}
    memory: dict[int, int] = {}
    for _ in range(3):
        for kv in (8, 2):
            found = run([*band, f"num_kv_heads={kv}"], min_run_time)["blocked"]
            assert found.ok, found.reason
            times[kv].append(found.median_s)
            memory[kv] = found.peak_mem_bytes
    ratio = sorted(times[2])[1] / sorted(times[8])[1]
    return [(f"grouped band: H_kv=2 takes {ratio:.3f}x the time of H_kv=8 (target <= 1.05)", ratio <= 1.05),
            (f"grouped band: peak memory {format_bytes(memory[2])} with H_kv=2 against {format_bytes(memory[8])} "
             "(target: lower)", memory[2] < memory[8])]


def example_run() -> list[tuple[str, bool]]:
    print("4. mha run example:llama3_8b_decode, as a user runs it")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "mha_cli", "run", "example:llama3_8b_decode", "--json", "--no-save"],
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    document = json.loads(done.stdout) if done.stdout else {"results": []}
    ran = [r for r in document["results"] if r["status"] != "skipped"]
    for r in document["results"]:
        print(f"    {r['impl']:8} {r['status']:8} {r.get('median_s') or 0:.4f} s  {r.get('gb_per_s') or 0:.2f} GB/s "
              f"of {r.get('bandwidth_gb_per_s') or 0:.1f}  {r['reason'][:80]}")
    print(f"      ({wall:.0f} s, exit {done.returncode})")
    shown = all(r.get("gb_per_s") and r.get("bandwidth_gb_per_s") for r in ran)
    return [(f"llama example: {len(ran)} rows ran, all agree with float64, GB/s against the probe on each, in "
             f"{wall:.0f} s (target < 60 s)", done.returncode == 0 and all(r["ok"] for r in ran) and shown and wall < 60)]


def million() -> list[tuple[str, bool]]:
    print("5. decode at S = 1,048,576 (N=1, H=8, H_kv=1, d=128), in a child process")
    code = (f"import json, resource\nMEMORY_LIMIT = {MILLION_LIMIT}\n"
            "from mha_cli.config import load_config\nfrom mha_cli.runner import run_experiment\n"
            "config = load_config(None, ['embed_dim=1024', 'num_heads=8', 'num_kv_heads=1', 'batch_size=1', 'seq_len=1',"
            " 'decode.cache_len=1048575', 'mask.key_padding=null', 'mask.causal=true', 'need_weights=false',"
            " 'impls=[sdpa,blocked,manual]', 'timing.repetitions=3', 'timing.min_run_time=0.3'])\n"
            "report = run_experiment(config, memory_limit=MEMORY_LIMIT)\n"
            "print(json.dumps({'rows': [(r.impl, r.status, r.ok, r.median_s, r.checked_rows, r.reason[:160])"
            " for r in report.results],"
            " 'peak_rss': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))\n")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    found = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else {"rows": [], "peak_rss": 0}
    for row in found["rows"]:
        print(f"    {row}")
    print(f"      ({time.perf_counter() - start:.0f} s, peak RSS {format_bytes(found['peak_rss'])}) {done.stderr[-300:]}")
    ran = [row for row in found["rows"] if row[1] != "skipped"]
    return [(f"decode at S = 2^20: {len(ran)} rows ran and agree, {len(found['rows']) - len(ran)} skipped by the memory "
             f"guard with their reason; peak RSS {format_bytes(found['peak_rss'])} (target < 8 GiB)",
             bool(ran) and all(row[2] for row in ran) and found["peak_rss"] < 8 * 2**30)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--min-run-time", type=float, default=1.0)
    parser.add_argument("--only", default="1,2,3,4,5")
    args = parser.parse_args()
    chosen = set(args.only.split(","))
    verdicts: list[tuple[str, bool]] = []
    if "1" in chosen:
        verdicts += llama(args.min_run_time)
    if "2" in chosen:
        verdicts += sliding(args.min_run_time)
    if "3" in chosen:
        verdicts += grouped_band(args.min_run_time)
    if "4" in chosen:
        verdicts += example_run()
    if "5" in chosen:
        verdicts += million()
    return report(verdicts)


if __name__ == "__main__":
    sys.exit(main())
