"""Start-up time of the commands that must not import torch.

Target: `mha --help` and `mha validate configs/quickstart.yaml` each have a
median wall time under 0.3 s. Each command runs as a fresh process, the way a
user or a shell completion script starts it.

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
TARGET_S = 0.3


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


def wall_times(command: list[str], repeat: int) -> list[float]:
    env = child_env()
    subprocess.run(command, capture_output=True, check=True, cwd=REPO, env=env)  # warm caches, write .pyc
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True, cwd=REPO, env=env)
        times.append(time.perf_counter() - start)
    return times


def floor_command() -> list[str]:
    """Python importing only the libraries `mha validate` cannot do without: the floor."""
    return [sys.executable, "-c", "import typer, yaml; from pydantic import BaseModel"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    mha = mha_executable()
    failed = False
    print(f"{'command':45} {'median':>8} {'min':>8} {'max':>8}  target < {TARGET_S} s")
    for command in (["--help"], ["validate", "configs/quickstart.yaml"]):
        times = wall_times([mha, *command], args.repeat)
        median = statistics.median(times)
        failed |= median >= TARGET_S
        verdict = "ok" if median < TARGET_S else "TOO SLOW"
        print(f"{'mha ' + ' '.join(command):45} {median:8.3f} {min(times):8.3f} {max(times):8.3f}  {verdict}")
    floor = wall_times(floor_command(), args.repeat)
    print(f"{'(floor: python -c import typer, yaml, pydantic)':45} {statistics.median(floor):8.3f} {min(floor):8.3f} {max(floor):8.3f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
