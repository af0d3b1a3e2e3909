"""`sdpa`: the same projections around F.scaled_dot_product_attention.

The backend comes from `sdpa_backend`; `auto` lets PyTorch choose. A backend
that cannot run this input on this device makes the row skipped with PyTorch's
reason instead of crashing the run. For local and sparse variants the pattern
goes in as a dense (N, 1, L, S) mask: the honest baseline the pattern-aware
implementations are measured against.
"""

from __future__ import annotations

import contextlib
import warnings

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..errors import Unsupported, first_line
from ..experiment import Experiment
from ..workload import Workload
from . import Forward
from .layer import additive_mask, layer_around, mod_not_a_bias

BACKENDS = {
    "math": SDPBackend.MATH,
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
}
CUDA_ONLY = ("efficient", "cudnn")


def unsupported(experiment: Experiment) -> str | None:
    reason = mod_not_a_bias(experiment, "scaled_dot_product_attention")
    if reason is not None:
        return reason
    backend = experiment.sdpa_backend
    if backend in CUDA_ONLY and experiment.device == "cpu":
        return f"sdpa_backend '{backend}' cannot run here: PyTorch has it on CUDA only, and this experiment runs on the CPU"
    return None  # the rest only PyTorch can tell, by trying (build's probe call)


def build(work: Workload) -> Forward:
    # SDPA's bool mask means True = allowed, our own meaning: pass it as is.
    # A purely causal mask goes as is_causal so fused kernels can skip the mask tensor.
    is_causal = work.form.is_causal
    dense = work.mask.dense() if work.form.needs_dense else None
    # A bias mod (ALiBi, a relative bias) goes in as a float additive mask that says the mask too.
    additive = additive_mask(work) if work.score_mod is not None else None
    if additive is not None:
        is_causal = False
    backend = work.experiment.sdpa_backend

    def backend_context() -> contextlib.AbstractContextManager[None]:
        if backend == "auto":
            return contextlib.nullcontext()
        return sdpa_kernel([BACKENDS[backend]])

    grouped = work.experiment.sizes.grouped  # enable_gqa: query head h reads K/V head h // (H / H_kv)

    def core(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        attn_mask = additive() if additive is not None else dense
        with backend_context():
            return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal, enable_gqa=grouped)

    forward = layer_around(core, work)
    if work.checked_before:  # a repetition's process: the run already knows this backend runs this input
        return forward
    # One probe call: PyTorch only says whether a backend fits this input when asked to run it.
    with warnings.catch_warnings(record=True) as caught, torch.inference_mode():
        warnings.simplefilter("always")
        try:
            forward()
        except RuntimeError as error:
            # PyTorch explains *why* each kernel was rejected in warnings; keep them in the reason.
            why = [str(w.message).strip() for w in caught]
            reason = "; ".join([first_line(error), *why])
            raise Unsupported(f"sdpa_backend '{backend}' cannot run here: {reason}") from None
    return forward
