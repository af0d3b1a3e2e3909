"""A downsampled picture of the allowed pairs: the fraction allowed in each cell of a grid.

A cell covers a rectangle of (query, key) positions. The rule is evaluated on
up to `samples` evenly spaced positions per side of the cell, so the picture
is exact whenever a cell spans no more positions than that, and a faithful
shading otherwise; it never needs the L x S mask. The density printed beside
it is exact (Prepared.allowed_pairs).
"""

from __future__ import annotations

import torch

from .masks import PairRule
from .sizes import Sizes


def _sample_positions(total: int, cells: int, samples: int) -> torch.Tensor:
    """(cells, k) positions: k evenly spaced positions inside each of `cells` equal spans of range(total)."""
    edges = torch.linspace(0, total, cells + 1)
    span = (edges[1:] - edges[:-1]).max().item()
    k = max(1, min(samples, int(span)))
    offsets = (torch.arange(k) + 0.5) / k
    positions = edges[:-1, None] + offsets[None, :] * (edges[1:] - edges[:-1])[:, None]
    return positions.floor().long().clamp(0, total - 1)


def mask_grid(rule: PairRule, sizes: Sizes, rows: int, cols: int, batch: int = 0, head: int = 0,
              samples: int = 8) -> torch.Tensor:
    """(rows, cols) float in [0, 1]: share of allowed (query, key) pairs in each cell, for one batch item and head."""
    rows, cols = min(rows, sizes.seq_len), min(cols, sizes.source_len)
    queries = _sample_positions(sizes.seq_len, rows, samples)  # (rows, kq)
    keys = _sample_positions(sizes.source_len, cols, samples)  # (cols, kk)
    n, h = torch.tensor(batch), torch.tensor(head)
    allowed = rule(n, h, queries[:, None, :, None], keys[None, :, None, :])  # (rows, cols, kq, kk)
    return allowed.float().mean(dim=(2, 3))
