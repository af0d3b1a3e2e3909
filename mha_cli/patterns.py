"""Attention patterns: one small named rule per pattern, (i, j) -> may query i attend key j.

A rule works on broadcasting integer tensors of query and key positions, so
the same function builds a dense reference mask, the masks of the blocked
implementation's pieces, and FlexAttention's mask_mod. Causal masking and key
padding are applied on top, in masks.py.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .arith import ceil_div
from .config import Config

PatternRule = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def local_rule(window: int) -> PatternRule:
    """|i - j| <= window: a band of 2 * window + 1 keys around the diagonal."""

    def rule(i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        return (i - j).abs() <= window

    return rule


def strided_rule(stride: int) -> PatternRule:
    """Sparse Transformer, strided: |i - j| < stride, or i - j a multiple of stride."""

    def rule(i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        return ((i - j).abs() < stride) | (torch.remainder(i - j, stride) == 0)

    return rule


def bigbird_block_table(
    query_blocks: int, key_blocks: int, window_blocks: int, global_blocks: int, random_blocks: int, seed: int
) -> torch.Tensor:
    """(query_blocks, key_blocks) bool: which key blocks each query block attends (BigBird).

    Sliding: the window_blocks key blocks centred on the diagonal block.
    Global: the first and last global_blocks blocks attend to, and are attended by, everything.
    Random: random_blocks further key blocks per query block, drawn without
    replacement from the blocks neither sliding nor global, from `seed`.
    """
    q = torch.arange(query_blocks)[:, None]
    k = torch.arange(key_blocks)[None, :]
    sliding = (q - k).abs() <= (window_blocks - 1) // 2
    global_keys = (k < global_blocks) | (k >= key_blocks - global_blocks)
    global_queries = (q < global_blocks) | (q >= query_blocks - global_blocks)
    table = sliding | global_keys | global_queries
    generator = torch.Generator().manual_seed(seed)
    for row in range(query_blocks):
        if global_queries[row, 0]:
            continue
        candidates = torch.nonzero(~(sliding[row] | global_keys[0])).flatten()
        chosen = candidates[torch.randperm(len(candidates), generator=generator)[:random_blocks]]
        table[row, chosen] = True
    return table


def bigbird_rule(table: torch.Tensor, block: int) -> PatternRule:
    def rule(i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        return table[i // block, j // block]

    return rule


def bigbird_table_for(config: Config) -> torch.Tensor:
    sparse = config.sparse_settings
    block = sparse.block
    return bigbird_block_table(
        ceil_div(config.seq_len, block),
        ceil_div(config.source_length, block),
        sparse.window_blocks,
        sparse.global_blocks,
        sparse.random_blocks,
        config.seed,
    )


def pattern_rule(config: Config) -> PatternRule | None:
    """The config's pattern, or None for full attention (every pair allowed)."""
    if config.variant == "local":
        return local_rule(config.local_settings.window)
    if config.variant == "sparse":
        sparse = config.sparse_settings
        if sparse.pattern == "strided":
            return strided_rule(sparse.stride)
        return bigbird_rule(bigbird_table_for(config), sparse.block)
    return None


def describe(config: Config) -> str:
    """The pattern's exact rule in words (shown by `mha mask` and in docs/variants.md)."""
    if config.variant == "full":
        rule = "every query attends every key"
    elif config.variant == "local":
        w = config.local_settings.window
        rule = f"query i attends key j when |i - j| <= {w}"
    elif config.sparse_settings.pattern == "strided":
        s = config.sparse_settings.stride
        rule = f"query i attends key j when (|i - j| < {s} or i - j is a multiple of {s})"
    else:
        sp = config.sparse_settings
        rule = (
            f"BigBird with blocks of {sp.block}: each query block attends the {sp.window_blocks} key blocks "
            f"centred on its diagonal block, the first and last {sp.global_blocks} key blocks, and "
            f"{sp.random_blocks} random key blocks (seed {config.seed}); the first and last "
            f"{sp.global_blocks} query blocks attend every key"
        )
    extras = []
    if config.mask.causal:
        extras.append("and j <= i (causal)")
    if config.mask.key_padding is not None:
        extras.append("and j < the batch item's key_padding length")
    return " ".join([rule, *extras])
