"""Grouped-query attention (num_kv_heads): every implementation against a float64 reference that repeats K/V."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import mha_cli
from mha_cli.attention.reference import reference_attention
from mha_cli.cli import app
from mha_cli.config import Config, load_config
from mha_cli.errors import ConfigError
from mha_cli.experiment import resolve
from mha_cli.explanation import explain
from mha_cli.inputs import ungrouped_module, Weights
from mha_cli.masks import fully_masked_rows
from mha_cli.memory import estimate
from mha_cli.runner import run_experiment

from .helpers import FAST_OVERRIDES, FAST_TIMING, allowed_mask, configs, small_config, workload

runner = CliRunner()
GROUPED_IMPLS = ["manual", "sdpa", "blocked"]


@st.composite
def grouped_configs(draw: st.DrawFn) -> Config:
    config = draw(configs())
    assume(config.num_heads > 1)
    kv_heads = draw(st.sampled_from([h for h in range(1, config.num_heads) if config.num_heads % h == 0]))
    return config.model_copy(update={"num_kv_heads": kv_heads, "impls": ["torch", *GROUPED_IMPLS]})


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(config=grouped_configs(), timed=st.sampled_from(["forward", "forward_backward"]))
def test_every_implementation_computes_grouped_heads_like_the_reference(config: Config, timed: str) -> None:
    config = config.model_copy(update={"timing": config.timing.model_copy(update={"pass_": timed})})
    report = run_experiment(config)
    undefined = bool(fully_masked_rows(allowed_mask(config)).any())
    for result in report.results:
        if result.impl == "torch":
            assert result.status == "skipped" and ("no grouped key/value heads" in result.reason
                                                   or "no separate core" in result.reason)
        elif result.impl == "manual" and timed != "forward" and undefined:
            assert "NaN/inf in the gradient" in result.reason  # a plain softmax's NaN rows, as without groups
        else:
            assert result.ok, (result.impl, result.reason)
            if timed != "forward":
                assert result.grad_max_abs_err is not None


@settings(max_examples=20, deadline=None)
@given(heads=st.sampled_from([2, 4, 8]), data=st.data())
def test_the_reference_equals_plain_multi_head_attention_with_each_kv_head_repeated(heads: int, data: st.DataObject) -> None:
    """Query head h reads key/value head h // (H / H_kv): the same as nn.MultiheadAttention whose head h
    has the key/value projection of head h // G, computed without any grouping."""
    kv_heads = data.draw(st.sampled_from([h for h in range(1, heads) if heads % h == 0]))
    config = small_config(embed_dim=4 * heads, num_heads=heads, num_kv_heads=kv_heads, seq_len=7,
                          seed=data.draw(st.integers(0, 999)))
    work = workload(config)
    inputs, sizes = work.inputs, work.experiment.sizes
    plain = ungrouped_module(inputs.module, sizes).double()
    allowed = work.mask.dense().cpu()
    grouped = reference_attention(inputs.master_query, inputs.master_key, inputs.master_value, inputs.master_weights,
                                  allowed, heads).output
    ungrouped = reference_attention(inputs.master_query, inputs.master_key, inputs.master_value, Weights.of(plain),
                                    allowed, heads).output
    defined = ~fully_masked_rows(allowed)
    torch.testing.assert_close(grouped[defined], ungrouped[defined], rtol=0, atol=1e-12)
    assert tuple(grouped.shape) == (sizes.batch_size, sizes.seq_len, sizes.embed_dim)


def test_num_kv_heads_must_divide_num_heads() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, ["num_heads=4", "num_kv_heads=3"])
    (problem,) = caught.value.problems
    assert problem.field == "num_kv_heads" and "does not divide num_heads 4" in problem.message and "1, 2, 4" in problem.message
    assert load_config(None, ["num_heads=4"]).sizes.kv_heads == 4  # left out: plain multi-head attention
    assert resolve(load_config(None, ["num_heads=4", "num_kv_heads=1"])).sizes.group_size == 4


def test_the_shape_table_shows_grouped_k_and_v() -> None:
    config = small_config(embed_dim=32, num_heads=8, num_kv_heads=2, seq_len=6, batch_size=3)
    report = run_experiment(config.model_copy(update={"impls": ["sdpa"]}))
    rows = {row.tensor: row for row in report.shape_table}
    assert rows["K per head"].shape == [3, 2, 6, 4] and rows["K per head"].axes == "(N=3, H_kv=2, S=6, d=4)"
    assert rows["V per head"].shape == [3, 2, 6, 4]
    assert rows["Q per head"].shape == [3, 8, 6, 4]


def test_explain_shows_the_grouping_and_checks_against_nn_multihead_attention() -> None:
    explanation = explain(load_config(None, ["num_heads=4", "num_kv_heads=2"]))
    names = [step.step for step in explanation.steps]
    assert names.index("group query heads") == names.index("split into heads") + 1
    group = explanation.steps[names.index("group query heads")]
    assert group.axes == "(N=5, H_kv=2, S=10, d=16)" and "G = 4 / 2 = 2" in group.note
    assert explanation.max_abs_err_output < 1e-5 and explanation.max_abs_err_weights < 1e-5
    assert explanation.total_params == 64 * 64 * 2 + 32 * 64 * 2 + 64 * 2 + 32 * 2
    backward = explain(load_config(None, ["num_heads=4", "num_kv_heads=1", "dtype=float64"]), backward=True)
    assert backward.max_abs_err_backward is not None and backward.max_abs_err_backward < 1e-12


def test_the_memory_guard_counts_fewer_key_value_heads() -> None:
    plain = estimate(resolve(load_config(None, ["num_heads=8", "seq_len=2048", "impls=[sdpa]"])))
    grouped = estimate(resolve(load_config(None, ["num_heads=8", "num_kv_heads=1", "seq_len=2048", "impls=[sdpa]"])))
    assert grouped.per_impl["blocked"] < plain.per_impl["blocked"]


def test_your_implementation_gets_k_and_v_with_the_kv_heads_and_the_mapping() -> None:
    seen = {}

    def mine(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec: mha_cli.AttentionSpec) -> torch.Tensor:
        seen.update(q=tuple(q.shape), k=tuple(k.shape), kv_heads=spec.kv_heads, of=[spec.kv_head_of(h) for h in range(q.shape[1])])
        index = torch.tensor(seen["of"])
        k, v = k[:, index], v[:, index]
        scores = (q @ k.transpose(-2, -1) * spec.scale).masked_fill(~spec.mask.dense(), float("-inf"))
        return torch.softmax(scores, dim=-1) @ v

    config = small_config(embed_dim=24, num_heads=6, num_kv_heads=2, seq_len=5, mask={"key_padding": None},
                          impls=["mine"], implementations={"mine": mine})
    (result,) = run_experiment(config).results
    assert result.ok, result.reason
    assert seen == {"q": (2, 6, 5, 4), "k": (2, 2, 5, 4), "kv_heads": 2, "of": [0, 0, 0, 1, 1, 1]}


def test_the_shipped_attention_example_runs_grouped() -> None:
    config = load_config("example:my_attention", ["num_kv_heads=2", "seq_len=64", *FAST_OVERRIDES])
    assert all(result.ok for result in run_experiment(config).results)


def test_kv_heads_sweep_skips_the_points_that_do_not_divide() -> None:
    result = runner.invoke(app, ["sweep", "--heads", "4", "--kv-heads", "1,2,3", "impls=[sdpa]", *FAST_OVERRIDES,
                                 "--no-save", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    statuses = {row["num_kv_heads"]: row["status"] for row in summary["rows"]}
    assert statuses[1] == statuses[2] == "ok" and statuses[3] == "skipped"


@pytest.mark.parametrize("heads_per_chunk", [1, 2, 3, 8])
@pytest.mark.parametrize("padding", [None, {"lengths": [40, 23]}])
def test_blocked_stacks_whole_or_part_groups_whatever_its_chunk(heads_per_chunk: int, padding, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A chunk's budget decides how many of a group's query heads share one call: all G, or a part of G that
    divides it (G = 4 here), or a single head; every one computes the same layer."""
    from mha_cli.attention import blocked
    from mha_cli.check import check_against_reference, run_reference

    config = small_config(embed_dim=32, num_heads=8, num_kv_heads=2, seq_len=40, variant="local", local={"window": 5},
                          mask={"key_padding": padding, "causal": True}, timing={**FAST_TIMING, "scope": "core"})
    work = workload(config)
    per_head = max(r.bytes_per_head(40, 4, 4) for r in blocked._SparseAttention(
        work.prepared.plan, work.experiment.sizes, torch.float32, torch.device("cpu")).runners)
    monkeypatch.setattr(blocked, "CHUNK_BYTES", per_head * heads_per_chunk)
    reference = run_reference(work)
    with torch.inference_mode():
        got = blocked.build(work)()
    verdict = check_against_reference(work.experiment, got, reference)
    assert verdict.ok, verdict.problems
