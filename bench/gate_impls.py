"""Two user implementations for bench/gate.py: sdpa as a user would wrap it, and the same with ~15% more work.

`plain` is PyTorch's scaled_dot_product_attention called through mha's contract
(configs/my_attention.py explains it). `slower` does exactly that and then the
same attention again for the first EXTRA_ROWS of the query rows, thrown away:
more of the very work the row is timed on, so the slowdown scales with the call
and shares its noise, as a real regression in an attention kernel would. How
much slower it truly is at each shape bench/gate.py measures in one process,
the two interleaved.
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F

EXTRA_ROWS = float(os.environ.get("GATE_EXTRA_ROWS", "0.15"))  # the share of query rows attended a second time


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec) -> torch.Tensor:  # noqa: ANN001 - mha's spec
    mask = spec.mask.dense() if spec.mask.masked else None
    if mask is not None and mask.shape[-2] != q.shape[-2]:
        mask = mask[..., : q.shape[-2], :]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=spec.scale)


def plain(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec) -> torch.Tensor:  # noqa: ANN001
    return _attend(q, k, v, spec)


def slower(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec) -> torch.Tensor:  # noqa: ANN001
    out = _attend(q, k, v, spec)
    rows = max(1, math.ceil(EXTRA_ROWS * q.shape[-2]))
    _attend(q[..., :rows, :], k, v, spec)  # the extra work: a share of the rows again
    return out
