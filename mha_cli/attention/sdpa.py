"""`sdpa`: the same projections around F.scaled_dot_product_attention.

The backend comes from `sdpa_backend`; `auto` lets PyTorch choose. A backend
that cannot run this input on this device raises Unavailable (the row is
skipped with PyTorch's reason) instead of crashing the run.
"""

from __future__ import annotations

import contextlib
import warnings

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..config import Config
from ..inputs import Inputs
from . import AttentionOutput, Forward, Unavailable, batch_first

BACKENDS = {
    "math": SDPBackend.MATH,
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
}


def build(inputs: Inputs, config: Config) -> Forward:
    w = inputs.weights
    h, d, e = config.num_heads, config.head_dim, config.embed_dim
    x_q = batch_first(inputs.query, config.batch_first)  # (N, L, E)
    x_k = batch_first(inputs.key, config.batch_first)  # (N, S, kdim)
    x_v = batch_first(inputs.value, config.batch_first)  # (N, S, vdim)
    # SDPA's bool mask means True = allowed, our own meaning: pass it as is.
    # A purely causal mask goes as is_causal so fused kernels can skip the mask tensor.
    only_causal = config.mask.causal and config.mask.key_padding is None
    attn_mask = None if only_causal or bool(inputs.allowed.all()) else inputs.allowed[:, None, :, :]

    def backend_context() -> contextlib.AbstractContextManager[None]:
        if config.sdpa_backend == "auto":
            return contextlib.nullcontext()
        return sdpa_kernel([BACKENDS[config.sdpa_backend]])

    def forward() -> AttentionOutput:
        n, length, source = x_q.shape[0], x_q.shape[1], x_k.shape[1]
        q = F.linear(x_q, w.q_weight, w.q_bias).view(n, length, h, d).transpose(1, 2)  # (N, H, L, d)
        k = F.linear(x_k, w.k_weight, w.k_bias).view(n, source, h, d).transpose(1, 2)  # (N, H, S, d)
        v = F.linear(x_v, w.v_weight, w.v_bias).view(n, source, h, d).transpose(1, 2)  # (N, H, S, d)
        with backend_context():
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=only_causal)
        y = F.linear(y.transpose(1, 2).reshape(n, length, e), w.out_weight, w.out_bias)  # (N, L, E)
        return AttentionOutput(y if config.batch_first else y.transpose(0, 1), None)

    # One probe call: PyTorch only says whether a backend fits this input when asked to run it.
    with warnings.catch_warnings(record=True) as caught, torch.inference_mode():
        warnings.simplefilter("always")
        try:
            forward()
        except RuntimeError as error:
            # PyTorch explains *why* each kernel was rejected in warnings; keep them in the reason.
            why = [str(w.message).strip() for w in caught]
            reason = "; ".join([str(error).strip().splitlines()[0], *why])
            raise Unavailable(f"sdpa_backend '{config.sdpa_backend}' cannot run here: {reason}") from None
    return forward
