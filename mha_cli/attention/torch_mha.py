"""`torch`: nn.MultiheadAttention's forward, called the way a user calls it."""

from __future__ import annotations

from ..config import Config
from ..inputs import Inputs
from ..masks import causal_allowed, key_padding_allowed
from . import AttentionOutput, Forward


def build(inputs: Inputs, config: Config) -> Forward:
    device = inputs.query.device
    # nn.MultiheadAttention's bool masks mean True = NOT allowed: invert ours.
    attn_mask = None
    if config.mask.causal:
        attn_mask = ~causal_allowed(config.seq_len, config.source_length).to(device)
    key_padding_mask = None
    if config.mask.key_padding is not None:
        key_padding_mask = ~key_padding_allowed(config.mask.key_padding.lengths, config.source_length).to(device)
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
