"""`sdpa`: the same projections around F.scaled_dot_product_attention.

The backend comes from `sdpa_backend`; `auto` lets PyTorch choose. A backend
that cannot run this input on this device raises Unavailable (the row is
skipped with PyTorch's reason) instead of crashing the run. For local and
sparse variants the pattern goes in as a dense (N, 1, L, S) mask: the honest
baseline the pattern-aware implementations are measured against.
"""

from __future__ import annotations

import contextlib
import warnings

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..config import Config
from ..inputs import Inputs
from . import Forward, Unavailable
from .layer import layer_around

BACKENDS = {
    "math": SDPBackend.MATH,
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
}


def build(inputs: Inputs, config: Config) -> Forward:
    # SDPA's bool mask means True = allowed, our own meaning: pass it as is.
    # A purely causal mask goes as is_causal so fused kernels can skip the mask tensor.
    mask = config.mask
    only_causal = (config.variant == "full" and mask.plain_causal and mask.only_causal_and_padding
                   and mask.key_padding is None and not inputs.mask_override)
    needs_mask = inputs.mask_override or (
        not only_causal and (config.variant != "full" or mask.key_padding is not None or mask.causal
                             or mask.documents is not None)
    )
    attn_mask = inputs.dense_allowed() if needs_mask else None

    def backend_context() -> contextlib.AbstractContextManager[None]:
        if config.sdpa_backend == "auto":
            return contextlib.nullcontext()
        return sdpa_kernel([BACKENDS[config.sdpa_backend]])

    def core(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        with backend_context():
            return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=only_causal)

    forward = layer_around(core, inputs, config)
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
