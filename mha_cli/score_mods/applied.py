"""A score modification bound to its numbers on one device and dtype: what implementations call.

One definition (the mod's function), read three ways: applied to a dense block of
scores (the reference, manual), handed to FlexAttention as its score_mod, and,
for a bias, evaluated on positions alone (the additive float masks of sdpa and
nn.MultiheadAttention, blocked's per-piece biases).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .base import BiasFunction, ScoreFunction, ScoreMod, Tables


@dataclass(frozen=True)
class AppliedMod:
    mod: ScoreMod
    tables: Tables  # its numbers on the device, in the run dtype (or float64 for the reference)
    loaded: Any  # what load() returned (your own function), None for the built-ins
    query_offset: int = 0  # query row i sits at key position i + offset (aligned lower right), as for the mask

    @property
    def name(self) -> str:
        return self.mod.NAME

    @property
    def is_bias(self) -> bool:
        return self.mod.is_bias

    @property
    def function(self) -> ScoreFunction:
        """(score, b, h, q_idx, kv_idx) -> score with q_idx already a key position."""
        return self.mod.function(self.loaded, self.tables)

    @property
    def bias(self) -> BiasFunction | None:
        """(b, h, q_idx, kv_idx) -> the added term, q_idx a key position; None unless a bias."""
        return self.mod.bias_function(self.loaded, self.tables)

    @property
    def score_mod(self) -> ScoreFunction:
        """FlexAttention's form: q_idx is the query's row (0 .. L - 1); the offset is added here."""
        function, offset = self.function, self.query_offset
        if not offset:
            return function
        return lambda score, b, h, i, j: function(score, b, h, i + offset, j)

    @property
    def trained(self) -> bool:
        """Its tables require grad (a learned mod in a training pass): whatever is made from them is made on
        every call, so that each call's graph reaches them."""
        return any(table.requires_grad for table in self.tables.values())

    def varies(self) -> tuple[bool, bool]:
        """(by batch item, by head)."""
        return self.mod.varies(self.loaded)

    def with_tables(self, tables: Tables) -> AppliedMod:
        return AppliedMod(self.mod, tables, self.loaded, self.query_offset)

    def apply(self, scores: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Dense (N, H, R, S) scores -> modified, R the query rows `rows` (all L when None)."""
        n, h, length, source = scores.shape
        rows = torch.arange(length, device=scores.device) if rows is None else rows.to(scores.device)
        b = torch.arange(n, device=scores.device)[:, None, None, None]
        heads = torch.arange(h, device=scores.device)[None, :, None, None]
        i = (rows + self.query_offset)[None, None, :, None]
        j = torch.arange(source, device=scores.device)[None, None, None, :]
        return self.function(scores, b, heads, i, j).to(scores.dtype).expand(scores.shape)

    def dense_bias(self, batch: int, heads: int, rows: torch.Tensor, source: int, dtype: torch.dtype) -> torch.Tensor:
        """The bias's (N or 1, H or 1, R, S) values (1 where it does not vary), a bias mod only."""
        bias = self.bias
        assert bias is not None, f"{self.name} is not a bias"
        by_batch, by_head = self.varies()
        device = rows.device
        b = torch.arange(batch if by_batch else 1, device=device)[:, None, None, None]
        h = torch.arange(heads if by_head else 1, device=device)[None, :, None, None]
        i = (rows + self.query_offset)[None, None, :, None]
        j = torch.arange(source, device=device)[None, None, None, :]
        values = bias(b, h, i, j).to(dtype)
        return values.expand(b.shape[0], h.shape[1], len(rows), source)


def bias_mask(mod: AppliedMod, allowed: torch.Tensor, heads: int, dtype: torch.dtype) -> torch.Tensor:
    """The additive float mask that says the mask and the bias together: bias where allowed (N or 1, H or 1, L, S),
    -inf elsewhere; `allowed` (N or 1, 1 or H, L, S) bool. L x S per head: what the memory guard counts."""
    n = allowed.shape[0]
    rows = torch.arange(allowed.shape[2], device=allowed.device)
    bias = mod.dense_bias(n, heads, rows, allowed.shape[3], dtype)
    shape = torch.broadcast_shapes(bias.shape, allowed.shape)
    return bias.expand(shape).masked_fill(~allowed.expand(shape), float("-inf"))
