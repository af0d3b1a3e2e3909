"""blocked's backward (issue 11, first part): gradients of the attention core against float64 autograd
through the dense masked softmax, for every kind of block-plan piece."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mha_cli.attention import blocked
from mha_cli.attention.blocked import _sparse_core
from mha_cli.config import Config
from mha_cli.pieces import band_back, band_back_into

from .helpers import allowed_mask, configs, plan_of, prepared, small_config


def dense_core(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """The textbook masked softmax; rows without an allowed key give 0 (and so zero gradients)."""
    scores = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).masked_fill(~allowed, float("-inf"))
    return torch.softmax(scores, dim=-1).nan_to_num(0.0) @ v


def assert_gradients_agree(config: Config, fused: bool = True) -> None:
    n, h, d = config.batch_size, config.num_heads, config.head_dim
    generator = torch.Generator().manual_seed(config.seed)
    q = torch.randn(n, h, config.seq_len, d, dtype=torch.float64, generator=generator).requires_grad_()
    k, v = (torch.randn(n, h, config.source_length, d, dtype=torch.float64, generator=generator).requires_grad_() for _ in range(2))
    upstream = torch.randn(n, h, config.seq_len, d, dtype=torch.float64, generator=generator)
    core = _sparse_core(plan_of(config), config.sizes, torch.float64, torch.device("cpu"))
    core.engine.fused_backward = fused  # False: the autograd surrogate other devices use
    got = torch.autograd.grad(core(q, k, v), (q, k, v), upstream)
    expected = torch.autograd.grad(dense_core(q, k, v, allowed_mask(config)), (q, k, v), upstream)
    for name, mine, theirs in zip(("dq", "dk", "dv"), got, expected):
        torch.testing.assert_close(mine, theirs, atol=1e-10, rtol=1e-10, msg=name)


@settings(max_examples=60, deadline=None)
@given(config=configs(variants=("local", "sparse", "full")), fused=st.booleans())
def test_blocked_gradients_agree_with_float64_autograd(config: Config, fused: bool) -> None:
    if not prepared(config).experiment.needs_plan:
        return  # full attention without documents is SDPA's own backward
    assert_gradients_agree(config, fused)


def test_rows_without_an_allowed_key_get_zero_gradients() -> None:
    # Window 1 and only 3 valid keys: queries 5.. of the second item see no key at all.
    config = small_config(seq_len=12, variant="local", local={"window": 1}, mask={"key_padding": {"lengths": [12, 3]}})
    assert_gradients_agree(config)
    assert_gradients_agree(config, fused=False)
    q = torch.randn(2, 2, 12, 8, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 2, 12, 8, dtype=torch.float64, requires_grad=True)
    core = _sparse_core(plan_of(config), config.sizes, torch.float64, torch.device("cpu"))
    out = core(q, k, k)
    assert torch.isfinite(out).all()
    (dq,) = torch.autograd.grad(out.sum(), (q,))
    assert torch.equal(dq[1, :, 5:], torch.zeros_like(dq[1, :, 5:]))


def test_inference_keeps_the_fast_path() -> None:
    config = small_config(seq_len=20, variant="local", local={"window": 2})
    core = _sparse_core(plan_of(config), config.sizes, torch.float32, torch.device("cpu"))
    q = torch.randn(2, 2, 20, 8, requires_grad=True)
    with torch.no_grad():
        assert core(q, q, q).grad_fn is None
    assert core(q, q, q).grad_fn is not None


@settings(max_examples=200, deadline=None)
@given(block=st.sampled_from([2, 4, 8]), blocks=st.integers(1, 6), width=st.integers(1, 24),
       offset_blocks=st.integers(-4, 3), source_blocks=st.integers(1, 8), first=st.booleans())
def test_band_gradients_written_in_place_equal_the_summed_windows(
        block: int, blocks: int, width: int, offset_blocks: int, source_blocks: int, first: bool) -> None:
    """The buffer-free adjoint of a band's overlapping windows equals the buffered one, copied or added."""
    grad = torch.randn(2, blocks, width, 3, dtype=torch.float64)
    offset, source = offset_blocks * block, source_blocks * block
    before = torch.randn(2, source, 3, dtype=torch.float64)
    target = before.clone()
    assert band_back_into(grad, target, block, offset, first)
    expected = band_back(grad, block, offset, source)
    torch.testing.assert_close(target, expected if first else before + expected)


def test_band_gradients_fall_back_when_windows_are_not_block_aligned() -> None:
    target = torch.zeros(1, 10, 2)
    assert not band_back_into(torch.ones(1, 2, 6, 2), target, 4, -3, True)  # offset off the block grid
    assert not band_back_into(torch.ones(1, 2, 6, 2), target, 4, -4, True)  # 10 keys: not whole blocks
    assert torch.equal(target, torch.zeros(1, 10, 2))


def test_backward_in_chunks_of_one_head_agrees(monkeypatch) -> None:
    """Long sequences go through the backward a head at a time (its temporaries are larger than the
    forward's); the gradients do not depend on the chunking."""
    monkeypatch.setattr(blocked, "CHUNK_BYTES", 1)
    for config in (small_config(seq_len=24, variant="local", local={"window": 3}),
                   small_config(seq_len=24, variant="sparse", sparse={"pattern": "bigbird", "block": 4, "random_blocks": 1})):
        assert _sparse_core(plan_of(config), config.sizes, torch.float64, torch.device("cpu")).engine.backward_heads_per_chunk == 1
        assert_gradients_agree(config)
