"""Where does the spread between timings live: between processes, or between repetitions in one process?

The figures behind timing.repetitions (docs/performance.md). For each case, P fresh
processes (one after another) each time the point R times in a row, every time with
fresh inputs, weights and allocations (a new run_experiment). Printed: per process,
the medians of its repetitions; the spread of those within one process and between
the processes' medians; and how often the gate would cry wolf on identical code if
each side of a compare were one process's repetitions (Mann-Whitney U at 5%, one
sided, and a change above 10%).

    python bench/repetitions.py [--processes 6] [--repetitions 5]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mha_cli.rank_test import p_slower  # noqa: E402

CASES = {  # name: (config file or "-" for the built-in default, overrides)
    "README recipe point (quickstart, num_heads=2)": ("-", ["num_heads=2", "timing.min_run_time=0.04"]),
    "local_window L=1024 (ms-scale calls)": ("configs/local_window.yaml",
                                             ["seq_len=1024", "impls=[sdpa,blocked]", "timing.min_run_time=0.04"]),
}

CHILD = r"""
import json, sys
from mha_cli.config import load_config
from mha_cli.runner import run_experiment
path, repetitions, *overrides = sys.argv[1:]
config = load_config(None if path == "-" else path, overrides)
medians = {}
for _ in range(int(repetitions)):
    for result in run_experiment(config).results:
        medians.setdefault(result.impl, []).append(result.median_s)
print(json.dumps(medians))
"""


def spread(values: list[float]) -> float:
    return max(values) / min(values) - 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=6)
    parser.add_argument("--repetitions", type=int, default=5)
    args = parser.parse_args()
    for case, (path, overrides) in CASES.items():
        print(f"== {case}", flush=True)
        per_process: list[dict[str, list[float]]] = []
        for _ in range(args.processes):
            command = [sys.executable, "-c", CHILD, path, str(args.repetitions), *overrides]
            out = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=True).stdout
            per_process.append(json.loads(out))
        for impl in per_process[0]:
            runs = [p[impl] for p in per_process]
            within = statistics.median(spread(r) for r in runs)
            medians = [statistics.median(r) for r in runs]
            print(f"  {impl:8} per process (us): " + "  ".join(f"{1e6 * statistics.median(r):9.1f}" for r in runs))
            print(f"  {'':8} spread within a process (median over processes) {100 * within:5.1f}%; "
                  f"between processes' medians {100 * spread(medians):5.1f}%")
            wolves = sum(1 for a, b in itertools.permutations(runs, 2)
                         if statistics.median(b) / statistics.median(a) - 1 > 0.10 and p_slower(a, b) < 0.05)
            pairs = args.processes * (args.processes - 1)
            print(f"  {'':8} identical code judged a regression from one process's repetitions each: {wolves} of {pairs} pairs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
