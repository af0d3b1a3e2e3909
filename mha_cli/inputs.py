"""Inputs and the one set of weights every implementation shares.

Everything starts from a float64 CPU master copy drawn from `config.seed`;
the run-dtype tensors are casts of it, so the float64 reference and the
implementations see the same numbers (up to the cast).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from torch import nn

from .config import Config
from .masks import allowed_mask

TORCH_DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


@dataclass(frozen=True)
class Weights:
    """The projection weights of one nn.MultiheadAttention, split per role."""

    q_weight: torch.Tensor  # (E, E)
    k_weight: torch.Tensor  # (E, kdim)
    v_weight: torch.Tensor  # (E, vdim)
    out_weight: torch.Tensor  # (E, E)
    q_bias: torch.Tensor | None  # (E,)
    k_bias: torch.Tensor | None
    v_bias: torch.Tensor | None
    out_bias: torch.Tensor | None

    @classmethod
    def of(cls, module: nn.MultiheadAttention) -> Weights:
        e = module.embed_dim
        if module._qkv_same_embed_dim:
            q_weight, k_weight, v_weight = module.in_proj_weight.split(e)
        else:
            q_weight, k_weight, v_weight = module.q_proj_weight, module.k_proj_weight, module.v_proj_weight
        biases = module.in_proj_bias.split(e) if module.in_proj_bias is not None else (None, None, None)
        return cls(
            q_weight.detach(),
            k_weight.detach(),
            v_weight.detach(),
            module.out_proj.weight.detach(),
            *(b.detach() if b is not None else None for b in biases),
            module.out_proj.bias.detach() if module.out_proj.bias is not None else None,
        )

    def to(self, dtype: torch.dtype, device: torch.device | str = "cpu") -> Weights:
        moved = {
            f.name: (t.to(device=device, dtype=dtype) if (t := getattr(self, f.name)) is not None else None)
            for f in fields(self)
        }
        return replace(self, **moved)


@dataclass(frozen=True)
class Inputs:
    """Everything an implementation needs, in the user's layout and dtype."""

    query: torch.Tensor  # (L, N, E), or (N, L, E) with batch_first
    key: torch.Tensor  # (S, N, kdim) / (N, S, kdim)
    value: torch.Tensor  # (S, N, vdim) / (N, S, vdim)
    module: nn.MultiheadAttention  # eval mode, run dtype and device
    weights: Weights  # run dtype and device (views of the module's parameters)
    allowed: torch.Tensor  # (N, L, S) bool, True = may attend, on the run device
    # float64 CPU masters, batch first: the reference reads only these.
    master_query: torch.Tensor  # (N, L, E)
    master_key: torch.Tensor  # (N, S, kdim)
    master_value: torch.Tensor  # (N, S, vdim)
    master_weights: Weights
    master_allowed: torch.Tensor  # (N, L, S) bool, CPU


def build_module(config: Config) -> nn.MultiheadAttention:
    """The nn.MultiheadAttention every implementation borrows its weights from."""
    # fork_rng: seed the module's initialisation without touching the caller's RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        module = nn.MultiheadAttention(
            config.embed_dim,
            config.num_heads,
            dropout=0.0,  # agreement is only defined without dropout
            bias=config.bias,
            kdim=config.kdim,
            vdim=config.vdim,
            batch_first=config.batch_first,
        )
    return module.eval()


def make_inputs(config: Config, device: torch.device) -> Inputs:
    dtype = TORCH_DTYPES[config.dtype]
    generator = torch.Generator().manual_seed(config.seed)
    n, length, source = config.batch_size, config.seq_len, config.source_length
    master_query = torch.randn(n, length, config.embed_dim, dtype=torch.float64, generator=generator)
    if config.attention == "self":
        master_key = master_value = master_query
    else:
        master_key = torch.randn(n, source, config.key_dim, dtype=torch.float64, generator=generator)
        master_value = torch.randn(n, source, config.value_dim, dtype=torch.float64, generator=generator)

    module = build_module(config)
    master_weights = Weights.of(module).to(torch.float64)
    module = module.to(device=device, dtype=dtype)

    def to_run(master: torch.Tensor) -> torch.Tensor:
        tensor = master.to(device=device, dtype=dtype)
        return tensor if config.batch_first else tensor.transpose(0, 1).contiguous()

    query = to_run(master_query)
    # Self attention passes the very same tensor three times, as a user would
    # (nn.MultiheadAttention takes its fused fast path only when query is key is value).
    key = value = query
    if config.attention == "cross":
        key, value = to_run(master_key), to_run(master_value)
    master_allowed = allowed_mask(config)
    return Inputs(
        query=query,
        key=key,
        value=value,
        module=module,
        weights=Weights.of(module),
        allowed=master_allowed.to(device),
        master_query=master_query,
        master_key=master_key,
        master_value=master_value,
        master_weights=master_weights,
        master_allowed=master_allowed,
    )
