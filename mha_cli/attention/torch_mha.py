"""`torch`: nn.MultiheadAttention's forward, called the way a user calls it."""

from __future__ import annotations

import torch

from ..experiment import Experiment
from ..masks import causal_allowed, key_padding_allowed
from ..workload import Workload
from . import AttentionOutput, Forward
from .layer import additive_mask, mod_not_a_bias


def unsupported(experiment: Experiment) -> str | None:
    if experiment.timing.scope == "core":
        return "nn.MultiheadAttention has no separate core: it always runs its projections (use timing.scope: layer)"
    sizes = experiment.sizes
    if experiment.decoding:
        return "nn.MultiheadAttention has no KV cache: it would project every cached token again on every call"
    reason = mod_not_a_bias(experiment, "nn.MultiheadAttention")
    if reason is not None:
        return reason
    if sizes.grouped:
        return (f"nn.MultiheadAttention has no grouped key/value heads (num_kv_heads {sizes.kv_heads} < num_heads "
                f"{sizes.num_heads}): its K and V always have num_heads heads")
    return None


def build(work: Workload) -> Forward:
    experiment, inputs = work.experiment, work.inputs
    sizes, mask, device = experiment.sizes, experiment.mask, inputs.device
    # nn.MultiheadAttention's bool masks mean True = NOT allowed: invert ours.
    attn_mask = None
    key_padding_mask = None
    additive = None
    if work.score_mod is not None:
        # A bias mod: its float attn_mask (N * H, L, S) is added to the scores, -inf where not allowed.
        additive = additive_mask(work)
    elif not work.form.native:
        # Its attn_mask can be (L, S) or per head (N * H, L, S): the pattern (or a mask given
        # through Workload.with_mask) goes per item and head.
        blocked = ~work.mask.dense()  # (N, 1 or H, L, S)
        attn_mask = blocked.expand(-1, sizes.num_heads, -1, -1).reshape(-1, *blocked.shape[-2:])
    else:
        if mask.causal:
            attn_mask = ~causal_allowed(sizes.seq_len, sizes.source_len, mask.prefix, mask.query_offset).to(device)
        if mask.key_lengths is not None:
            key_padding_mask = ~key_padding_allowed(mask.key_lengths, sizes.source_len).to(device)
    module = inputs.module
    query, key, value = inputs.query, inputs.key, inputs.value
    need_weights, average = experiment.need_weights, experiment.average_attn_weights

    def per_item_and_head() -> torch.Tensor | None:
        if additive is None:
            return attn_mask
        made = additive()  # (N or 1, H or 1, L, S): 1 where neither the mask nor the bias differs
        return made.expand(sizes.batch_size, sizes.num_heads, *made.shape[-2:]).reshape(-1, *made.shape[-2:])

    if additive is not None and not work.score_mod.trained:  # type: ignore[union-attr]
        attn_mask = per_item_and_head()  # made once: only a trained table's mask is made on every call
        additive = None

    def forward() -> AttentionOutput:
        output, weights = module(
            query,
            key,
            value,
            key_padding_mask=key_padding_mask,
            attn_mask=per_item_and_head(),
            need_weights=need_weights,
            average_attn_weights=average,
        )
        return AttentionOutput(output, weights)

    return forward
