"""`torch`: nn.MultiheadAttention's forward, called the way a user calls it."""

from __future__ import annotations

from ..config import Config
from ..inputs import Inputs
from ..masks import causal_allowed, key_padding_allowed
from . import AttentionOutput, Forward, Unavailable


def build(inputs: Inputs, config: Config) -> Forward:
    if config.timing.scope == "core":
        raise Unavailable("nn.MultiheadAttention has no separate core: it always runs its projections (use timing.scope: layer)")
    device = inputs.device
    # nn.MultiheadAttention's bool masks mean True = NOT allowed: invert ours.
    attn_mask = None
    key_padding_mask = None
    if config.variant != "full" or inputs.mask_override or not config.mask.only_causal_and_padding:
        # Its attn_mask can be (L, S) or per head (N * H, L, S): the pattern (or a mask given
        # through Inputs.with_mask) goes per item and head.
        blocked = ~inputs.dense_allowed()  # (N, 1 or H, L, S)
        attn_mask = blocked.expand(-1, config.num_heads, -1, -1).reshape(-1, *blocked.shape[-2:])
    else:
        if config.mask.causal:
            attn_mask = ~causal_allowed(config.seq_len, config.source_length, config.mask.prefix or 0).to(device)
        if config.mask.key_padding is not None:
            key_padding_mask = ~key_padding_allowed(config.key_lengths, config.source_length).to(device)
    module = inputs.module
    query, key, value = inputs.query, inputs.key, inputs.value

    def forward() -> AttentionOutput:
        output, weights = module(
            query,
            key,
            value,
            key_padding_mask=key_padding_mask,
            attn_mask=attn_mask,
            need_weights=config.need_weights,
            average_attn_weights=config.average_attn_weights,
        )
        return AttentionOutput(output, weights)

    return forward
