"""Masks, kept in one meaning: True = the query MAY attend the key ("allowed").

Each implementation converts at its own boundary, because the libraries disagree:
nn.MultiheadAttention reads a bool mask as True = NOT allowed, while
F.scaled_dot_product_attention reads True = allowed. Getting this backwards is
silent, so the checker is tested against a deliberately inverted mask.

`pair_rule` is the single definition of which (batch item, head, query, key)
are allowed: the variant's pattern, then causal, prefix, documents and key
padding. It has FlexAttention's mask_mod signature. Everything else (dense
masks, the blocked implementation's pieces, FlexAttention's mask_mod) is
derived from it.

Most masks are the same for every head, and for every batch item unless keys
are padded: dense masks keep a dimension of 1 there (see mask_groups).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .config import Config
from .patterns import pattern_of, pattern_rule

PairRule = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def mask_groups(config: Config) -> tuple[int, int]:
    """(batch, heads) sizes of the mask: N where it differs per batch item (else 1), H where per head (else 1)."""
    pattern = pattern_of(config)
    by_batch, by_head = pattern.varies(config) if pattern is not None else (False, False)
    batch = config.batch_size if (by_batch or config.mask.key_padding is not None) else 1
    return batch, config.num_heads if by_head else 1


def causal_allowed(length: int, source: int, prefix: int = 0) -> torch.Tensor:
    """(L, S): key j is allowed for query i when j <= i (upper-left aligned, as SDPA's is_causal),
    or j < prefix (a prefix LM)."""
    allowed = torch.ones(length, source, dtype=torch.bool).tril()
    allowed[:, :prefix] = True
    return allowed


def key_padding_allowed(lengths: Sequence[int], source: int) -> torch.Tensor:
    """(N, S): key j of batch item n is allowed when j < lengths[n]."""
    return torch.arange(source)[None, :] < torch.tensor(list(lengths))[:, None]


def pair_rule(config: Config, device: torch.device | str = "cpu") -> PairRule:
    """(n, h, i, j) -> allowed, on broadcasting integer tensors; the result has n's and h's dimensions."""
    pattern = pattern_rule(config)
    causal, prefix = config.mask.causal, config.mask.prefix or 0
    document_lengths = config.document_lengths
    # Document of every position (self attention: queries and keys share positions).
    document = (
        torch.repeat_interleave(torch.arange(len(document_lengths), device=device, dtype=torch.int32),
                                torch.tensor(document_lengths, device=device))
        if document_lengths is not None else None
    )
    key_lengths = config.key_lengths
    lengths = torch.tensor(key_lengths, device=device, dtype=torch.int32) if key_lengths is not None else None

    def rule(n: torch.Tensor, h: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        # (n >= 0) & (h >= 0): the result keeps n's and h's dimensions even where the rule ignores them.
        anywhere = (n >= 0) & (h >= 0)
        allowed = (i >= 0) & (j >= 0) & anywhere if pattern is None else pattern(n, h, i, j) & anywhere
        if causal:
            allowed = allowed & ((j <= i) | (j < prefix)) if prefix else allowed & (j <= i)
        if document is not None:
            allowed = allowed & (document[i] == document[j])
        if lengths is not None:
            # torch.where, not &: Inductor mis-compiles `& (j < lengths[n])` in a compiled block mask.
            allowed = torch.where(j < lengths[n], allowed, False)
        return allowed

    return rule


def allowed_rows(config: Config, rows: torch.Tensor) -> torch.Tensor:
    """(N, 1 or H, R, S) bool on the CPU for the given query rows (H only for a rule that differs per head)."""
    _, heads = mask_groups(config)
    n = torch.arange(config.batch_size)[:, None, None, None]
    h = torch.arange(heads)[None, :, None, None]
    j = torch.arange(config.source_length)[None, None, None, :]
    return pair_rule(config)(n, h, rows[None, None, :, None], j)


def allowed_mask(config: Config) -> torch.Tensor:
    """(N, 1 or H, L, S) bool on the CPU: every (query, key) pair the config allows. Dense: small L only."""
    return allowed_rows(config, torch.arange(config.seq_len))


def fully_masked_rows(allowed: torch.Tensor) -> torch.Tensor:
    """(N, R) bool from an (N, 1 or H, R, S) mask: query rows with no allowed key in some head
    (their output, which mixes the heads, is undefined)."""
    return (~allowed.any(dim=-1)).any(dim=1)
