"""Two user implementations for bench/gate.py: sdpa as a user would wrap it, and the same with ~15% more work.

`plain` is PyTorch's scaled_dot_product_attention called through mha's contract
(configs/my_attention.py explains it). `slower` makes the same single call with
the first EXTRA_ROWS of the query rows appended once more (their outputs thrown
away): more of the very work the row is timed on, in the same kernel call, so
the slowdown scales with the call and shares its noise, as a real regression in
an attention kernel would. How much slower it truly is at each shape
bench/gate.py measures in one process, the two interleaved.
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F

EXTRA_ROWS = float(os.environ.get("GATE_EXTRA_ROWS", "0.15"))  # the share of query rows attended a second time
_extended_masks: dict[tuple[int, int], torch.Tensor] = {}  # the mask with its extra rows, made once per mask


def _mask(spec) -> torch.Tensor | None:  # noqa: ANN001 - mha's AttentionSpec
    return spec.mask.dense() if spec.mask.masked else None


def plain(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec) -> torch.Tensor:  # noqa: ANN001
    return F.scaled_dot_product_attention(q, k, v, attn_mask=_mask(spec), scale=spec.scale)


def slower(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec) -> torch.Tensor:  # noqa: ANN001
    length = q.shape[-2]
    rows = max(1, math.ceil(EXTRA_ROWS * length))
    mask = _mask(spec)
    if mask is not None:
        key = (id(mask), rows)
        if key not in _extended_masks:
            _extended_masks.clear()
            _extended_masks[key] = torch.cat([mask, mask[..., :rows, :]], dim=-2)
        mask = _extended_masks[key]
    out = F.scaled_dot_product_attention(torch.cat([q, q[..., :rows, :]], dim=-2), k, v, attn_mask=mask, scale=spec.scale)
    return out[..., :length, :]
