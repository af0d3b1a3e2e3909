"""Decoding against a KV cache: the new tokens after the cache, checked against a full recomputation."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mha_cli.attention.reference import reference_attention
from mha_cli.config import load_config
from mha_cli.errors import ConfigError
from mha_cli.experiment import resolve
from mha_cli.measure import count_bytes
from mha_cli.memory import DECODE_MAX_QUERIES
from mha_cli.prepared import Prepared
from mha_cli.report.rows import memory_bound, result_table
from mha_cli.runner import run_experiment

from .helpers import FAST_OVERRIDES, workload

DECODE = ["need_weights=false", "mask.key_padding=null", *FAST_OVERRIDES]


def decoding(*extra: str):
    return load_config(None, [*DECODE, *extra])


def by_loop(work) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """The decode step written out: each new token's q against the cache's keys followed by the new tokens' own,
    query i at position C + i, every index a loop (float64)."""
    inputs, sizes = work.inputs, work.experiment.sizes
    w = inputs.master_weights
    x = inputs.master_query  # (N, L, E): the new tokens
    n, length, e = x.shape
    d, kv_heads, group = sizes.head_dim, sizes.kv_heads, sizes.group_size
    cache_k, cache_v = (c.double() for c in inputs.cached())
    cached = cache_k.shape[2]
    q = x @ w.q_weight.T + w.q_bias
    k_new = x @ w.k_weight.T + w.k_bias
    v_new = x @ w.v_weight.T + w.v_bias
    out = torch.zeros(n, length, e, dtype=torch.float64)
    causal = work.experiment.mask.causal
    for b in range(n):
        for h in range(sizes.num_heads):
            j = h // group
            keys = torch.cat([cache_k[b, j], k_new[b, :, j * d:(j + 1) * d]])
            values = torch.cat([cache_v[b, j], v_new[b, :, j * d:(j + 1) * d]])
            for i in range(length):
                scores = keys @ q[b, i, h * d:(h + 1) * d] / math.sqrt(d)
                if causal:
                    scores[cached + i + 1:] = float("-inf")
                out[b, i, h * d:(h + 1) * d] = torch.softmax(scores, 0) @ values
    return out @ w.out_weight.T + w.out_bias


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cached=st.integers(1, 40), length=st.integers(1, 4), heads=st.sampled_from([(2, 2), (4, 2), (4, 1)]),
       causal=st.booleans(), seed=st.integers(0, 99))
def test_the_reference_is_a_full_recomputation_over_the_concatenated_keys(cached: int, length: int, heads: tuple,
                                                                           causal: bool, seed: int) -> None:
    config = decoding(f"decode.cache_len={cached}", f"seq_len={length}", f"num_heads={heads[0]}",
                      f"num_kv_heads={heads[1]}", f"mask.causal={str(causal).lower()}", f"seed={seed}", "embed_dim=16")
    work = workload(config)
    inputs = work.inputs
    got = reference_attention(inputs.master_query, inputs.master_key, inputs.master_value, inputs.master_weights,
                              work.prepared.dense_allowed(), config.num_heads, inputs.cached()).output
    torch.testing.assert_close(got, by_loop(work), rtol=0, atol=1e-12)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cached=st.integers(1, 300), length=st.integers(1, 5), kv=st.sampled_from([1, 2, 4]),
       window=st.sampled_from([None, 3, 16]), scope=st.sampled_from(["layer", "core"]), causal=st.booleans())
def test_every_implementation_decodes_like_the_reference(cached: int, length: int, kv: int, window: int | None,
                                                         scope: str, causal: bool) -> None:
    extra = [f"decode.cache_len={cached}", f"seq_len={length}", "num_heads=4", f"num_kv_heads={kv}",
             f"timing.scope={scope}", f"mask.causal={str(causal).lower()}", "impls=[torch,manual,sdpa,blocked]"]
    if window is not None:
        extra += ["variant=local", f"local.window={window}"]
    for result in run_experiment(decoding(*extra)).results:
        if result.impl == "torch":
            assert result.status == "skipped" and ("no KV cache" in result.reason or "no separate core" in result.reason)
        else:
            assert result.ok, (result.impl, result.reason)


def test_the_cache_is_filled_once_and_the_layer_writes_only_the_new_slots() -> None:
    config = decoding("decode.cache_len=30", "seq_len=2", "num_heads=4", "num_kv_heads=2")
    work = workload(config)
    cache_k, cache_v = work.inputs.cache
    assert cache_k.shape == (5, 2, 32, 16)
    assert cache_k[:, :, :30].std() > 0.5  # drawn from the seed, filled before any call
    before = cache_k[:, :, :30].clone()
    from mha_cli.attention import builtin

    with torch.inference_mode():
        builtin("sdpa").build(work)()
    assert torch.equal(cache_k[:, :, :30], before)  # the cache is read, never rewritten
    assert cache_k[:, :, 30:].abs().sum() > 0  # the new tokens' keys were appended


def test_decoding_is_lower_right_and_says_so() -> None:
    config = decoding("decode.cache_len=10", "seq_len=3", "mask.causal=true", "impls=[sdpa]")
    experiment = resolve(config)
    assert experiment.mask.query_offset == 10 and experiment.sizes.source_len == 13
    allowed = Prepared(experiment).dense_allowed()[0, 0]
    assert allowed.sum(dim=1).tolist() == [11, 12, 13]
    from mha_cli.report.rows import summary_line

    line = summary_line(run_experiment(config))
    assert "S=13 (decoding: 10 cached + 3 new)" in line and "aligned lower right" in line


@pytest.mark.parametrize(("extra", "field"), [
    (["attention=cross", "source_len=9"], "decode"),
    (["need_weights=true"], "need_weights"),
    (["timing.pass=forward_backward"], "timing.pass"),
    (["mask.causal=true", "mask.causal_alignment=upper_left"], "mask.causal_alignment"),
    (["mask.documents.lengths=[1,1]", "seq_len=2"], "mask.documents"),
])
def test_decoding_refuses_what_it_does_not_mean(extra: list[str], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, ["decode.cache_len=8", "need_weights=false", "mask.key_padding=null", *extra])
    assert field in [problem.field for problem in caught.value.problems]


def test_bytes_moved_and_gb_per_s_arithmetic() -> None:
    config = decoding("decode.cache_len=1000", "seq_len=1", "num_heads=8", "num_kv_heads=2", "embed_dim=64",
                      "batch_size=3", "timing.scope=core", "impls=[sdpa]")
    experiment = resolve(config)
    # K and V of 2 heads over 1001 keys for each of 3 items, d = 8, float32; q and the output: 3 * 8 * 1 * 8 each.
    expected = 4 * (2 * 3 * 1001 * 8 * 2 + 2 * 3 * 8 * 1 * 8)
    assert count_bytes(experiment, Prepared(experiment).keys_read) == expected
    (result,) = run_experiment(config).results
    assert result.bytes_moved == expected and result.gb_per_s == pytest.approx(expected / result.median_s / 1e9)
    assert result.bandwidth_gb_per_s > 0 and memory_bound([result])
    headers, _ = result_table([result])
    assert "GB/s (% bandwidth)" in headers and "GFLOP/s (% peak)" not in headers


def test_a_window_reads_only_its_keys() -> None:
    config = decoding("decode.cache_len=1000", "seq_len=1", "variant=local", "local.window=100", "batch_size=2")
    assert Prepared(resolve(config)).keys_read == 2 * 101


def test_a_compute_bound_shape_keeps_gflops() -> None:
    (result,) = run_experiment(load_config(None, ["seq_len=256", "impls=[sdpa]", *FAST_OVERRIDES])).results
    assert not memory_bound([result]) and "GFLOP/s (% peak)" in result_table([result])[0]


def test_the_memory_guard_and_the_kernels_agree_on_their_sizes() -> None:
    from mha_cli.attention.blocked import DECODE_MAX_QUERIES as BLOCKED
    from mha_cli.attention.reference import CACHE_SLICE as REFERENCE
    from mha_cli.memory import CACHE_SLICE

    assert BLOCKED == DECODE_MAX_QUERIES and REFERENCE == CACHE_SLICE


def test_explain_and_plot_weights_walk_a_decode_step() -> None:
    from mha_cli.explanation import explain, weights_to_draw

    config = decoding("decode.cache_len=20", "seq_len=2", "num_heads=4", "num_kv_heads=2", "mask.causal=true")
    explanation = explain(config)
    assert explanation.max_abs_err_output < 1e-5 and "float64 reference" in explanation.checked_against
    scores = next(step for step in explanation.steps if step.step == "scores")
    assert scores.shape == [5, 4, 2, 22]
    softmax = next(step for step in explanation.steps if step.step == "softmax")
    assert "the 20 cached, then the new tokens'" in softmax.note and "nn.MultiheadAttention" not in softmax.note
    weights, allowed = weights_to_draw(resolve(config), 0, [0, 3])
    assert weights.shape == (2, 2, 22) and allowed[:, 0].sum(dim=-1).tolist() == [21, 21]
    with pytest.raises(Exception, match="decode step is inference"):
        explain(config, backward=True)


def test_per_item_cache_lengths_pad_the_cache_not_the_new_tokens() -> None:
    config = load_config(None, ["decode.cache_len=10", "seq_len=2", "need_weights=false", "mask.causal=true",
                                "batch_size=3", "mask.key_padding.lengths=[10,4,1]", "impls=[torch,manual,sdpa,blocked]",
                                *FAST_OVERRIDES])
    allowed = Prepared(resolve(config)).dense_allowed()[:, 0]  # (N, L, S)
    assert allowed[1, 0].tolist() == [True] * 4 + [False] * 6 + [True, False]  # 4 cached keys, then its new token
    assert allowed[2, 1].tolist() == [True] + [False] * 9 + [True, True]
    for result in run_experiment(config).results:
        assert result.ok or result.status == "skipped", (result.impl, result.reason)
    with pytest.raises(ConfigError, match="longer than the cache"):
        load_config(None, ["decode.cache_len=10", "need_weights=false", "batch_size=2", "mask.key_padding.lengths=[11,2]"])


def test_flops_of_a_decode_step_project_only_the_new_tokens_and_grouped_heads_count_h_kv() -> None:
    from mha_cli.measure import count_flops

    experiment = resolve(decoding("decode.cache_len=100", "seq_len=2", "embed_dim=16", "num_heads=4", "num_kv_heads=2",
                                  "batch_size=3"))
    flops = count_flops(experiment, allowed_pairs=0)
    # q and output: 2*N*L*E*E each; k and v: 2*N*L*(H_kv*d)*E each, over the 2 new tokens only.
    assert flops.projections == 2 * (2 * 3 * 2 * 16 * 16) + 2 * (2 * 3 * 2 * 8 * 16)


def test_stranger_findings_bigbird_sweeps_and_blame() -> None:
    from typer.testing import CliRunner

    from mha_cli.cli import app

    with pytest.raises(ConfigError, match="BigBird lays its blocks over the L queries.*no meaning against a cache"):
        load_config(None, ["decode.cache_len=24", "need_weights=false", "seq_len=8", "variant=sparse", "sparse.block=2"])
    with pytest.raises(ConfigError) as caught:
        load_config(None, ["decode.cache_len=100", "need_weights=false", "seq_len=8", "mask.documents.lengths=[4,4]"])
    assert any(p.source == "override `mask.documents.lengths=[4,4]`" for p in caught.value.problems)
    result = CliRunner().invoke(app, ["sweep", "decode.cache_len=300", "need_weights=false", "seq_len=1",
                                      "mask.key_padding=null", "--batch", "1,2", "impls=[sdpa]", *FAST_OVERRIDES, "--no-save"])
    assert result.exit_code == 0 and "GB/s (% bandwidth)" in result.stdout, result.output
    rows = [line for line in result.stdout.splitlines() if line.startswith("│")]
    assert rows and "GFLOP/s (% peak)" not in result.stdout
