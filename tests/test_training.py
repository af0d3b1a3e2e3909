"""`timing.pass`: the backward timed, and every implementation's gradients checked against float64 autograd."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mha_cli.attention import blocked
from mha_cli.cli import app
from mha_cli.config import Config
from mha_cli.experiment import resolve
from mha_cli.masks import fully_masked_rows
from mha_cli.measure import count_flops
from mha_cli.runner import run_experiment

from .helpers import FAST_OVERRIDES, allowed_mask, configs, small_config

runner = CliRunner()
TRAINING_IMPLS = ["torch", "manual", "sdpa", "blocked"]


@settings(max_examples=30, deadline=None)
@given(config=configs(), timed=st.sampled_from(["backward", "forward_backward"]), scope=st.sampled_from(["core", "layer"]))
def test_every_implementation_gets_float64_gradients(config: Config, timed: str, scope: str) -> None:
    config = config.model_copy(update={
        "timing": config.timing.model_copy(update={"scope": scope, "pass_": timed}), "impls": TRAINING_IMPLS})
    report = run_experiment(config)
    undefined = bool(fully_masked_rows(allowed_mask(config)).any())
    for result in report.results:
        if result.impl == "torch" and scope == "core":
            assert result.status == "skipped"  # nn.MultiheadAttention has no separate core
            continue
        assert result.pass_ == timed and result.grad_max_abs_err is not None, result
        if result.impl == "manual" and undefined:
            # A plain softmax makes NaN rows where no key is allowed; they poison the backward.
            assert not result.ok and "NaN/inf in the gradient" in result.reason
        elif result.impl == "torch" and undefined:
            # nn.MultiheadAttention runs SDPA without weights (finite) and its own softmax with them (NaN).
            assert result.ok or "NaN/inf in the gradient" in result.reason, result.reason
        else:
            assert result.ok, (result.impl, result.reason)


def test_a_broken_backward_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    original = blocked._BlockedFunction.backward

    def scaled_dk(ctx, grad_out):  # type: ignore[no-untyped-def]
        dq, dk, dv, none = original(ctx, grad_out)
        return dq, dk * 1.01, dv, none

    monkeypatch.setattr(blocked._BlockedFunction, "backward", staticmethod(scaled_dk))
    config = small_config(seq_len=24, variant="local", local={"window": 3}, mask={"key_padding": None},
                          timing={"min_run_time": 0.01, "threads": 1, "repetitions": 1, "scope": "core", "pass": "backward"},
                          impls=["sdpa", "blocked"])
    sdpa, broken = run_experiment(config).results
    assert sdpa.ok
    assert broken.status == "fail" and "dk: max error" in broken.reason and broken.ok is False


def test_sampled_rows_restrict_the_loss_for_both_sides() -> None:
    # Long enough that the reference checks evenly spread rows, not all of them.
    config = small_config(embed_dim=64, num_heads=8, batch_size=2, seq_len=2400, variant="local", local={"window": 16},
                          mask={"key_padding": None}, timing={"min_run_time": 0.01, "threads": 1, "repetitions": 1, "scope": "core",
                                                              "pass": "backward"}, impls=["sdpa", "blocked"])
    report = run_experiment(config)
    assert all(r.ok for r in report.results), [r.reason for r in report.results]
    assert report.results[0].checked_rows < 2400


def test_flex_on_the_cpu_is_skipped_with_the_reason() -> None:
    config = small_config(seq_len=8, timing={"min_run_time": 0.01, "repetitions": 1, "scope": "core", "pass": "backward"}, impls=["flex"])
    (flex,) = run_experiment(config).results
    assert flex.status == "skipped" and "does not support backward on CPU" in flex.reason


def test_the_whole_layer_checks_input_and_parameter_gradients(monkeypatch: pytest.MonkeyPatch) -> None:
    config = small_config(seq_len=12, batch_first=False, timing={"min_run_time": 0.01, "threads": 1, "repetitions": 1, "pass": "backward"},
                          impls=["torch", "sdpa"], mask={"key_padding": None})
    report = run_experiment(config)
    assert all(r.ok for r in report.results), [r.reason for r in report.results]
    # A parameter gradient that is off is named.
    from mha_cli import training

    original = training.check_gradients

    def with_bad_bias(work, forward, leaves, upstream, expected):  # type: ignore[no-untyped-def]
        broken = dict(expected.grads)
        broken["d(out_proj.bias)"] = broken["d(out_proj.bias)"] * 1.1
        return original(work, forward, leaves, upstream, training.GradientReference(expected.rows, broken, expected.tolerance))

    monkeypatch.setattr("mha_cli.runner.check_gradients", with_bad_bias)
    (torch_row, sdpa_row) = run_experiment(config).results
    assert not torch_row.ok and "d(out_proj.bias): max error" in torch_row.reason


def test_backward_flops_are_two_and_a_half_forwards() -> None:
    forward = count_flops(resolve(small_config()), 100)
    backward = count_flops(resolve(small_config(timing={"pass": "backward"})), 100)
    both = count_flops(resolve(small_config(timing={"pass": "forward_backward"})), 100)
    assert backward.attention == 2.5 * forward.attention and both.attention == 3.5 * forward.attention
    assert backward.projections == 2 * forward.projections and both.projections == 3 * forward.projections


def test_rows_files_and_sweeps_carry_the_pass(tmp_path) -> None:  # type: ignore[no-untyped-def]
    args = ["timing.scope=core", "timing.pass=forward_backward", "impls=[sdpa]", "seq_len=8", *FAST_OVERRIDES]
    result = runner.invoke(app, ["run", *args, "--output-dir", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "grad err" in result.output and "pass forward_backward" in result.output  # the summary line says what was timed
    (row,) = json.loads((tmp_path / "run" / "results.json").read_text())["results"]
    assert row["pass"] == "forward_backward" and row["grad_max_abs_err"] < 1e-5
    assert "pass" in (tmp_path / "run" / "results.csv").read_text().splitlines()[0].split(",")
    sweep = runner.invoke(app, ["sweep", "--pass", "forward,backward", "timing.scope=core", "impls=[sdpa]", "seq_len=8",
                                *FAST_OVERRIDES, "--no-save", "--no-plot", "--json"])
    assert sweep.exit_code == 0, sweep.output
    assert [row["timing.pass"] for row in json.loads(sweep.stdout)["rows"]] == ["forward", "backward"]


def test_inference_timing_is_unchanged_by_default() -> None:
    (row,) = run_experiment(small_config(impls=["sdpa"])).results
    assert row.pass_ == "forward" and row.grad_max_abs_err is None
    assert torch.is_grad_enabled()


@pytest.mark.parametrize("scope", ["core", "layer"])
def test_bfloat16_gradients_are_held_to_a_tolerance_sized_by_bfloat16_math(scope: str) -> None:
    config = small_config(embed_dim=32, num_heads=4, seq_len=40, dtype="bfloat16", variant="local", local={"window": 4},
                          mask={"key_padding": None, "causal": True},
                          timing={"min_run_time": 0.01, "threads": 1, "repetitions": 1, "scope": scope, "pass": "forward_backward"},
                          impls=["sdpa", "blocked"])
    report = run_experiment(config)
    assert all(r.ok for r in report.results), [r.reason for r in report.results]
    assert all(1e-4 < r.grad_max_abs_err < 0.5 for r in report.results)  # bf16 is coarse, but not wrong


def test_blocked_trains_without_an_l_by_s_tensor() -> None:
    # L x S for one head in float32 would be 1 GiB here; blocked's forward + backward stays far below it.
    config = small_config(embed_dim=32, num_heads=2, batch_size=1, seq_len=16384, variant="local", local={"window": 32},
                          mask={"key_padding": None},
                          timing={"min_run_time": 0.01, "threads": 1, "repetitions": 1, "scope": "core", "pass": "forward_backward"},
                          impls=["blocked", "sdpa"])
    blocked_row, sdpa_row = run_experiment(config, memory_limit=3 * 2**30).results
    assert blocked_row.ok, blocked_row.reason
    assert blocked_row.peak_mem_bytes < 64 * 2**20
    assert sdpa_row.status == "skipped" and "estimated to need" in sdpa_row.reason  # the dense backward would not fit
