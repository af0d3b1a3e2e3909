"""Your own attention implementation, timed and checked beside PyTorch's (see configs/my_attention.yaml).

`mha` calls it with q (N, H, L, d), k and v (N, H_kv, S, d) in the run's dtype
and device, and `spec`: the mask in every form (spec.mask.dense() is the
(N, 1 or H, L, S) bool mask, True = may attend; spec.mask.mask_mod the
FlexAttention rule; spec.mask.is_causal when it is plain causal), the scale and
the experiment. H_kv is H unless num_kv_heads groups the heads; query head h
then reads key/value head spec.kv_head_of(h). It returns (N, H, L, d). Raise
mha_cli.Unsupported("why") to skip a row it cannot run.
"""

import torch


def plain_softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec) -> torch.Tensor:
    group = q.shape[1] // k.shape[1]  # query heads per key/value head (1 without grouping)
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)  # (N, H, S, d)
    scores = (q @ k.transpose(-2, -1)) * spec.scale  # (N, H, L, S)
    if spec.mask.masked:
        scores = scores.masked_fill(~spec.mask.dense(), float("-inf"))
    return torch.softmax(scores, dim=-1) @ v  # (N, H, L, d)
