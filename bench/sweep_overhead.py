"""Sweep overheads, each round in a fresh process (as a user's `mha sweep` runs).

Targets:
  1. A 12-point sweep of small configs (num_heads 1,2,4,8 x seq_len 16,32,64 over the
     default config, 3 implementations, min_run_time 0.2 s: a 7.2 s timing budget)
     spends at most 15% of its wall time outside that budget. The wall time is the
     sweep's own (execute(): every point, points.jsonl, the summary files), after
     Python and torch have been imported.
  2. `mha sweep --heads 1,2,4` with the default config finishes in under 10 s
     (the whole command: interpreter, torch import, three points, summary files).

    python bench/sweep_overhead.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # a user's Python caches bytecode

CHILD = r"""
import json, sys, tempfile, time
from pathlib import Path
import mha_cli.runner  # torch, imported before the clock starts
from mha_cli.config import load_config
from mha_cli.sweep.grid import Shard, build_grid
from mha_cli.sweep.runner import execute
from mha_cli.sweep.store import SweepFolder

plot = sys.argv[1] == "plot"
config = load_config(None, ["name=overhead", "mask.key_padding=null"])
flags = {"heads": "1,2,4,8", "seq_len": "16,32,64"}
grid = build_grid(config, flags, None)
folder = SweepFolder(Path(tempfile.mkdtemp()) / "sweep")
folder.create(grid, Shard(1, 1))
start = time.perf_counter()
summary = execute(grid, Shard(1, 1), folder, plot=plot)
wall = time.perf_counter() - start
assert summary["counts"]["done"] == grid.size(), summary["counts"]
points = sum(r["wall_s"] for r in folder.records())
print(json.dumps({"wall": wall, "points_wall": points, "points": grid.size(),
                  "budget": grid.size() * len(config.impls) * config.timing.min_run_time}))
"""


def sweep_round(plot: bool) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", CHILD, "plot" if plot else "no-plot"], check=True,
                          capture_output=True, text=True, cwd=REPO, env=ENV)
    return json.loads(done.stdout.strip().splitlines()[-1])


def whole_command() -> float:
    mha = Path(sys.executable).with_name("mha")
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        subprocess.run([str(mha), "sweep", "--heads", "1,2,4", "--output-dir", f"{folder}/sweep"],
                       check=True, capture_output=True, cwd=REPO, env=ENV)
        return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    shares: dict[bool, list[float]] = {True: [], False: []}
    commands = []
    for index in range(args.rounds):
        for plot in (True, False):
            found = sweep_round(plot)
            share = (found["wall"] - found["budget"]) / found["wall"]
            shares[plot].append(share)
            per_point = (found["points_wall"] - found["budget"]) / found["points"]
            print(f"round {index + 1}, {'with sweep.png' if plot else '--no-plot     '}: wall {found['wall']:.2f} s, "
                  f"budget {found['budget']:.2f} s, outside it {100 * share:.1f}% "
                  f"({1000 * per_point:.0f} ms per point; summary files {found['wall'] - found['points_wall']:.2f} s)")
        commands.append(whole_command())
        print(f"round {index + 1}: `mha sweep --heads 1,2,4` took {commands[-1]:.2f} s")
    default, bare, command = statistics.median(shares[True]), statistics.median(shares[False]), statistics.median(commands)
    verdicts = [
        (default <= 0.15, f"time outside the timing budget, default sweep (writes sweep.png): median {100 * default:.1f}% (target <= 15%)"),
        (bare <= 0.15, f"time outside the timing budget with --no-plot: median {100 * bare:.1f}%"),
        (command < 10, f"`mha sweep --heads 1,2,4`: median {command:.2f} s (target < 10 s)"),
    ]
    for ok, text in verdicts:
        print(f"{'ok    ' if ok else 'MISSED'}  {text}")
    return 0 if verdicts[0][0] and verdicts[2][0] else 1


if __name__ == "__main__":
    sys.exit(main())
