"""Example mask_mod rules for `sparse.pattern: custom` (see configs/custom_mask_mod.yaml).

A rule has FlexAttention's signature: (b, h, q_idx, kv_idx) -> bool tensor,
True where query q_idx of batch item b and head h may attend key kv_idx. The
arguments are broadcasting integer tensors; use tensor operations, not Python
`if`. A function that returns such a rule takes its settings from
`mask_mod_args`.
"""

import torch


def windows_per_head(base: int):
    """Head h looks back base * 2**h keys (causal): short- and long-range heads side by side."""

    def rule(b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
        return (kv_idx <= q_idx) & (q_idx - kv_idx < base * 2**h)

    return rule
