"""Score mods to name in a config (`score_mod.function: configs/score_mods.py:NAME`), FlexAttention's signature.

score is q.k / sqrt(d); b, h, q_idx and kv_idx are broadcasting integer tensors (q_idx: the query's position
among the keys). Return the modified scores.
"""

import torch


def tanh_softcap(cap: float):
    """A generator (name it with score_mod.args: {cap: 20.0}): Gemma 2's soft-capping, not a bias."""

    def softcap(score, b, h, q_idx, kv_idx):
        return cap * torch.tanh(score / cap)

    return softcap


def distance_penalty(score, b, h, q_idx, kv_idx):
    """A bias (declare it with bias: true): every head penalises a key by the log of its distance."""
    return score - (1.0 + h) * 0.1 * torch.log1p((q_idx - kv_idx).abs().float())
