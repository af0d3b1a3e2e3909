"""The oracle: multi-head attention written as the formulas, for reading, not speed.

Every index is spelled out with einsum, every intermediate is kept (the
explain walk-through and the tests read them). Run in float64 on the CPU from
the master copies it is the reference; run in the test dtype it tells how much
error that dtype alone causes (the adaptive tolerance).

Rule for query rows with no allowed key: softmax over nothing is undefined, so
the reference returns NaN there. Implementations may return NaN or any finite
value in those rows; the checker compares them apart from the rest.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from ..inputs import Weights


@dataclass(frozen=True)
class ReferenceSteps:
    q: torch.Tensor  # (N, H, L, d)
    k: torch.Tensor  # (N, H_kv, S, d): H_kv = H unless grouped (decoding with a long cache: the new tokens' only)
    v: torch.Tensor  # (N, H_kv, S, d)
    scores: torch.Tensor  # (N, H, L, S), q.k / sqrt(d)
    modified_scores: torch.Tensor  # (N, H, L, S), after the score mod (the scores themselves without one)
    masked_scores: torch.Tensor  # (N, H, L, S), -inf where not allowed
    weights: torch.Tensor  # (N, H, L, S), softmax over S
    heads: torch.Tensor  # (N, H, L, d), weights @ v
    concat: torch.Tensor  # (N, L, E), heads side by side
    output: torch.Tensor  # (N, L, E), after the output projection

    def returned_weights(self, average: bool) -> torch.Tensor:
        """What nn.MultiheadAttention returns: (N, L, S) averaged over heads, or (N, H, L, S)."""
        return self.weights.mean(dim=1) if average else self.weights


CACHE_SLICE = 2**16  # keys of a decoding cache read at once
KEPT_CACHE_ELEMENTS = 2**22  # a cache up to this size is part of the steps' k and v; a longer one is not kept


def _slices(cache: torch.Tensor, like: torch.Tensor) -> Iterator[torch.Tensor]:
    """A cache (N, H_kv, C, d) in slices of keys, each in `like`'s dtype and device, one at a time."""
    for start in range(0, cache.shape[2], CACHE_SLICE):
        yield cache[:, :, start:start + CACHE_SLICE].to(device=like.device, dtype=like.dtype)


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    y = torch.einsum("nlf,ef->nle", x, weight)  # x W^T
    return y if bias is None else y + bias


def reference_attention(
    query: torch.Tensor,  # (N, L, E)
    key: torch.Tensor,  # (N, S, kdim)
    value: torch.Tensor,  # (N, S, vdim)
    weights: Weights,
    allowed: torch.Tensor,  # (N, 1 or H, L, S) bool, True = may attend
    num_heads: int,
    cached: tuple[torch.Tensor, torch.Tensor] | None = None,  # decoding: the cache's K, V (N, H_kv, C, d)
    modify: Callable[[torch.Tensor], torch.Tensor] | None = None,  # the score mod on (N, H, L, S) scores
) -> ReferenceSteps:
    """The layer as formulas. Decoding: key and value are the new tokens, projected and appended to the
    cache, and the queries attend over all S = C + L keys (a full recomputation over the concatenation).
    A score mod changes the scores before the mask, as FlexAttention applies score_mod before mask_mod."""
    n, length, e = query.shape
    source = key.shape[1]
    d = e // num_heads

    kv_heads = weights.kv_heads(num_heads)

    def split_heads(x: torch.Tensor, steps: int, heads: int) -> torch.Tensor:
        return x.reshape(n, steps, heads, d).permute(0, 2, 1, 3)

    q = split_heads(_linear(query, weights.q_weight, weights.q_bias), length, num_heads)
    k = split_heads(_linear(key, weights.k_weight, weights.k_bias), source, kv_heads)  # (N, H_kv, S, d)
    v = split_heads(_linear(value, weights.v_weight, weights.v_bias), source, kv_heads)
    # Grouped heads: query head h = j * G + g reads key/value head j (h // G), an index of the einsum, never
    # a copy of K or V per query head.
    group = num_heads // kv_heads
    grouped_q = q.reshape(n, kv_heads, group, length, d)
    # Decoding: the cache's keys, then the new tokens'. The cache is read in slices, each in this dtype in
    # turn: a long cache is never copied whole (into float64, or by concatenation).
    key_parts = [k] if cached is None else itertools.chain(_slices(cached[0], q), [k])
    value_parts = [v] if cached is None else itertools.chain(_slices(cached[1], q), [v])
    scores = torch.cat([torch.einsum("njgld,njsd->njgls", grouped_q, part) for part in key_parts], dim=-1)
    scores = scores.reshape(n, num_heads, length, -1) / math.sqrt(d)
    modified = modify(scores) if modify is not None else scores
    masked_scores = modified.masked_fill(~allowed, float("-inf"))
    attn = torch.softmax(masked_scores, dim=-1)  # NaN on rows with no allowed key
    grouped_attn = attn.reshape(n, kv_heads, group, length, -1)
    heads, start = torch.zeros_like(grouped_q), 0
    for part in value_parts:
        heads = heads + torch.einsum("njgls,njsd->njgld", grouped_attn[..., start:start + part.shape[2]], part)
        start += part.shape[2]
    heads = heads.reshape(n, num_heads, length, d)
    if cached is not None and (cached[0].device.type == "meta" or cached[0].numel() <= KEPT_CACHE_ELEMENTS):
        k, v = torch.cat([cached[0].to(k), k], dim=2), torch.cat([cached[1].to(v), v], dim=2)  # (N, H_kv, C + L, d)
    concat = heads.permute(0, 2, 1, 3).reshape(n, length, e)
    output = _linear(concat, weights.out_weight, weights.out_bias)
    return ReferenceSteps(q, k, v, scores, modified, masked_scores, attn, heads, concat, output)
