"""The pieces a pattern splits into so that blocked never needs an L x S tensor.

Each pattern module (patterns/) builds its own plan from these pieces and Positions.

Queries are cut into blocks of `block` rows. Each piece says which keys every
query block reads, in a shape that can be taken from K and V without copying
them all (a strided window, a fixed set, gathered blocks, or a residue class),
and holds the exact allowed mask for those (query, key) pairs, built from
masks.pair_rule. Pieces are disjoint: every allowed pair belongs to exactly one
piece, so their softmax results merge exactly (see attention/blocked.py).

Kinds of piece:
- Band: query block q reads keys [q*block + offset, q*block + offset + width).
  Local windows, BigBird's sliding blocks, the near part of the strided pattern.
- Fixed: every query block reads the same keys (BigBird's global key blocks).
- Gathered: each query block reads its own key blocks (BigBird's random blocks).
- Residue: query i reads keys j with j = i (mod stride) (the strided pattern's
  far part), laid out as `stride` independent dense problems of L/stride rows.
- ResidueBand: a band within each residue class (the dilated window: i = j mod
  dilation and |i - j| <= window is a window of window // dilation rows in each
  class), so no discarded odd distances are computed.
- Dense rows: a few query rows that attend everything (BigBird's global query
  blocks) are computed directly against all keys.

A mask's first dimension runs over mask groups: batch items times heads, each
kept only where the rule differs (masks.mask_groups), so G = 1 for most patterns,
N with key padding, and H or N * H for a rule that differs per head.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import torch

from .arith import ceil_div
from .config import Config
from .masks import PairRule, mask_groups, pair_rule


@dataclass(frozen=True)
class Band:
    offset: int
    width: int
    allowed: torch.Tensor  # (G, query_blocks, block, width)


@dataclass(frozen=True)
class Fixed:
    keys: torch.Tensor  # (K,) key positions
    allowed: torch.Tensor  # (G, query_blocks, block, K)


@dataclass(frozen=True)
class Gathered:
    key_blocks: torch.Tensor  # (query_blocks, r) key block indices
    allowed: torch.Tensor  # (G, query_blocks, block, r * block)


@dataclass(frozen=True)
class Residue:
    stride: int
    allowed: torch.Tensor  # (G, stride, ceil(L / stride), ceil(S / stride))


@dataclass(frozen=True)
class ResidueBand:
    stride: int
    block: int  # query rows of a block, counted inside a residue class
    blocks: int  # query blocks per class
    offset: int  # in class rows, relative to the block's first row
    width: int
    allowed: torch.Tensor  # (G, stride * blocks, block, width)


Piece = Band | Fixed | Gathered | Residue | ResidueBand


@dataclass(frozen=True)
class BlockPlan:
    block: int
    query_blocks: int
    key_blocks: int
    pieces: list[Piece]
    dense_rows: torch.Tensor | None = None  # (R,) query rows computed against every key
    dense_allowed: torch.Tensor | None = None  # (G, R, S)
    batch_size: int = 1
    num_heads: int = 1
    mask_batch: int = 1  # the mask groups: mask_batch * mask_heads of them, batch item major
    mask_heads: int = 1
    plan_s: float = 0.0  # seconds it took to build (plan_for fills it in)

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


class Positions:
    """Absolute positions and the combined rule for one plan."""

    def __init__(self, config: Config, block: int) -> None:
        self.config = config
        self.block = block
        self.length, self.source = config.seq_len, config.source_length
        self.query_blocks = ceil_div(self.length, block)
        self.key_blocks = ceil_div(self.source, block)
        self.rule: PairRule = pair_rule(config)
        self.mask_batch, self.mask_heads = mask_groups(config)
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
        return BlockPlan(
            self.block, self.query_blocks, self.key_blocks, pieces, dense_rows=dense_rows, dense_allowed=dense_allowed,
            batch_size=self.config.batch_size, num_heads=self.config.num_heads,
            mask_batch=self.mask_batch, mask_heads=self.mask_heads,
        )

    def band(self, offset: int, width: int, member=lambda i, j: True, exclude_rows: torch.Tensor | None = None) -> Band:
        keys = (torch.arange(self.query_blocks)[:, None, None] * self.block + offset + torch.arange(width)[None, None, :])[None]
        allowed = self.allowed(keys, member(self.query, keys))
        if exclude_rows is not None:
            allowed = allowed & ~exclude_rows
        return Band(offset, width, allowed)


GENERIC_BLOCKS = (512, 256, 128, 64)  # the generic plan's block sizes, largest first
GENERIC_WASTE = 1.25  # a larger block may compute this many times the pairs of the smallest


def _touched_blocks(config: Config, block: int, elements: int) -> torch.Tensor:
    """(query_blocks, key_blocks) bool: which block pairs hold at least one allowed pair.

    The rule is evaluated a slice of query blocks at a time, never more than `elements`
    pairs at once, so planning never holds an L x S tensor. Positions are int32 (as
    FlexAttention passes them): half the memory traffic of int64."""
    at = Positions(config, block)
    touched = torch.zeros(at.query_blocks, at.key_blocks, dtype=torch.bool)
    source = at.key_blocks * block
    keys = torch.arange(source, dtype=torch.int32).clamp_(max=at.source - 1)[None, None, None, :]
    n, h = at.n.to(torch.int32), at.h.to(torch.int32)
    groups = n.shape[0]
    step = max(1, elements // (groups * block * source))
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


Result = TypeVar("Result")


def _kept_for_the_last_config(build: Callable[..., Result]) -> Callable[..., Result]:
    """Keep what `build` returned for the last config only: the memory guard, the pair count and
    blocked ask for it in turn, and a long process should not hold every plan it ever made."""
    last: dict[str, Result] = {}

    @functools.wraps(build)
    def kept(config: Config, *args: Any, **kwargs: Any) -> Result:
        key = config.model_dump_json()
        if key not in last:
            last.clear()
            last[key] = build(config, *args, **kwargs)
        return last[key]

    return kept


@_kept_for_the_last_config
def generic_blocks(config: Config, elements: int = 2**22) -> tuple[int, torch.Tensor]:
    """The generic plan's block size and which (query block, key block) pairs it computes.

    The rule is evaluated once on every pair at the finest block size (GENERIC_BLOCKS[-1]);
    the block is the largest of GENERIC_BLOCKS that computes at most GENERIC_WASTE times the
    pairs of the finest: large blocks copy each key block to fewer query blocks, small ones skip
    more. Kept for the last config: the memory guard asks first, then the plan reuses it."""
    finest = GENERIC_BLOCKS[-1]
    fine = _touched_blocks(config, finest, elements)
    least = int(fine.sum()) * finest * finest
    chosen = (finest, fine)
    for size in GENERIC_BLOCKS:
        if size % finest == 0 and finest < size <= config.seq_len:
            candidate = _coarser(fine, size // finest)
            if int(candidate.sum()) * size * size <= GENERIC_WASTE * least:
                chosen = (size, candidate)
                break
    return chosen


def generic_plan(config: Config, block: int | None = None, elements: int = 2**22) -> BlockPlan:
    """For a rule no pattern module has a plan for: the key blocks each query block touches.

    Block pairs without an allowed pair are skipped (generic_blocks picks the block size). When the
    touched blocks lie along the diagonal (a window, in any form), they are one Band: a strided view
    of the keys, nothing copied. Otherwise one Gathered piece: per query block its touched key blocks
    (padded to the largest count with masked repeats). Either holds the exact mask, so partial blocks
    are masked and full ones cost no more than that.
    """
    block, touched = generic_blocks(config, elements) if block is None else (block, _touched_blocks(config, block, elements))
    at = Positions(config, block)
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
    piece = Gathered(key_blocks, at.allowed(gathered, member))
    return at.plan([piece])


def _diagonal_run(touched: torch.Tensor) -> tuple[int, int] | None:
    """(first, width) in blocks when every query block q touches only key blocks in
    [q + first, q + first + width): a band covers them. None when nothing is touched."""
    if not touched.any():
        return None
    columns = torch.arange(touched.shape[1])[None, :] - torch.arange(touched.shape[0])[:, None]  # key block - query block
    relative = columns[touched]
    first, last = int(relative.min()), int(relative.max())
    return first, last - first + 1


def needs_generic_plan(config: Config) -> bool:
    """Full attention restricted by a mask SDPA cannot skip blocks of (packed documents)."""
    return config.variant == "full" and config.mask.documents is not None


@_kept_for_the_last_config
def plan_for(config: Config) -> BlockPlan:
    """The block plan of a local or sparse config, from its pattern module (full attention needs none).

    Its plan_s says how long building it took; the last plan is kept, so that counting the allowed
    pairs and then running `blocked` on the same config plan once."""
    from .patterns import pattern_of

    pattern = pattern_of(config)
    if pattern is None and not needs_generic_plan(config):
        raise ValueError("full attention has no block plan")
    start = time.perf_counter()
    plan = pattern.plan(config) if pattern is not None else generic_plan(config)
    return replace(plan, plan_s=time.perf_counter() - start)


def allowed_pair_count(config: Config) -> int:
    """Allowed (query, key) pairs summed over batch items and heads, without building an L x S mask."""
    if config.variant != "full":
        return plan_for(config).allowed_pairs()
    return config.num_heads * _full_pair_count(config)


def _full_pair_count(config: Config) -> int:
    """Full attention's allowed pairs over the batch, for one head."""
    if config.mask.documents is not None:
        return _counted_row_by_row(config)
    length, source = config.seq_len, config.source_length
    limits = config.key_lengths or [source] * config.batch_size
    if not config.mask.causal:
        return length * sum(limits)
    # Query i sees min(max(i + 1, prefix), limit) keys: keys 0..i, or the whole prefix, cut at its limit.
    prefix = config.mask.prefix or 0
    total = 0
    for limit in limits:
        reach = min(prefix, limit)
        flat = min(length, reach)  # queries i < reach see `reach` keys
        total += flat * reach
        ramp_end = min(length, limit)  # queries flat..ramp_end-1 see i + 1 keys; the rest see `limit`
        if ramp_end > flat:
            total += (ramp_end * (ramp_end + 1) - flat * (flat + 1)) // 2
        total += max(0, length - max(ramp_end, flat)) * limit
    return total


def _counted_row_by_row(config: Config, elements: int = 2**24) -> int:
    """Allowed pairs by evaluating the rule on slices of rows (never more than `elements` at once)."""
    rule = pair_rule(config)
    n = torch.arange(config.batch_size)[:, None, None]
    h = torch.zeros((), dtype=torch.long)
    j = torch.arange(config.source_length)[None, None, :]
    rows = max(1, elements // (config.batch_size * config.source_length))
    total = 0
    for start in range(0, config.seq_len, rows):
        i = torch.arange(start, min(config.seq_len, start + rows))[None, :, None]
        total += int(rule(n, h, i, j).sum())
    return total
