"""Small configs that run in milliseconds, shared by the tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from mha_cli.config import Config

FAST_TIMING = {"min_run_time": 0.01, "threads": 1}
FAST_OVERRIDES = ["timing.min_run_time=0.01", "timing.threads=1"]


def small_config(**changes: Any) -> Config:
    """A tiny valid config; keyword arguments replace fields (validated)."""
    base: dict[str, Any] = {
        "name": "test",
        "embed_dim": 16,
        "num_heads": 2,
        "batch_size": 2,
        "seq_len": 5,
        "timing": FAST_TIMING,
    }
    base.update(changes)
    return Config.model_validate(base)


REPO = Path(__file__).resolve().parent.parent


def _default_sigint() -> None:
    # A job started in the background by a shell inherits SIGINT ignored, and Python then
    # installs no KeyboardInterrupt handler: give the child the default a terminal would.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def mha_process(*args: str, env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.Popen[str]:
    """`python -m mha_cli ARGS` as a real process (for signals, locks and kill -9), stderr piped line by line."""
    return subprocess.Popen(
        [sys.executable, "-m", "mha_cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=kwargs.pop("cwd", REPO), env={**os.environ, **(env or {})}, preexec_fn=_default_sigint, **kwargs,
    )


def wait_for_line(process: subprocess.Popen[str], needle: str, count: int = 1) -> list[str]:
    """Read stderr until `needle` has appeared on `count` lines; returns the lines read."""
    assert process.stderr is not None
    seen, lines = 0, []
    for line in process.stderr:
        lines.append(line)
        if needle in line:
            seen += 1
            if seen == count:
                return lines
    raise AssertionError(f"{needle!r} never appeared {count} time(s); stderr was:\n{''.join(lines)}")
