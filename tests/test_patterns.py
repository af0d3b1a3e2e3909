"""Each pattern's mask against a direct, loop-by-loop reading of its rule (docs/variants.md)."""

from __future__ import annotations

import pytest
import torch

from mha_cli.experiment import resolve
from mha_cli.patterns.bigbird import bigbird_block_table

from .helpers import allowed_mask, small_config


def describe(config) -> str:
    return resolve(config).rule_in_words()


def direct(config, allowed_pair) -> torch.Tensor:
    """(N, 1, L, S) from a plain Python predicate, plus causal (with its prefix) and key padding."""
    n_items, length, source = config.batch_size, config.seq_len, config.source_length
    lengths = config.key_lengths or [source] * n_items
    out = torch.zeros(n_items, length, source, dtype=torch.bool)
    for n in range(n_items):
        for i in range(length):
            for j in range(source):
                causal_ok = not config.mask.causal or j <= i or j < (config.mask.prefix or 0)
                ok = allowed_pair(i, j) and causal_ok and j < lengths[n]
                out[n, i, j] = ok
    return out[:, None]


MASKS = [{}, {"causal": True}, {"key_padding": {"lengths": [13, 5]}}, {"causal": True, "key_padding": {"lengths": [2, 13]}},
         {"causal": True, "prefix": 4}, {"causal": True, "prefix": 9, "key_padding": {"lengths": [6, 13]}}]


@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("window", [0, 1, 3, 20])
def test_local(mask: dict, window: int) -> None:
    config = small_config(seq_len=13, variant="local", local={"window": window}, mask=mask)
    assert torch.equal(allowed_mask(config), direct(config, lambda i, j: abs(i - j) <= window))


@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize(("window", "dilation", "sinks"), [(4, 2, 0), (6, 3, 0), (2, 1, 3), (5, 2, 2), (0, 4, 13), (20, 5, 1)])
def test_dilated_window_with_sinks(mask: dict, window: int, dilation: int, sinks: int) -> None:
    config = small_config(seq_len=13, variant="local", local={"window": window, "dilation": dilation, "sinks": sinks},
                          mask=mask)
    expected = direct(config, lambda i, j: (abs(i - j) <= window and abs(i - j) % dilation == 0) or j < sinks)
    assert torch.equal(allowed_mask(config), expected)


@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("stride", [1, 2, 4, 13])
def test_strided(mask: dict, stride: int) -> None:
    config = small_config(seq_len=13, variant="sparse", sparse={"pattern": "strided", "stride": stride}, mask=mask)
    expected = direct(config, lambda i, j: abs(i - j) < stride or (i - j) % stride == 0)
    assert torch.equal(allowed_mask(config), expected)


def test_local_cross_attention_uses_absolute_positions() -> None:
    config = small_config(seq_len=5, attention="cross", source_len=9, variant="local", local={"window": 2})
    assert torch.equal(allowed_mask(config), direct(config, lambda i, j: abs(i - j) <= 2))


def test_bigbird_table_by_definition() -> None:
    query_blocks, key_blocks, window, global_blocks, random_blocks = 9, 11, 3, 1, 2
    table = bigbird_block_table(query_blocks, key_blocks, window, global_blocks, random_blocks, seed=5)
    for q in range(query_blocks):
        global_query = q < global_blocks or q >= query_blocks - global_blocks
        sliding = {k for k in range(key_blocks) if abs(q - k) <= window // 2}
        global_keys = {k for k in range(key_blocks) if k < global_blocks or k >= key_blocks - global_blocks}
        chosen = {k for k in range(key_blocks) if table[q, k]}
        if global_query:
            assert chosen == set(range(key_blocks))
        else:
            extra = chosen - sliding - global_keys
            assert sliding | global_keys <= chosen and len(extra) == random_blocks


def test_bigbird_random_blocks_follow_the_seed() -> None:
    first = bigbird_block_table(16, 16, 3, 1, 2, seed=0)
    assert torch.equal(first, bigbird_block_table(16, 16, 3, 1, 2, seed=0))
    assert not torch.equal(first, bigbird_block_table(16, 16, 3, 1, 2, seed=1))


@pytest.mark.parametrize("mask", MASKS)
def test_bigbird_mask_is_its_table_at_block_resolution_with_a_ragged_last_block(mask: dict) -> None:
    block = 4  # 13 is not a multiple of 4: the last block has one row
    config = small_config(seq_len=13, variant="sparse", mask=mask,
                          sparse={"block": block, "window_blocks": 1, "global_blocks": 1, "random_blocks": 1})
    table = bigbird_block_table(4, 4, 1, 1, 1, seed=config.seed)
    assert torch.equal(allowed_mask(config), direct(config, lambda i, j: bool(table[i // block, j // block])))


def test_descriptions_state_the_rule() -> None:
    assert "|i - j| <= 7" in describe(small_config(variant="local", local={"window": 7}))
    strided = describe(small_config(variant="sparse", sparse={"pattern": "strided", "stride": 3}, mask={"causal": True}))
    assert "multiple of 3" in strided and "causal" in strided
    assert "every query attends every key" in describe(small_config())


@pytest.mark.parametrize("mask", MASKS)
def test_full_attention_with_every_mask(mask: dict) -> None:
    config = small_config(seq_len=13, mask=mask)
    assert torch.equal(allowed_mask(config), direct(config, lambda i, j: True))


def test_prefix_lm_in_words() -> None:
    config = small_config(seq_len=13, mask={"causal": True, "prefix": 4})
    assert describe(config) == "every query attends every key and (j <= i or j < 4) (causal, prefix LM)"



@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("variant", [{}, {"variant": "local", "local": {"window": 2}},
                                     {"variant": "sparse", "sparse": {"pattern": "strided", "stride": 3}}])
def test_documents_keep_queries_and_keys_in_their_document(mask: dict, variant: dict) -> None:
    lengths = [4, 1, 8]
    config = small_config(seq_len=13, mask={**mask, "documents": {"lengths": lengths}}, **variant)
    document = [d for d, size in enumerate(lengths) for _ in range(size)]
    base = small_config(seq_len=13, mask=mask, **variant)
    expected = allowed_mask(base) & direct(config, lambda i, j: document[i] == document[j])
    assert torch.equal(allowed_mask(config), expected)
