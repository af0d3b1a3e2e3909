"""Masks, kept in one meaning: True = the query MAY attend the key ("allowed").

Each implementation converts at its own boundary, because the libraries disagree:
nn.MultiheadAttention reads a bool mask as True = NOT allowed, while
F.scaled_dot_product_attention reads True = allowed. Getting this backwards is
silent, so the checker is tested against a deliberately inverted mask.

`pair_rule` is the single definition of which (batch item, head, query, key)
are allowed: the pattern's rule, then causal, prefix, documents and key padding,
each a rule of FlexAttention's mask_mod signature combined as attention-gym's
and_masks combines them. Everything else (dense masks, the blocked
implementation's pieces, FlexAttention's block mask) is derived from it.

Most masks are the same for every head, and for every batch item unless keys
are padded: dense masks keep a dimension of 1 there (see mask_groups).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .mask_spec import MaskSpec
from .sizes import Sizes

PairRule = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def everywhere(n: torch.Tensor, h: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """Every pair allowed, on the broadcast shape of all four (so the result keeps n's and h's dimensions)."""
    return (n >= 0) & (h >= 0) & (i >= 0) & (j >= 0)


def causal_rule(prefix: int = 0, offset: int = 0) -> PairRule:
    """j <= i + offset, or j < prefix (a prefix LM). offset 0: upper-left aligned, as SDPA's is_causal;
    S - L: lower-right aligned, query i at key position S - L + i (decoding against a cache)."""
    if prefix:
        return lambda n, h, i, j: (j <= i + offset) | (j < prefix)
    return lambda n, h, i, j: j <= i + offset


def documents_rule(lengths: Sequence[int], device: torch.device | str = "cpu") -> PairRule:
    """i and j in the same packed document (self attention: queries and keys share positions)."""
    document = torch.repeat_interleave(torch.arange(len(lengths), device=device, dtype=torch.int32),
                                       torch.tensor(list(lengths), device=device))
    return lambda n, h, i, j: document[i] == document[j]


def and_masks(*rules: PairRule) -> PairRule:
    """A pair is allowed when every rule allows it."""

    def rule(n: torch.Tensor, h: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        allowed = rules[0](n, h, i, j)
        for other in rules[1:]:
            allowed = allowed & other(n, h, i, j)
        return allowed

    return rule


def within_key_lengths(rule: PairRule, lengths: Sequence[int], device: torch.device | str = "cpu",
                       new_keys_from: int | None = None) -> PairRule:
    """The rule, and j < the batch item's key length (key padding); decoding (new_keys_from): the lengths are
    the cache's, and the new tokens' keys, from new_keys_from on, are always there."""
    limits = torch.tensor(list(lengths), device=device, dtype=torch.int32)

    def padded(n: torch.Tensor, h: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        # torch.where, not &: Inductor mis-compiles `& (j < lengths[n])` in a compiled block mask.
        present = j < limits[n] if new_keys_from is None else (j < limits[n]) | (j >= new_keys_from)
        return torch.where(present, rule(n, h, i, j), False)

    return padded


def pair_rule(pattern: PairRule | None, mask: MaskSpec, device: torch.device | str = "cpu") -> PairRule:
    """(n, h, i, j) -> allowed, on broadcasting integer tensors; the result has n's and h's dimensions."""
    rules: list[PairRule] = [everywhere]
    offset = mask.query_offset  # lower right: query i sits at key position i + offset, for the pattern too
    if pattern is not None:
        # (n >= 0) & (h >= 0): the result keeps n's and h's dimensions even where the pattern ignores them
        # (combined first: the small tensors, so that only one operation runs over every pair).
        rules = [lambda n, h, i, j: pattern(n, h, i + offset, j) & ((n >= 0) & (h >= 0))]
    if mask.causal:
        rules.append(causal_rule(mask.prefix, mask.query_offset))
    if mask.document_lengths is not None:
        rules.append(documents_rule(mask.document_lengths, device))
    combined = and_masks(*rules)
    if mask.key_lengths is None:
        return combined
    return within_key_lengths(combined, mask.key_lengths, device, mask.new_keys_from)


def mask_groups(sizes: Sizes, mask: MaskSpec, varies: tuple[bool, bool]) -> tuple[int, int]:
    """(batch, heads) sizes of the mask: N where it differs per batch item (else 1), H where per head (else 1).
    varies: whether the pattern's rule differs (by batch item, by head)."""
    by_batch, by_head = varies
    batch = sizes.batch_size if (by_batch or mask.key_lengths is not None) else 1
    return batch, sizes.num_heads if by_head else 1


def causal_allowed(length: int, source: int, prefix: int = 0, offset: int = 0) -> torch.Tensor:
    """(L, S): key j is allowed for query i when j <= i + offset (offset 0: upper-left aligned, as SDPA's
    is_causal; S - L: lower-right aligned), or j < prefix (a prefix LM)."""
    allowed = torch.ones(length, source, dtype=torch.bool).tril(diagonal=offset)
    allowed[:, :prefix] = True
    return allowed


def key_padding_allowed(lengths: Sequence[int], source: int) -> torch.Tensor:
    """(N, S): key j of batch item n is allowed when j < lengths[n]."""
    return torch.arange(source)[None, :] < torch.tensor(list(lengths))[:, None]


def allowed_rows(rule: PairRule, sizes: Sizes, heads: int, rows: torch.Tensor) -> torch.Tensor:
    """(N, heads, R, S) bool on the CPU for the given query rows (heads: 1, or H for a rule that differs per head)."""
    n = torch.arange(sizes.batch_size)[:, None, None, None]
    h = torch.arange(heads)[None, :, None, None]
    j = torch.arange(sizes.source_len)[None, None, None, :]
    return rule(n, h, rows[None, None, :, None], j)


def fully_masked_rows(allowed: torch.Tensor) -> torch.Tensor:
    """(N, R) bool from an (N, 1 or H, R, S) mask: query rows with no allowed key in some head
    (their output, which mixes the heads, is undefined)."""
    return (~allowed.any(dim=-1)).any(dim=1)


def full_pair_count(sizes: Sizes, mask: MaskSpec, rule: PairRule) -> int:
    """Allowed (query, key) pairs of full attention (no pattern) over the batch, for one head, without an L x S mask."""
    if mask.document_lengths is not None or (mask.new_keys_from is not None and mask.key_lengths is not None):
        return _counted_row_by_row(rule, sizes)
    length, source = sizes.seq_len, sizes.source_len
    limits = mask.key_lengths or [source] * sizes.batch_size
    if not mask.causal:
        return length * sum(limits)
    # Query i sees max(clamp(i + 1 + offset, 0, limit), min(prefix, limit)) keys: keys 0..i + offset, or the
    # whole prefix, cut at its limit (offset: S - L when aligned lower right, else 0).
    reach = torch.arange(1, length + 1, dtype=torch.int64) + mask.query_offset
    total = 0
    for limit in limits:
        total += int(torch.maximum(reach.clamp(0, limit), torch.tensor(min(mask.prefix, limit))).sum())
    return total


def _counted_row_by_row(rule: PairRule, sizes: Sizes, elements: int = 2**24) -> int:
    """Allowed pairs by evaluating the rule on slices of rows (never more than `elements` at once)."""
    n = torch.arange(sizes.batch_size)[:, None, None]
    h = torch.zeros((), dtype=torch.long)
    j = torch.arange(sizes.source_len)[None, None, :]
    rows = max(1, elements // (sizes.batch_size * sizes.source_len))
    total = 0
    for start in range(0, sizes.seq_len, rows):
        i = torch.arange(start, min(sizes.seq_len, start + rows))[None, :, None]
        total += int(rule(n, h, i, j).sum())
    return total
