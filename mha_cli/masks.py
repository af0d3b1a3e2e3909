"""Masks, kept in one meaning: True = the query MAY attend the key ("allowed").

Each implementation converts at its own boundary, because the libraries disagree:
nn.MultiheadAttention reads a bool mask as True = NOT allowed, while
F.scaled_dot_product_attention reads True = allowed. Getting this backwards is
silent, so the checker is tested against a deliberately inverted mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .config import Config


def causal_allowed(length: int, source: int) -> torch.Tensor:
    """(L, S): key j is allowed for query i when j <= i (upper-left aligned, as SDPA's is_causal)."""
    return torch.ones(length, source, dtype=torch.bool).tril()


def key_padding_allowed(lengths: Sequence[int], source: int) -> torch.Tensor:
    """(N, S): key j of batch item n is allowed when j < lengths[n]."""
    return torch.arange(source)[None, :] < torch.tensor(list(lengths))[:, None]


def allowed_mask(config: Config) -> torch.Tensor:
    """(N, L, S) bool on the CPU: every (query, key) pair the config allows."""
    length, source = config.seq_len, config.source_length
    allowed = torch.ones(config.batch_size, length, source, dtype=torch.bool)
    if config.mask.causal:
        allowed &= causal_allowed(length, source)
    if config.mask.key_padding is not None:
        allowed &= key_padding_allowed(config.mask.key_padding.lengths, source)[:, None, :]
    return allowed


def fully_masked_rows(allowed: torch.Tensor) -> torch.Tensor:
    """(N, L) bool: query rows with no allowed key at all (their output is undefined)."""
    return ~allowed.any(dim=-1)


def allowed_pairs(config: Config) -> int:
    """Number of allowed (query, key) pairs summed over the batch (what FLOPs count)."""
    return int(allowed_mask(config).sum())
