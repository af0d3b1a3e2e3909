"""Block plans: the pieces (pieces.py) a pattern splits into so that blocked never needs an L x S tensor.

Each pattern (patterns/) builds its own plan from Positions; a rule no pattern
has a plan for (your own mask_mod, packed documents under full attention) gets
the generic block-sparse plan. Every piece holds the exact allowed mask for the
pairs it reads, built from the combined rule (masks.pair_rule) the PlanContext
carries, and pieces are disjoint: every allowed pair belongs to exactly one
piece, so their softmax results merge exactly (see attention/blocked.py).
Dense rows: a few query rows that attend everything (BigBird's global query
blocks) are computed directly against all keys.

A mask's first dimension runs over mask groups: batch items times heads, each
kept only where the rule differs (masks.mask_groups), so G = 1 for most patterns,
N with key padding, and H or N * H for a rule that differs per head.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .arith import ceil_div
from .pieces import Band, Blocks, Gathered, Piece, ResidueBand
from .sizes import Sizes

# (n, h, i, j) -> allowed: the combined rule (masks.PairRule)
PairRule = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class BlockPlan(Blocks):
    pieces: list[Piece]
    dense_rows: torch.Tensor | None = None  # (R,) query rows computed against every key
    dense_allowed: torch.Tensor | None = None  # (G, R, S)
    batch_size: int = 1
    num_heads: int = 1
    mask_batch: int = 1  # the mask groups: mask_batch * mask_heads of them, batch item major
    mask_heads: int = 1
    plan_s: float = 0.0  # seconds it took to build (Prepared.plan fills it in)

    def allowed_pairs(self) -> int:
        """Allowed (query, key) pairs summed over batch items and heads: what the FLOP count uses."""
        masks = [piece.allowed for piece in self.pieces]
        if self.dense_allowed is not None:
            masks.append(self.dense_allowed)
        # A group stands for every batch item (and head) its mask does not tell apart.
        repeats = (self.batch_size // self.mask_batch) * (self.num_heads // self.mask_heads)
        return sum(int(m.sum()) for m in masks) * repeats

    def group(self, item: int, head: int) -> int:
        """The mask group of batch item `item` and head `head`."""
        return (item if self.mask_batch > 1 else 0) * self.mask_heads + (head if self.mask_heads > 1 else 0)


def block_size_for_window(window: int, length: int) -> int:
    """Query block size for a band of +-window: small enough that a band wastes little
    (each block reads block + 2 * window keys for 2 * window + 1 useful ones), large
    enough to keep the matrix products efficient. Measured best at window 128: 32-64."""
    target = 2 ** round(math.log2(max(window, 1) / 2)) if window > 1 else 16
    return max(1, min(length, max(16, min(128, target))))


GENERIC_BLOCKS = (512, 256, 128, 64)  # the generic plan's block sizes, largest first
GENERIC_WASTE = 1.25  # a larger block may compute this many times the pairs of the smallest


class PlanContext:
    """What every plan of one experiment is built from: the sizes, the combined rule, its mask groups,
    and whether every allowed key lies at or before its query. The generic plan's touched blocks are
    kept here once found: the memory guard asks for them first, then the plan reuses them."""

    def __init__(self, sizes: Sizes, rule: PairRule, groups: tuple[int, int], one_sided: bool,
                 elements: int = 2**22) -> None:
        self.sizes, self.rule, self.groups, self.one_sided = sizes, rule, groups, one_sided
        self.elements = elements  # the most pairs the rule is evaluated on at once while planning

    def positions(self, block: int) -> Positions:
        return Positions(self, block)

    @functools.cached_property
    def generic_blocks(self) -> tuple[int, torch.Tensor]:
        """The generic plan's block size and which (query block, key block) pairs it computes.

        The rule is evaluated once on every pair at the finest block size (GENERIC_BLOCKS[-1]);
        the block is the largest of GENERIC_BLOCKS that computes at most GENERIC_WASTE times the
        pairs of the finest: large blocks copy each key block to fewer query blocks, small ones skip more."""
        finest = GENERIC_BLOCKS[-1]
        fine = touched_blocks(self, finest)
        least = int(fine.sum()) * finest * finest
        for size in GENERIC_BLOCKS:
            if size % finest == 0 and finest < size <= self.sizes.seq_len:
                candidate = _coarser(fine, size // finest)
                if int(candidate.sum()) * size * size <= GENERIC_WASTE * least:
                    return size, candidate
        return finest, fine

    def generic_keys_per_query(self) -> int:
        """Exact for the generic plan: its block times the most key blocks a query block touches."""
        block, touched = self.generic_blocks
        return block * max(1, int(touched.sum(dim=1).max()))


class Positions:
    """Absolute positions and the combined rule for one plan, at one block size."""

    def __init__(self, context: PlanContext, block: int) -> None:
        sizes = context.sizes
        self.context = context
        self.block = block
        self.length, self.source = sizes.seq_len, sizes.source_len
        self.query_blocks = ceil_div(self.length, block)
        self.key_blocks = ceil_div(self.source, block)
        self.rule = context.rule
        self.mask_batch, self.mask_heads = context.groups
        # Batch item and head of each mask group, as (G, 1, 1, 1) tensors.
        group = torch.arange(self.mask_batch * self.mask_heads)[:, None, None, None]
        self.n, self.h = group // self.mask_heads, group % self.mask_heads
        # Query i = q * block + r, as a (1, query_blocks, block, 1) tensor.
        self.query = (torch.arange(self.query_blocks)[:, None] * block + torch.arange(block)[None, :])[None, :, :, None]

    def allowed(self, keys: torch.Tensor, member: torch.Tensor | bool = True, query: torch.Tensor | None = None) -> torch.Tensor:
        """The rule on (query, key) positions, restricted to real positions and to this piece's members."""
        i = self.query if query is None else query
        in_range = (i < self.length) & (keys >= 0) & (keys < self.source)
        # Padded positions past L or S are clamped for the rule (it may index by position) and masked out.
        return self.rule(self.n, self.h, i.clamp(0, self.length - 1), keys.clamp(0, self.source - 1)) & in_range & member

    def residue_band(self, stride: int, offset: int, width: int) -> ResidueBand:
        """Within each class r of positions = r (mod stride): class row a's query block reads class rows
        [block start + offset, + width). This Positions' block counts class rows."""
        block = self.block
        blocks = ceil_div(ceil_div(self.length, stride), block)
        residue = torch.arange(stride)[:, None, None, None]
        start = torch.arange(blocks)[None, :, None, None] * block
        query = ((start + torch.arange(block)[None, None, :, None]) * stride + residue).flatten(0, 1)[None]
        keys = ((start + offset + torch.arange(width)[None, None, None, :]) * stride + residue).flatten(0, 1)[None]
        return ResidueBand(stride, block, blocks, offset, width, self.allowed(keys, query=query))

    def rows(self, rows: torch.Tensor) -> torch.Tensor:
        """(G, R, S): the rule on whole rows, for query rows computed against every key."""
        return self.rule(self.n[..., 0], self.h[..., 0], rows[None, :, None], torch.arange(self.source)[None, None, :])

    def plan(self, pieces: list[Piece], dense_rows: torch.Tensor | None = None, dense_allowed: torch.Tensor | None = None) -> BlockPlan:
        sizes = self.context.sizes
        return BlockPlan(
            self.block, self.query_blocks, self.key_blocks, pieces, dense_rows=dense_rows, dense_allowed=dense_allowed,
            batch_size=sizes.batch_size, num_heads=sizes.num_heads, mask_batch=self.mask_batch, mask_heads=self.mask_heads,
        )

    def band(self, offset: int, width: int, member=lambda i, j: True, exclude_rows: torch.Tensor | None = None) -> Band:
        keys = (torch.arange(self.query_blocks)[:, None, None] * self.block + offset + torch.arange(width)[None, None, :])[None]
        allowed = self.allowed(keys, member(self.query, keys))
        if exclude_rows is not None:
            allowed = allowed & ~exclude_rows
        return Band(offset, width, allowed)


def touched_blocks(context: PlanContext, block: int) -> torch.Tensor:
    """(query_blocks, key_blocks) bool: which block pairs hold at least one allowed pair.

    The rule is evaluated a slice of query blocks at a time, never more than context.elements
    pairs at once, so planning never holds an L x S tensor. Positions are int32 (as
    FlexAttention passes them): half the memory traffic of int64."""
    at = context.positions(block)
    touched = torch.zeros(at.query_blocks, at.key_blocks, dtype=torch.bool)
    source = at.key_blocks * block
    keys = torch.arange(source, dtype=torch.int32).clamp_(max=at.source - 1)[None, None, None, :]
    n, h = at.n.to(torch.int32), at.h.to(torch.int32)
    groups = n.shape[0]
    step = max(1, context.elements // (groups * block * source))
    for start in range(0, at.query_blocks, step):
        stop = min(at.query_blocks, start + step)
        query = torch.arange(start * block, stop * block, dtype=torch.int32).clamp_(max=at.length - 1)
        allowed = at.rule(n, h, query.view(1, stop - start, block, 1), keys)  # (G, c, block, S padded)
        if source > at.source:  # padded keys past S were clamped to S - 1: cut them
            allowed = allowed & (torch.arange(source) < at.source)
        allowed = allowed.expand(groups, stop - start, block, source)
        # Past L the rows are clamped copies of row L - 1: they add nothing a real row lacks.
        touched[start:stop] = allowed.unflatten(-1, (at.key_blocks, block)).any(dim=-1).any(dim=2).any(dim=0)
    return touched


def _coarser(touched: torch.Tensor, factor: int) -> torch.Tensor:
    """The touched grid of blocks `factor` times larger: a coarse pair is touched when any fine one is."""
    rows, cols = (ceil_div(size, factor) * factor for size in touched.shape)
    padded = torch.nn.functional.pad(touched, (0, cols - touched.shape[1], 0, rows - touched.shape[0]))
    return padded.view(rows // factor, factor, cols // factor, factor).any(dim=3).any(dim=1)


def generic_plan(context: PlanContext, block: int | None = None) -> BlockPlan:
    """For a rule no pattern has a plan for: the key blocks each query block touches.

    Block pairs without an allowed pair are skipped (generic_blocks picks the block size, unless
    `block` is given). When the touched blocks lie along the diagonal (a window, in any form), they
    are one Band: a strided view of the keys, nothing copied. Otherwise one Gathered piece: per query
    block its touched key blocks (padded to the largest count with masked repeats). Either holds the
    exact mask, so partial blocks are masked and full ones cost no more than that.
    """
    block, touched = context.generic_blocks if block is None else (block, touched_blocks(context, block))
    at = context.positions(block)
    count = max(1, int(touched.sum(dim=1).max()))
    band = _diagonal_run(touched)
    if band is not None and band[1] <= count:
        first, width = band
        return at.plan([at.band(first * block, width * block)])
    order = torch.argsort(touched.to(torch.int8), dim=1, descending=True, stable=True)[:, :count]
    real = torch.gather(touched, 1, order)
    key_blocks = torch.where(real, order, 0)
    gathered = (key_blocks[:, :, None] * block + torch.arange(block)[None, None, :]).flatten(1)[None, :, None, :]
    member = real.repeat_interleave(block, dim=1)[None, :, None, :]
    return at.plan([Gathered(key_blocks, at.allowed(gathered, member))])


def _diagonal_run(touched: torch.Tensor) -> tuple[int, int] | None:
    """(first, width) in blocks when every query block q touches only key blocks in
    [q + first, q + first + width): a band covers them. None when nothing is touched."""
    if not touched.any():
        return None
    columns = torch.arange(touched.shape[1])[None, :] - torch.arange(touched.shape[0])[:, None]  # key block - query block
    relative = columns[touched]
    first, last = int(relative.min()), int(relative.max())
    return first, last - first + 1
