"""The kinds of piece a block plan (block_plan.py) is made of, each with its own layout.

A piece says which keys every query block reads, in a shape that can be taken
from K and V without copying them all, and holds the exact allowed mask for
those (query, key) pairs. Each kind knows how to lay (G, T, d) keys and queries
out for one batched kernel call, how to put rows back in query order, and how
to sum key gradients back (the adjoint of its key layout), so blocked
(attention/blocked.py) runs every kind the same way.

- Band: query block q reads keys [q*block + offset, q*block + offset + width):
  an overlapping strided window of the (padded) keys, unfold, no copy. Local
  windows, BigBird's sliding blocks, the near part of the strided pattern.
- Fixed: every query block reads the same keys (BigBird's global key blocks):
  one small gather, run as one tall problem.
- Gathered: each query block reads its own key blocks (BigBird's random blocks):
  an index_select of just those blocks.
- Residue: query i reads keys j with j = i (mod stride) (the strided pattern's
  far part): a reshape into `stride` dense problems of L/stride rows.
- ResidueBand: a band within each residue class (the dilated window: i = j mod
  dilation and |i - j| <= window is a window of window // dilation rows in each
  class), so no discarded odd distances are computed.
A mask's first dimension runs over mask groups (G): batch items times heads,
each kept only where the rule differs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from .arith import ceil_div


@dataclass(frozen=True)
class Blocks:
    """How queries and keys are cut into blocks."""

    block: int
    query_blocks: int
    key_blocks: int


def _pad_rows(x: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """Zero rows around dim 1 of (G, T, d)."""
    return F.pad(x, (0, 0, before, after)) if before or after else x


def _classes(x: torch.Tensor, stride: int) -> torch.Tensor:
    """(G, T, d) -> (G, stride, ceil(T / stride), d): residue class r holds rows r, r + stride, ..."""
    rows = ceil_div(x.shape[1], stride)
    return _pad_rows(x, 0, rows * stride - x.shape[1]).unflatten(1, (rows, stride)).transpose(1, 2)


class Piece:
    """What every kind provides; `at` is the plan's blocks. Each kind is a frozen dataclass whose last
    field is `allowed`: the exact mask, (G, X, rows of a problem, keys of a problem), in its layout."""

    allowed: torch.Tensor

    def to(self, device: torch.device) -> Piece:
        """This piece with its index tensors on `device` (the masks are moved by whoever runs it)."""
        return self

    def kernel_allowed(self, length: int) -> torch.Tensor:
        """The mask as the kernel gets it (Fixed stacks its query blocks into one tall problem)."""
        return self.allowed

    def keys_for(self, x: torch.Tensor, at: Blocks) -> torch.Tensor:
        """(G, S, d) keys or values -> (G, X, keys per problem, d)."""
        raise NotImplementedError

    def queries_for(self, q: torch.Tensor, at: Blocks) -> torch.Tensor:
        """(G, L, d) queries -> (G, X, rows per problem, d); blocks of queries by default."""
        length = q.shape[1]
        return _pad_rows(q, 0, at.query_blocks * at.block - length).unflatten(1, (at.query_blocks, at.block))

    def rows_back(self, x: torch.Tensor, length: int) -> torch.Tensor:
        """(G, X, Lq, ...) in this piece's layout -> (G, L, ...) in query order."""
        return x.flatten(1, 2)[:, :length]

    def keys_back(self, grad: torch.Tensor, source: int, at: Blocks) -> torch.Tensor:
        """The adjoint of keys_for(): gradients in this layout -> (G, S, d), summed where one key is read twice."""
        raise NotImplementedError

    def keys_back_into(self, grad: torch.Tensor, target: torch.Tensor, at: Blocks, first: bool) -> None:
        """keys_back written into target (G, S, d): copied when first, else added."""
        part = self.keys_back(grad, target.shape[1], at)
        target.copy_(part) if first else target.add_(part)

    def keys_in_layout(self, source: int, at: Blocks) -> int:
        """Key rows per head in this layout (a band's overlapping windows hold each key width / block times)."""
        raise NotImplementedError

    def forward_keys(self, source: int, at: Blocks) -> int:
        """Key rows per head the forward copies to lay the keys out."""
        return self.keys_in_layout(source, at)


@dataclass(frozen=True)
class Band(Piece):
    offset: int
    width: int
    allowed: torch.Tensor  # (G, query_blocks, block, width)

    def keys_for(self, x: torch.Tensor, at: Blocks) -> torch.Tensor:
        before = max(0, -self.offset)
        after = max(0, (at.query_blocks - 1) * at.block + self.offset + self.width - x.shape[1])
        padded = _pad_rows(x, before, after)[:, self.offset + before :]
        return padded.unfold(1, self.width, at.block)[:, : at.query_blocks].transpose(-2, -1)

    def keys_back(self, grad: torch.Tensor, source: int, at: Blocks) -> torch.Tensor:
        return band_back(grad, at.block, self.offset, source)

    def keys_back_into(self, grad: torch.Tensor, target: torch.Tensor, at: Blocks, first: bool) -> None:
        if not band_back_into(grad, target, at.block, self.offset, first):
            super().keys_back_into(grad, target, at, first)

    def keys_in_layout(self, source: int, at: Blocks) -> int:
        return at.query_blocks * self.width

    def forward_keys(self, source: int, at: Blocks) -> int:
        return source + self.width  # a padded copy; its windows are a view of it


@dataclass(frozen=True)
class Fixed(Piece):
    keys: torch.Tensor  # (K,)
    allowed: torch.Tensor  # (G, query_blocks, block, K)

    def to(self, device: torch.device) -> Fixed:
        return replace(self, keys=self.keys.to(device))

    def kernel_allowed(self, length: int) -> torch.Tensor:
        # The same keys for every query block: one tall problem per head runs the kernel
        # better than many small ones. (G, blocks, block, K) -> (G, 1, L, K).
        return self.allowed.flatten(1, 2)[:, None, :length]

    def keys_for(self, x: torch.Tensor, at: Blocks) -> torch.Tensor:
        return x.index_select(1, self.keys)[:, None]

    def queries_for(self, q: torch.Tensor, at: Blocks) -> torch.Tensor:
        return q[:, None]

    def keys_back(self, grad: torch.Tensor, source: int, at: Blocks) -> torch.Tensor:
        g, d = grad.shape[0], grad.shape[-1]
        return torch.zeros(g, source, d, dtype=grad.dtype, device=grad.device).index_add_(1, self.keys, grad[:, 0])

    def keys_in_layout(self, source: int, at: Blocks) -> int:
        return len(self.keys)


@dataclass(frozen=True)
class Gathered(Piece):
    key_blocks: torch.Tensor  # (query_blocks, r) key block indices
    allowed: torch.Tensor  # (G, query_blocks, block, r * block)

    def to(self, device: torch.device) -> Gathered:
        return replace(self, key_blocks=self.key_blocks.to(device))

    def keys_for(self, x: torch.Tensor, at: Blocks) -> torch.Tensor:
        blocks = _pad_rows(x, 0, at.key_blocks * at.block - x.shape[1]).unflatten(1, (at.key_blocks, at.block))
        chosen = blocks.index_select(1, self.key_blocks.flatten())  # (G, query_blocks * r, block, d)
        return chosen.view(x.shape[0], at.query_blocks, -1, x.shape[-1])

    def keys_back(self, grad: torch.Tensor, source: int, at: Blocks) -> torch.Tensor:
        g, d = grad.shape[0], grad.shape[-1]
        blocks = torch.zeros(g, at.key_blocks, at.block, d, dtype=grad.dtype, device=grad.device)
        blocks.index_add_(1, self.key_blocks.flatten(), grad.reshape(g, -1, at.block, d))
        return blocks.flatten(1, 2)[:, :source]

    def keys_in_layout(self, source: int, at: Blocks) -> int:
        return at.query_blocks * self.key_blocks.shape[1] * at.block


@dataclass(frozen=True)
class Residue(Piece):
    stride: int
    allowed: torch.Tensor  # (G, stride, ceil(L / stride), ceil(S / stride))

    def keys_for(self, x: torch.Tensor, at: Blocks) -> torch.Tensor:
        return _classes(x, self.stride)

    def queries_for(self, q: torch.Tensor, at: Blocks) -> torch.Tensor:
        return _classes(q, self.stride)

    def rows_back(self, x: torch.Tensor, length: int) -> torch.Tensor:
        return x.transpose(1, 2).flatten(1, 2)[:, :length]

    def keys_back(self, grad: torch.Tensor, source: int, at: Blocks) -> torch.Tensor:
        return grad.transpose(1, 2).flatten(1, 2)[:, :source]

    def keys_in_layout(self, source: int, at: Blocks) -> int:
        return source + self.stride  # padded to whole class rows


@dataclass(frozen=True)
class ResidueBand(Piece):
    stride: int
    block: int  # query rows of a block, counted inside a residue class
    blocks: int  # query blocks per class
    offset: int  # in class rows, relative to the block's first row
    width: int
    allowed: torch.Tensor  # (G, stride * blocks, block, width)

    def keys_for(self, x: torch.Tensor, at: Blocks) -> torch.Tensor:
        # (G, stride, rows, d) -> per class, each query block's window of class rows -> (G, stride * blocks, width, d).
        classes = _classes(x, self.stride)
        rows = classes.shape[2]
        before = max(0, -self.offset)
        after = max(0, (self.blocks - 1) * self.block + self.offset + self.width - rows)
        padded = F.pad(classes, (0, 0, before, after))[:, :, self.offset + before :]
        windows = padded.unfold(2, self.width, self.block)[:, :, : self.blocks].transpose(-2, -1)
        return windows.reshape(x.shape[0], self.stride * self.blocks, self.width, x.shape[-1])

    def queries_for(self, q: torch.Tensor, at: Blocks) -> torch.Tensor:
        classes = _classes(q, self.stride)
        padding = self.blocks * self.block - classes.shape[2]
        return F.pad(classes, (0, 0, 0, padding)).reshape(q.shape[0], self.stride * self.blocks, self.block, q.shape[-1])

    def rows_back(self, x: torch.Tensor, length: int) -> torch.Tensor:
        # (G, stride * blocks, block, ...) -> (G, stride, class rows, ...) -> query order
        rows = ceil_div(length, self.stride)
        x = x.unflatten(1, (self.stride, self.blocks)).flatten(2, 3)[:, :, :rows]
        return x.transpose(1, 2).flatten(1, 2)[:, :length]

    def keys_back(self, grad: torch.Tensor, source: int, at: Blocks) -> torch.Tensor:
        g, d = grad.shape[0], grad.shape[-1]
        rows = ceil_div(source, self.stride)
        # (G, stride * blocks, width, d) -> per class (G, stride, rows, d)
        windows = grad.reshape(g * self.stride, self.blocks, self.width, d)
        classes = band_back(windows, self.block, self.offset, rows).view(g, self.stride, rows, d)
        return classes.transpose(1, 2).flatten(1, 2)[:, :source]

    def keys_in_layout(self, source: int, at: Blocks) -> int:
        return self.stride * self.blocks * self.width

    def forward_keys(self, source: int, at: Blocks) -> int:
        return source + self.keys_in_layout(source, at)  # the padded classes, then every window copied


def band_back(grad: torch.Tensor, block: int, offset: int, source: int) -> torch.Tensor:
    """Adjoint of a band's windows: (G, X, width, d), window x holding keys x * block + offset + t,
    summed into (G, S, d). The windows overlap; cut into block-wide slices, each slice of all
    windows is one non-overlapping strided run, so every add is a plain in-place add."""
    g, blocks, width, d = grad.shape
    span = blocks * block + width  # window x's key t sits at x * block + t in this buffer
    buffer = torch.empty(g, span + block, d, dtype=grad.dtype, device=grad.device)
    for start in range(0, width, block):
        stop = min(width, start + block)
        runs = buffer[:, start : start + blocks * block].unflatten(1, (blocks, block))
        if start == 0:  # the first slice covers [0, blocks * block) when width >= block: copy, no zeros first
            buffer[:, blocks * block :].zero_()
            if stop - start < block:
                runs.zero_()
            runs[:, :, : stop - start].copy_(grad[:, :, start:stop])
        else:
            runs[:, :, : stop - start].add_(grad[:, :, start:stop])
    # Buffer position m is key m + offset: keep the keys inside [0, S).
    first, last = max(0, offset), min(source, offset + span)
    if first == 0 and last == source:  # the usual case: a view, nothing copied
        return buffer[:, -offset : source - offset]
    result = torch.zeros(g, source, d, dtype=grad.dtype, device=grad.device)
    if last > first:
        result[:, first:last] = buffer[:, first - offset : last - offset]
    return result


def band_back_into(grad: torch.Tensor, target: torch.Tensor, block: int, offset: int, first: bool) -> bool:
    """band_back added (or, when first, copied) straight into target (G, S, d), with no buffer, when
    the band's windows start on block boundaries and S is whole blocks; False (nothing done) otherwise.
    Slice [start, start + block) of every window covers the keys from start + offset on, one whole
    key block per window, so it is one (windows, block, d) view of target."""
    g, blocks, width, d = grad.shape
    source = target.shape[1]
    if offset % block or source % block:
        return False
    target_blocks = target.view(g, source // block, block, d)
    for start in range(0, width, block):
        stop = min(width, start + block)
        first_key_block = (start + offset) // block  # window x's slice lands on key block first_key_block + x
        lo = max(0, -first_key_block)  # the windows whose slice lands inside [0, S)
        hi = max(lo, min(blocks, source // block - first_key_block))
        into = target_blocks[:, first_key_block + lo : first_key_block + hi, : stop - start]
        if first and start == 0 and stop - start == block:  # copy, and zero the key blocks this slice misses
            target_blocks[:, : first_key_block + lo].zero_()
            target_blocks[:, first_key_block + hi :].zero_()
            into.copy_(grad[:, lo:hi, start:stop])
            continue
        if first and start == 0:
            target.zero_()
        into.add_(grad[:, lo:hi, start:stop])
    return True
