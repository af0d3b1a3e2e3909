"""The block plan's pieces are disjoint and together hold exactly the allowed pairs."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mha_cli.block_plan import PlanContext, block_size_for_window, generic_plan
from mha_cli.pieces import Band, Fixed, Gathered, Residue, ResidueBand

from .helpers import allowed_mask, configs, plan_of, prepared, small_config


def context(config, elements: int = 2**22) -> PlanContext:
    """The plan context of a config, evaluating its rule on at most `elements` pairs at once."""
    ready = prepared(config)
    return PlanContext(ready.experiment.sizes, ready.rule, ready.groups, ready.experiment.mask.plain_causal, elements)


def rebuild(config, plan) -> torch.Tensor:
    """Scatter every piece's allowed pairs back into a dense (N, 1 or H, L, S) count (2 would mean overlap)."""
    n, length, source = config.batch_size, config.seq_len, config.source_length
    groups = [(b, h) for b in range(n) for h in range(plan.mask_heads)]
    counts = torch.zeros(n, plan.mask_heads, length + plan.block * 2 + 64, source + plan.block * 4 + 64, dtype=torch.int32)
    q_pos = (torch.arange(plan.query_blocks)[:, None] * plan.block + torch.arange(plan.block)[None, :])[:, :, None]
    for piece in plan.pieces:
        allowed = piece.allowed
        if isinstance(piece, Band):
            keys = (torch.arange(plan.query_blocks)[:, None, None] * plan.block + piece.offset + torch.arange(piece.width))
            i, j = q_pos.expand_as(allowed[0]), keys.expand_as(allowed[0])
        elif isinstance(piece, Fixed):
            i, j = q_pos.expand_as(allowed[0]), piece.keys.expand_as(allowed[0])
        elif isinstance(piece, Gathered):
            keys = (piece.key_blocks[:, :, None] * plan.block + torch.arange(plan.block)).flatten(1)[:, None, :]
            i, j = q_pos.expand_as(allowed[0]), keys.expand_as(allowed[0])
        elif isinstance(piece, ResidueBand):
            r = torch.arange(piece.stride)[:, None, None, None]
            start = torch.arange(piece.blocks)[None, :, None, None] * piece.block
            i = ((start + torch.arange(piece.block)[None, None, :, None]) * piece.stride + r).flatten(0, 1).expand_as(allowed[0])
            j = ((start + piece.offset + torch.arange(piece.width)) * piece.stride + r).flatten(0, 1).expand_as(allowed[0])
        else:
            assert isinstance(piece, Residue)
            r = torch.arange(piece.stride)[:, None, None]
            i = (torch.arange(allowed.shape[2])[None, :, None] * piece.stride + r).expand_as(allowed[0])
            j = (torch.arange(allowed.shape[3])[None, None, :] * piece.stride + r).expand_as(allowed[0])
        for b, h in groups:
            hit = allowed[plan.group(b, h)]
            counts[b, h].index_put_((i[hit], j[hit]), torch.ones(int(hit.sum()), dtype=torch.int32), accumulate=True)
    if plan.dense_rows is not None:
        for b, h in groups:
            counts[b, h, plan.dense_rows, :source] += plan.dense_allowed[plan.group(b, h)].to(torch.int32)
    return counts[:, :, :length, :source], counts


def pairs_over_heads(config) -> int:
    """Allowed pairs over batch items and every head, from the dense mask."""
    mask = allowed_mask(config)
    return int(mask.sum()) * (config.num_heads // mask.shape[1])


@settings(max_examples=60, deadline=None)
@given(config=configs(variants=("local", "sparse")))
def test_pieces_partition_the_allowed_pairs(config) -> None:
    plan = plan_of(config)
    inside, everything = rebuild(config, plan)
    assert inside.numel() == 0 or int(inside.max()) <= 1, "a pair is in two pieces"
    assert int(everything.sum()) == int(inside.sum()), "a piece allows a pair outside the sequence"
    assert torch.equal(inside.bool(), allowed_mask(config))
    assert prepared(config).allowed_pairs == pairs_over_heads(config)


@settings(max_examples=40, deadline=None)
@given(config=configs(variants=("full",)))
def test_full_pair_count_matches_the_dense_mask(config) -> None:
    assert prepared(config).allowed_pairs == pairs_over_heads(config)


@given(window=st.integers(0, 5000), length=st.integers(1, 100_000))
def test_block_size_fits_the_sequence_and_never_shrinks_as_the_window_grows(window: int, length: int) -> None:
    block = block_size_for_window(window, length)
    assert 1 <= block <= length
    assert block_size_for_window(window + 1, length) >= block
    assert block_size_for_window(window, length + 1) >= block


def test_block_size_is_the_measured_best_for_a_window_of_128() -> None:
    assert block_size_for_window(128, 8192) in (32, 64)  # measured: 32-64 beat 16 and 128 at this window
    assert block_size_for_window(128, 20) == 20  # a short sequence is one block


def test_local_plan_reads_a_band_of_keys_per_query() -> None:
    plan = plan_of(small_config(seq_len=1000, variant="local", local={"window": 128}, mask={}))
    (band,) = plan.pieces
    assert isinstance(band, Band) and band.width == plan.block + 256


@settings(max_examples=40, deadline=None)
@given(config=configs(variants=("full", "local", "sparse")), block=st.sampled_from([1, 3, 8]))
def test_the_generic_plan_covers_every_allowed_pair_exactly_once(config, block: int) -> None:
    plan = generic_plan(context(config, elements=64), block=block)  # tiny slices: the chunking is exercised too
    inside, everything = rebuild(config, plan)
    assert torch.equal(inside, allowed_mask(config).to(torch.int32))
    assert int(everything.sum()) == int(inside.sum())
    assert plan.allowed_pairs() == pairs_over_heads(config)


def test_the_generic_plan_skips_blocks_without_an_allowed_pair() -> None:
    config = small_config(seq_len=64, mask={"documents": {"lengths": [16, 16, 32]}}, batch_size=1)
    (piece,) = generic_plan(context(config), block=8).pieces
    assert piece.key_blocks.shape == (8, 4)  # the longest document spans 4 key blocks of 8; the rest are skipped
