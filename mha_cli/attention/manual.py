"""`manual`: the layer from scratch with plain tensor ops, one step per line.

Same weights as the nn.MultiheadAttention module; the steps are the textbook
ones, so a reader can follow the shapes in the comments. The pattern of a
local or sparse variant is a dense mask here, like in `torch` and `sdpa`.
"""

from __future__ import annotations

import math

import torch

from ..config import Config
from ..inputs import Inputs
from . import AttentionOutput, Forward


def build(inputs: Inputs, config: Config) -> Forward:
    w = inputs.weights
    h, d, e = config.num_heads, config.head_dim, config.embed_dim
    blocked = ~inputs.dense_allowed()[:, None, :, :]  # (N, 1, L, S) True = not allowed, broadcast over heads

    def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(d)  # (N, H, L, S)   scaled scores
        scores = scores.masked_fill(blocked, float("-inf"))  # (N, H, L, S)   mask
        attn = torch.softmax(scores, dim=-1)  # (N, H, L, S)   softmax over keys
        return attn @ v, attn  # (N, H, L, d)   weighted sum of values

    if config.timing.scope == "core":
        q, k, v = inputs.projected()
        return lambda: AttentionOutput(attention(q, k, v)[0], None)

    x_q, x_k, x_v = (inputs.batch_first(x) for x in (inputs.query, inputs.key, inputs.value))

    def forward() -> AttentionOutput:
        n, length, source = x_q.shape[0], x_q.shape[1], x_k.shape[1]
        q = x_q @ w.q_weight.T  # (N, L, E)   input projections
        k = x_k @ w.k_weight.T  # (N, S, E)
        v = x_v @ w.v_weight.T  # (N, S, E)
        if w.q_bias is not None:
            q, k, v = q + w.q_bias, k + w.k_bias, v + w.v_bias
        q = q.view(n, length, h, d).transpose(1, 2)  # (N, H, L, d)   split into heads
        k = k.view(n, source, h, d).transpose(1, 2)  # (N, H, S, d)
        v = v.view(n, source, h, d).transpose(1, 2)  # (N, H, S, d)
        y, attn = attention(q, k, v)  # (N, H, L, d), (N, H, L, S)
        y = y.transpose(1, 2).reshape(n, length, e)  # (N, L, E)   concatenate heads
        y = y @ w.out_weight.T  # (N, L, E)   output projection
        if w.out_bias is not None:
            y = y + w.out_bias
        output = y if config.batch_first else y.transpose(0, 1)
        if not config.need_weights:
            return AttentionOutput(output, None)
        return AttentionOutput(output, attn.mean(dim=1) if config.average_attn_weights else attn)

    return forward
