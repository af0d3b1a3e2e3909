"""Start-up time of the commands that must not import torch.

Targets: `mha --help` has a median wall time under 0.3 s; `mha validate
configs/quickstart.yaml` takes at most 1.6x the floor, a bare Python importing
the libraries validate cannot do without (typer, yaml, rich, pydantic), timed
in the same run. Each command runs as a fresh process, the way a user or a
shell completion script starts it; the commands are interleaved round by round
so that machine noise hits all of them alike.

    python bench/startup.py [--repeat 20]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HELP_TARGET_S = 0.3
VALIDATE_TARGET_RATIO = 1.6


def mha_executable() -> str:
    beside_python = Path(sys.executable).with_name("mha")
    found = str(beside_python) if beside_python.exists() else shutil.which("mha")
    if found is None:
        sys.exit("the `mha` command is not installed; run `pip install -e .` first")
    return found


def child_env() -> dict[str, str]:
    # A user's Python caches compiled modules; some sandboxes turn that off
    # (PYTHONDONTWRITEBYTECODE), which would time the compiler, not mha.
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def interleaved_wall_times(commands: dict[str, list[str]], repeat: int) -> dict[str, list[float]]:
    """Each command `repeat` times, one of each per round, after one warm-up run each."""
    env = child_env()
    for command in commands.values():  # warm caches, write .pyc
        subprocess.run(command, capture_output=True, check=True, cwd=REPO, env=env)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeat):
        for name, command in commands.items():
            start = time.perf_counter()
            subprocess.run(command, capture_output=True, check=True, cwd=REPO, env=env)
            times[name].append(time.perf_counter() - start)
    return times


FLOOR = "import typer, yaml, rich; from pydantic import BaseModel"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    mha = mha_executable()
    times = interleaved_wall_times(
        {
            "mha --help": [mha, "--help"],
            "mha validate configs/quickstart.yaml": [mha, "validate", "configs/quickstart.yaml"],
            f"floor: python -c '{FLOOR}'": [sys.executable, "-c", FLOOR],
        },
        args.repeat,
    )
    medians = {name: statistics.median(values) for name, values in times.items()}
    help_s, validate_s, floor_s = medians.values()
    print(f"{'command':72} {'median':>8} {'min':>8} {'max':>8}")
    for name, values in times.items():
        print(f"{name:72} {medians[name]:8.3f} {min(values):8.3f} {max(values):8.3f}")
    ratio = validate_s / floor_s
    help_ok, validate_ok = help_s < HELP_TARGET_S, ratio <= VALIDATE_TARGET_RATIO
    print(f"mha --help: {help_s:.3f} s (target < {HELP_TARGET_S} s): {'met' if help_ok else 'NOT met'}")
    print(f"mha validate / floor: {ratio:.2f} (target <= {VALIDATE_TARGET_RATIO}): {'met' if validate_ok else 'NOT met'}")
    return 0 if help_ok and validate_ok else 1


if __name__ == "__main__":
    sys.exit(main())
