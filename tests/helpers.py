"""What several test modules share: tiny configs, config strategies, sweep flags, a sample report."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from hypothesis import strategies as st

from mha_cli.arith import ceil_div
from mha_cli.attention import AttentionOutput, builtin
from mha_cli.block_plan import BlockPlan
from mha_cli.config import Config
from mha_cli.experiment import resolve
from mha_cli.inputs import make_inputs
from mha_cli.prepared import Prepared
from mha_cli.results import Result, RunReport, ShapeRow
from mha_cli.workload import Workload, make_workload

CPU = torch.device("cpu")

# One repetition, in the test's own process: the repetitions' processes have tests of their own.
FAST_TIMING = {"min_run_time": 0.01, "threads": 1, "repetitions": 1}
FAST_OVERRIDES = ["timing.min_run_time=0.01", "timing.threads=1", "timing.repetitions=1"]


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


def prepared(config: Config) -> Prepared:
    """The config resolved, its derived state ready to compute on first use."""
    return Prepared(resolve(config))


def workload(config: Config, device: torch.device = CPU) -> Workload:
    """Inputs, weights and the mask of a config on a device: what implementations are built from."""
    ready = prepared(config)
    return make_workload(ready, make_inputs(ready.experiment, device))


def allowed_mask(config: Config) -> torch.Tensor:
    """(N, 1 or H, L, S) bool: every pair the config allows (small configs only)."""
    return prepared(config).dense_allowed()


def plan_of(config: Config) -> BlockPlan:
    """blocked's plan for a local or sparse config."""
    return prepared(config).plan


def call(name: str, work: Workload) -> AttentionOutput:
    """One call of a built-in implementation built on this workload."""
    return builtin(name).build(work)()


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


@st.composite
def configs(draw: st.DrawFn, variants: tuple[str, ...] = ("full", "local", "sparse")) -> Config:
    heads = draw(st.sampled_from([1, 2, 4]))
    embed_dim = heads * draw(st.sampled_from([1, 4, 8]))
    batch = draw(st.integers(1, 3))
    length = draw(st.integers(1, 24))
    cross = draw(st.booleans())
    source = draw(st.integers(1, 24)) if cross else length
    fields: dict = {
        "embed_dim": embed_dim,
        "num_heads": heads,
        "batch_size": batch,
        "seq_len": length,
        "attention": "cross" if cross else "self",
        "batch_first": draw(st.booleans()),
        "bias": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**16)),
        "need_weights": draw(st.booleans()),
        "average_attn_weights": draw(st.booleans()),
        "timing": {**FAST_TIMING, "scope": draw(st.sampled_from(["layer", "core"]))},
        "variant": draw(st.sampled_from(variants)),
    }
    if cross:
        fields["source_len"] = source
        fields["kdim"] = draw(st.sampled_from([None, 3, 7]))
        fields["vdim"] = draw(st.sampled_from([None, 5]))
    mask: dict = {"causal": draw(st.booleans())}
    if mask["causal"] and draw(st.booleans()):
        mask["prefix"] = draw(st.integers(0, source))
    if not cross and draw(st.booleans()):
        cuts = sorted(set(draw(st.lists(st.integers(1, max(1, length - 1)), max_size=3)))) if length > 1 else []
        edges = [0, *cuts, length]
        mask["documents"] = {"lengths": [b - a for a, b in zip(edges, edges[1:]) if b > a]}
    if draw(st.booleans()):
        mask["key_padding"] = {"lengths": draw(st.lists(st.integers(1, source), min_size=batch, max_size=batch))}
    fields["mask"] = mask
    if fields["variant"] == "local":
        fields["local"] = {"window": draw(st.integers(0, 30)), "dilation": draw(st.sampled_from([1, 1, 2, 3])),
                           "sinks": draw(st.sampled_from([0, 0, 1, 4]))}
    if fields["variant"] == "sparse":
        pattern = draw(st.sampled_from(["strided", "bigbird", "custom"]))
        if pattern == "custom":  # rules that differ per head, per batch item, or come from a generator
            from .mask_mods import reference

            rule = draw(st.sampled_from(["head_window", "batch_stripes", "window"]))
            fields["sparse"] = {"pattern": "custom", "mask_mod": reference(rule)}
            if rule == "window":
                fields["sparse"]["mask_mod_args"] = {"width": draw(st.integers(0, 6))}
        elif pattern == "strided":
            fields["sparse"] = {"pattern": "strided", "stride": draw(st.integers(1, 10))}
        else:
            block = draw(st.integers(1, min(length, source)))
            blocks = ceil_div(source, block)
            window = draw(st.sampled_from([1, 3, 5]))
            global_blocks = draw(st.integers(0, min(ceil_div(length, block), blocks) // 2))
            random_blocks = draw(st.integers(0, max(0, blocks - window - 2 * global_blocks)))
            fields["sparse"] = {"pattern": "bigbird", "block": block, "window_blocks": window,
                                "global_blocks": global_blocks, "random_blocks": random_blocks}
    return Config.model_validate(fields)


NO_FLAGS = {"heads": None, "seq_len": None, "embed_dim": None, "batch": None, "window": None, "variant": None, "dtype": None, "pass": None}


def flags(**given: str) -> dict:
    return {**NO_FLAGS, **given}


def sample_report() -> RunReport:
    return RunReport(
        mha_version="0.1.0",
        created="2026-11-27T10:00:00+00:00",
        config=small_config().to_dict(),
        env={"torch": "2.13.0", "python": "3.11", "platform": "linux", "cpu": "cpu", "device": "cpu", "num_threads": 2, "commit": None},
        shapes={"query": [5, 2, 16], "key": [5, 2, 16], "value": [5, 2, 16], "output": [5, 2, 16], "attn_weights": None},
        shape_table=[ShapeRow("query", [5, 2, 16], "(L=5, N=2, E=16)", "a | note")],
        results=[
            Result("torch", "full", "float32", "cpu", "ok", median_s=1e-3, iqr_s=1e-5, runs=9, ok=True, max_abs_err=float("nan")),
            Result("sdpa", "full", "float32", "cpu", "skipped", reason="no kernel"),
        ],
    )
