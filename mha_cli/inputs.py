"""Inputs and the one set of weights every implementation shares.

Everything starts from a float64 CPU master copy drawn from the experiment's
seed; the run-dtype tensors are casts of it, so the float64 reference and the
implementations see the same numbers (up to the cast). The projected heads,
which only the core scope needs, are made on first use.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch
from torch import nn

from .dtypes import torch_dtype
from .errors import UsageError
from .experiment import Experiment
from .sizes import Sizes


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
    def of(cls, module: nn.MultiheadAttention, detach: bool = True, kv_width: int | None = None) -> Weights:
        """Views of the module's parameters; detach=False keeps them in autograd (training passes).

        kv_width (H_kv * d, grouped-query attention): the key and value projections are the first kv_width
        rows of the module's, so every implementation still shares one seeded set of weights.
        """
        e = module.embed_dim
        if module._qkv_same_embed_dim:
            q_weight, k_weight, v_weight = module.in_proj_weight.split(e)
        else:
            q_weight, k_weight, v_weight = module.q_proj_weight, module.k_proj_weight, module.v_proj_weight
        biases = module.in_proj_bias.split(e) if module.in_proj_bias is not None else (None, None, None)
        rows = slice(None) if kv_width is None else slice(0, kv_width)
        k_weight, v_weight = k_weight[rows], v_weight[rows]
        biases = (biases[0], *(b[rows] if b is not None else None for b in biases[1:]))
        cut = (lambda t: t.detach()) if detach else (lambda t: t)
        return cls(
            cut(q_weight),
            cut(k_weight),
            cut(v_weight),
            cut(module.out_proj.weight),
            *(cut(b) if b is not None else None for b in biases),
            cut(module.out_proj.bias) if module.out_proj.bias is not None else None,
        )

    def kv_heads(self, num_heads: int) -> int:
        """H_kv, read off the projections: (H_kv * d) rows of keys for d = E / H."""
        return self.k_weight.shape[0] // (self.q_weight.shape[0] // num_heads)

    def to(self, dtype: torch.dtype, device: torch.device | str = "cpu") -> Weights:
        moved = {
            f.name: (t.to(device=device, dtype=dtype) if (t := getattr(self, f.name)) is not None else None)
            for f in fields(self)
        }
        return replace(self, **moved)


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(N, T, E) -> (N, H, T, d), a view."""
    n, steps, e = x.shape
    return x.view(n, steps, num_heads, e // num_heads).transpose(1, 2)


def append_to_cache(cache: tuple[torch.Tensor, torch.Tensor], k_new: torch.Tensor,
                    v_new: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Write the new tokens' keys and values (N, H_kv, L, d) into the last L slots of the cache (N, H_kv, S, d),
    in place (the same slots on every call, as a decode step that is timed again and again), and return it."""
    length = k_new.shape[2]
    cache[0][:, :, -length:].copy_(k_new)
    cache[1][:, :, -length:].copy_(v_new)
    return cache


def repeat_kv(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(N, H_kv, S, d) -> (N, H, S, d), query head h reading key/value head h // (H / H_kv): a copy, for the
    references and the dense paths that cannot share a head between several query heads. As is when H_kv = H."""
    kv_heads = x.shape[1]
    return x if kv_heads == num_heads else x.repeat_interleave(num_heads // kv_heads, dim=1)


@dataclass(frozen=True)
class Inputs:
    """The tensors every implementation reads, in the user's layout and the run's dtype and device."""

    query: torch.Tensor  # (L, N, E), or (N, L, E) with batch_first
    key: torch.Tensor  # (S, N, kdim) / (N, S, kdim)
    value: torch.Tensor  # (S, N, vdim) / (N, S, vdim)
    module: nn.MultiheadAttention  # eval mode, run dtype and device
    weights: Weights  # run dtype and device (views of the module's parameters)
    # float64 CPU masters, batch first: the reference reads only these.
    master_query: torch.Tensor  # (N, L, E)
    master_key: torch.Tensor  # (N, S, kdim)
    master_value: torch.Tensor  # (N, S, vdim)
    master_weights: Weights
    batch_first: bool  # the user's layout: (N, T, features) when true, (T, N, features) otherwise
    num_heads: int
    # Decoding: the KV cache in the run dtype, buffers of all S = C + L slots whose first C hold the cached keys
    # and values and whose last L the layer fills with the new tokens' on every call. Drawn in the run dtype:
    # a cache of millions of tokens is never held in float64 (the reference reads its numbers, cached()).
    cache: tuple[torch.Tensor, torch.Tensor] | None = None
    cache_len: int = 0
    # The score mod's numbers (ALiBi's slopes, a relative bias's table) by name: run dtype and device, and the
    # float64 CPU masters the reference reads. Empty without a score_mod.
    mod_tables: dict[str, torch.Tensor] = field(default_factory=dict)
    master_mod_tables: dict[str, torch.Tensor] = field(default_factory=dict)
    _made: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def device(self) -> torch.device:
        return self.query.device

    def as_batch_first(self, x: torch.Tensor) -> torch.Tensor:
        """The user's layout -> (N, T, features), a view."""
        return x if self.batch_first else x.transpose(0, 1)

    def cached(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The cache's keys and values as filled before any call, (N, H_kv, C, d) views in the run dtype (the
        reference reads them a slice at a time in its own dtype), or None when not decoding."""
        if self.cache is None:
            return None
        return tuple(x[:, :, : self.cache_len] for x in self.cache)  # type: ignore[return-value]

    def projected(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q (N, H, L, d), k and v (N, H_kv, S, d), contiguous: the input of `timing.scope: core` (decoding:
        k and v are the whole cache, the new tokens' keys and values in its last L slots)."""
        if "projected" not in self._made:
            with torch.inference_mode():
                projected = project_heads(self.weights, self.num_heads,
                                          *(self.as_batch_first(x) for x in (self.query, self.key, self.value)))
                if self.cache is not None:
                    q, k_new, v_new = projected
                    projected = (q, *append_to_cache(self.cache, k_new, v_new))
                self._made["projected"] = tuple(x.contiguous() for x in projected)
        return self._made["projected"]

    def with_projected(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> Inputs:
        """A copy whose core inputs are these (training: leaves that require grad)."""
        return replace(self, _made={"projected": (q, k, v)})


def project_heads(weights: Weights, num_heads: int, query: torch.Tensor, key: torch.Tensor,
                  value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch-first (N, T, features) inputs -> q (N, H, L, d), k and v (N, H_kv, S, d): the input projections."""
    kv_heads = weights.kv_heads(num_heads)
    return tuple(  # type: ignore[return-value]
        split_heads(torch.nn.functional.linear(x, weight, bias), heads)
        for x, weight, bias, heads in ((query, weights.q_weight, weights.q_bias, num_heads),
                                       (key, weights.k_weight, weights.k_bias, kv_heads),
                                       (value, weights.v_weight, weights.v_bias, kv_heads))
    )


def ungrouped_module(module: nn.MultiheadAttention, sizes: Sizes) -> nn.MultiheadAttention:
    """A copy of the module that computes the grouped layer as plain multi-head attention: head h's key and
    value projections are those of key/value head h // G. What grouped runs are checked against where
    nn.MultiheadAttention itself is the yardstick (`mha explain`)."""
    import copy

    if not sizes.grouped:
        return module
    d, group, e = sizes.head_dim, sizes.group_size, sizes.embed_dim
    rows = torch.arange(e, device=module.out_proj.weight.device)
    source_rows = (rows // d // group) * d + rows % d  # row r of head h = r // d reads row (h // G) * d + r % d
    copied = copy.deepcopy(module)
    with torch.no_grad():
        if copied._qkv_same_embed_dim:
            for block in (1, 2):  # the K and V blocks of in_proj_weight (and bias)
                copied.in_proj_weight[block * e:(block + 1) * e] = module.in_proj_weight[block * e + source_rows]
                if copied.in_proj_bias is not None:
                    copied.in_proj_bias[block * e:(block + 1) * e] = module.in_proj_bias[block * e + source_rows]
        else:
            copied.k_proj_weight.copy_(module.k_proj_weight[source_rows])
            copied.v_proj_weight.copy_(module.v_proj_weight[source_rows])
            if copied.in_proj_bias is not None:
                for block in (1, 2):
                    copied.in_proj_bias[block * e:(block + 1) * e] = module.in_proj_bias[block * e + source_rows]
    return copied


def build_module(experiment: Experiment) -> nn.MultiheadAttention:
    """The nn.MultiheadAttention every implementation borrows its weights from."""
    sizes = experiment.sizes
    cross = experiment.attention == "cross"
    # fork_rng: seed the module's initialisation without touching the caller's RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(experiment.seed)
        module = nn.MultiheadAttention(
            sizes.embed_dim,
            sizes.num_heads,
            dropout=0.0,  # agreement is only defined without dropout
            bias=experiment.bias,
            kdim=sizes.kdim if cross else None,
            vdim=sizes.vdim if cross else None,
            batch_first=experiment.batch_first,
        )
    return module.eval()


def make_inputs(experiment: Experiment, device: torch.device) -> Inputs:
    sizes = experiment.sizes
    dtype = torch_dtype(experiment.dtype)
    generator = torch.Generator().manual_seed(experiment.seed)
    n, length, source = sizes.batch_size, sizes.seq_len, sizes.source_len
    master_query = torch.randn(n, length, sizes.embed_dim, dtype=torch.float64, generator=generator)
    if experiment.attention == "self":
        master_key = master_value = master_query
    else:
        master_key = torch.randn(n, source, sizes.kdim, dtype=torch.float64, generator=generator)
        master_value = torch.randn(n, source, sizes.vdim, dtype=torch.float64, generator=generator)

    module = build_module(experiment)
    kv_width = sizes.kv_width if sizes.grouped else None
    master_weights = Weights.of(module, kv_width=kv_width).to(torch.float64)
    module = module.to(device=device, dtype=dtype)

    def to_run(master: torch.Tensor) -> torch.Tensor:
        tensor = master.to(device=device, dtype=dtype)
        return tensor if experiment.batch_first else tensor.transpose(0, 1).contiguous()

    cache = None
    if experiment.decoding:
        # The cache's keys and values, drawn from the seed as already projected, in the run dtype: a cache of
        # millions of tokens is never a (N, S, E) input, nor a float64 copy. Filled once here, outside every timed call.
        slots = (n, sizes.kv_heads, source, sizes.head_dim)
        cache = tuple(torch.empty(slots, dtype=dtype, device=device) for _ in range(2))
        for buffer in cache:
            drawn = torch.randn((*slots[:2], experiment.cache_len, slots[3]), generator=generator,
                                dtype=torch.float64 if dtype == torch.float64 else torch.float32)
            buffer[:, :, : experiment.cache_len].copy_(drawn)
            del drawn
    mod = experiment.score_mod
    master_mod_tables = mod.tables(torch.float64) if mod is not None else {}
    mod_tables = {name: table.to(device=device, dtype=dtype) for name, table in master_mod_tables.items()}
    query = to_run(master_query)
    # Self attention passes the very same tensor three times, as a user would
    # (nn.MultiheadAttention takes its fused fast path only when query is key is value).
    key = value = query
    if experiment.attention == "cross":
        key, value = to_run(master_key), to_run(master_value)
    return Inputs(
        query=query,
        key=key,
        value=value,
        module=module,
        weights=Weights.of(module, kv_width=kv_width),
        master_query=master_query,
        master_key=master_key,
        master_value=master_value,
        master_weights=master_weights,
        batch_first=experiment.batch_first,
        num_heads=sizes.num_heads,
        cache=cache,  # type: ignore[arg-type]
        cache_len=experiment.cache_len or 0,
        mod_tables=mod_tables,
        master_mod_tables=master_mod_tables,
    )


def resolve_device(name: str) -> torch.device:
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name == "cuda" and not cuda:
        build = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise UsageError(
            f"device: cuda was asked for, but torch {torch.__version__} ({build}) sees no CUDA GPU; "
            "use device: cpu, or device: auto to take a GPU only when there is one"
        )
    if name == "mps" and not mps:
        raise UsageError("device: mps was asked for, but this machine has no MPS (Apple GPU) device; use cpu or auto")
    return torch.device(name)
