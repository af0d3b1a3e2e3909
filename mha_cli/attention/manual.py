"""`manual`: the layer from scratch with plain tensor ops, one step per line.

Same weights as the nn.MultiheadAttention module; the steps are the textbook
ones, so a reader can follow the shapes in the comments. The pattern of a
local or sparse variant is a dense mask here, like in `torch` and `sdpa`.
`mha explain` runs `layer_steps` and shows every intermediate it returns.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

from ..experiment import Experiment
from ..inputs import Weights
from ..workload import Workload

Modify = Callable[[torch.Tensor], torch.Tensor]  # (N, H, L, S) scores -> the same after the score mod
from . import AttentionOutput, Forward
from .layer import layer_around


class Steps(NamedTuple):
    """Every intermediate of one forward, batch first."""

    q: torch.Tensor  # (N, L, E)   after the input projection
    k: torch.Tensor  # (N, S, H_kv*d)   H_kv = H unless grouped
    v: torch.Tensor  # (N, S, H_kv*d)
    q_heads: torch.Tensor  # (N, H, L, d)
    k_heads: torch.Tensor  # (N, H_kv, S, d)
    v_heads: torch.Tensor  # (N, H_kv, S, d)
    scores: torch.Tensor  # (N, H, L, S)
    modified: torch.Tensor  # (N, H, L, S)   after the score mod (the scores themselves without one)
    masked: torch.Tensor  # (N, H, L, S)
    weights: torch.Tensor  # (N, H, L, S)
    heads: torch.Tensor  # (N, H, L, d)
    concat: torch.Tensor  # (N, L, E)
    output: torch.Tensor  # (N, L, E)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, blocked: torch.Tensor,
              modify: Modify | None = None) -> tuple[torch.Tensor, ...]:
    """q (N, H, L, d); k, v (N, H_kv, S, d): a key/value head serves H / H_kv query heads (grouped query
    attention): the group's query rows are stacked against it, never a repeated copy of K or V.
    modify: the score mod, on the (N, H, L, S) scores before the mask."""
    n, num_heads, length, d = q.shape
    kv_heads, source = k.shape[1], k.shape[2]
    grouped_q = q.reshape(n, kv_heads, -1, d)  # (N, H_kv, G*L, d)   a group's queries as rows
    scores = (grouped_q @ k.transpose(-2, -1)).view(n, num_heads, length, source) / math.sqrt(d)  # (N, H, L, S)
    modified = modify(scores) if modify is not None else scores  # (N, H, L, S)   score mod: ALiBi, soft-capping, ...
    masked = modified.masked_fill(blocked, float("-inf"))  # (N, H, L, S)   mask: -inf where not allowed
    weights = torch.softmax(masked, dim=-1)  # (N, H, L, S)   softmax over keys
    heads = (weights.view(n, kv_heads, -1, source) @ v).view(n, num_heads, length, d)  # (N, H, L, d)   weighted values
    return scores, modified, masked, weights, heads


def layer_steps(x_q: torch.Tensor, x_k: torch.Tensor, x_v: torch.Tensor, w: Weights, num_heads: int, blocked: torch.Tensor,
                cached: tuple[torch.Tensor, torch.Tensor] | None = None, modify: Modify | None = None) -> Steps:
    """x_q (N, L, E), x_k (N, S, kdim), x_v (N, S, vdim); blocked (N, 1 or H, L, S) True = NOT allowed.
    cached: decoding, the cache's keys and values (N, H_kv, C, d), before the new tokens' own."""
    n, length, source = x_q.shape[0], x_q.shape[1], x_k.shape[1]
    e = w.q_weight.shape[0]
    d = e // num_heads
    kv_heads = w.kv_heads(num_heads)  # H_kv: H unless grouped
    q = x_q @ w.q_weight.T  # (N, L, E)   input projections
    k = x_k @ w.k_weight.T  # (N, S, H_kv*d)
    v = x_v @ w.v_weight.T  # (N, S, H_kv*d)
    if w.q_bias is not None:
        q, k, v = q + w.q_bias, k + w.k_bias, v + w.v_bias
    q_heads = q.view(n, length, num_heads, d).transpose(1, 2)  # (N, H, L, d)   split into heads
    k_heads = k.view(n, source, kv_heads, d).transpose(1, 2)  # (N, H_kv, S, d)
    v_heads = v.view(n, source, kv_heads, d).transpose(1, 2)  # (N, H_kv, S, d)
    if cached is not None:  # decoding: the cache, then the new tokens   (N, H_kv, C + L, d)
        k_heads, v_heads = torch.cat([cached[0], k_heads], dim=2), torch.cat([cached[1], v_heads], dim=2)
    scores, modified, masked, weights, heads = attention(q_heads, k_heads, v_heads, blocked, modify)
    concat = heads.transpose(1, 2).reshape(n, length, e)  # (N, L, E)   concatenate heads
    output = concat @ w.out_weight.T  # (N, L, E)   output projection
    if w.out_bias is not None:
        output = output + w.out_bias
    return Steps(q, k, v, q_heads, k_heads, v_heads, scores, modified, masked, weights, heads, concat, output)


def unsupported(experiment: Experiment) -> str | None:
    return None  # plain tensor ops run every shape, dtype, pass and scope


def build(work: Workload) -> Forward:
    experiment, inputs = work.experiment, work.inputs
    blocked = ~work.mask.dense()  # (N, 1 or H, L, S) True = not allowed, broadcast over heads
    mod = work.score_mod
    modify = mod.apply if mod is not None else None  # applied on every call: a learned table's gradient flows

    if experiment.timing.scope == "core":
        q, k, v = inputs.projected()
        return lambda: AttentionOutput(attention(q, k, v, blocked, modify)[-1], None)

    if experiment.decoding:  # the same steps around a KV cache: the shared projections, this core
        return layer_around(lambda q, k, v: attention(q, k, v, blocked, modify)[-1], work)
    x_q, x_k, x_v = (inputs.as_batch_first(x) for x in (inputs.query, inputs.key, inputs.value))
    num_heads, batch_first = experiment.sizes.num_heads, experiment.batch_first
    need_weights, average = experiment.need_weights, experiment.average_attn_weights

    def forward() -> AttentionOutput:
        steps = layer_steps(x_q, x_k, x_v, inputs.weights, num_heads, blocked, modify=modify)
        output = steps.output if batch_first else steps.output.transpose(0, 1)
        if not need_weights:
            return AttentionOutput(output, None)
        weights = steps.weights.mean(dim=1) if average else steps.weights
        return AttentionOutput(output, weights)

    return forward
