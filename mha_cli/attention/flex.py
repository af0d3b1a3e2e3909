"""`flex`: torch.nn.attention.flex_attention, compiled, with a BlockMask of the pattern.

The mask_mod is masks.pair_rule, the same definition every other
implementation is checked against. Compilation happens in `build` and is
timed there (reported as compile_s, never mixed into the median); every new
shape compiles again. FlexAttention without torch.compile is an unfused
O(L * S) fallback, so it is not offered. On the CPU it runs inference only.
"""

from __future__ import annotations

import time
import warnings

import torch

from ..config import Config
from ..inputs import Inputs
from ..masks import mask_groups, pair_rule
from . import Forward, Unavailable
from .layer import layer_around


def build(inputs: Inputs, config: Config) -> Forward:
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    except ImportError as error:
        raise Unavailable(f"FlexAttention is not in torch {torch.__version__}: {error}") from None
    if inputs.device.type == "cpu" and config.timing.pass_ != "forward":
        raise Unavailable("FlexAttention does not support backward on CPU (PyTorch raises NotImplementedError)")
    if inputs.device.type == "cpu" and torch.backends.cpu.get_cpu_capability() == "DEFAULT":
        raise Unavailable("FlexAttention on the CPU needs AVX2 or better; this CPU reports none")
    device = inputs.device
    if inputs.mask_override:  # a mask given through Inputs.with_mask: read it, per batch item
        allowed = inputs.dense_allowed()
        batched, per_head = True, allowed.shape[1] > 1

        def mask_mod(b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
            return allowed[b, h if per_head else 0, q_idx, kv_idx]
    else:
        mask_mod = pair_rule(config, device)
        mask_batch, mask_heads = mask_groups(config)
        batched, per_head = mask_batch > 1, mask_heads > 1

    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # compile chatter; failures raise below
            # device is passed explicitly: with None, a CUDA build picks "cuda" even without a GPU.
            block_mask = create_block_mask(
                mask_mod, config.batch_size if batched else None, config.num_heads if per_head else None, config.seq_len, config.source_length,
                device=device, _compile=True,
            )
            compiled = torch.compile(flex_attention, dynamic=False)

            def core(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
                return compiled(q, k, v, block_mask=block_mask)

            forward = layer_around(core, inputs, config)
            with torch.no_grad():  # no backward for FlexAttention on the CPU
                forward()
    except Exception as error:  # noqa: BLE001 - any compiler failure means "cannot run here"
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise Unavailable(f"FlexAttention could not compile here: {type(error).__name__}: {message}") from None
    forward.compile_s = time.perf_counter() - start  # type: ignore[attr-defined]
    return forward
