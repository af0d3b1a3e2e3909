"""The shape table: what comes out of nn.MultiheadAttention for a experiment.

Every shape is read off a tensor PyTorch really produced, never worked out by
hand (tutorials get the weights' shape wrong often enough). Small configs run
on zero tensors on the CPU; large ones on the "meta" device, where PyTorch runs
its real shape logic without allocating (exact even when the L x S scores
would not fit; its first use imports torch's compiler stack, about 2 s, which
is why small configs do not use it). Masks do not change shapes: left out.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .attention.reference import ReferenceSteps, reference_attention
from .dtypes import torch_dtype
from .experiment import Experiment
from .inputs import Weights
from .results import ShapeRow

META = torch.device("meta")
# Above this many elements in one (N, H, L, S) tensor, shapes are worked out on the meta device.
REAL_TENSOR_LIMIT = 2**20


def named_axes(shape: tuple[int, ...] | torch.Size, names: str) -> str:
    """((10, 5, 64), "L N E") -> "(L=10, N=5, E=64)"."""
    return "(" + ", ".join(f"{name}={size}" for name, size in zip(names.split(), shape, strict=True)) + ")"


def _weights_axes(average: bool) -> str:
    return "N L S" if average else "N H L S"


class _Traced(NamedTuple):
    """The tensors one forward of nn.MultiheadAttention (and the reference's steps) really produced."""

    query: torch.Tensor
    key: torch.Tensor
    value: torch.Tensor
    output: torch.Tensor
    weights: torch.Tensor | None  # as returned
    other_weights: torch.Tensor | None  # with average_attn_weights the other way
    steps: ReferenceSteps


def _traced(experiment: Experiment) -> _Traced:
    """Run the layer on zeros (on the meta device when L x S is large) and keep what came out."""
    sizes = experiment.sizes
    dtype = torch_dtype(experiment.dtype)
    n, length, source, e = sizes.batch_size, sizes.seq_len, sizes.source_len, sizes.embed_dim
    device = META if sizes.scores > REAL_TENSOR_LIMIT else torch.device("cpu")
    cross = experiment.attention == "cross"
    module = nn.MultiheadAttention(
        e, sizes.num_heads, bias=experiment.bias, kdim=sizes.kdim if cross else None, vdim=sizes.vdim if cross else None,
        batch_first=experiment.batch_first, device=device, dtype=dtype,
    ).eval()

    def user_layout(steps: int, features: int) -> torch.Tensor:
        shape = (n, steps, features) if experiment.batch_first else (steps, n, features)
        return torch.zeros(shape, device=device, dtype=dtype)

    query = user_layout(length, e)
    key, value = (user_layout(source, sizes.kdim), user_layout(source, sizes.vdim)) if cross else (query, query)
    average, need = experiment.average_attn_weights, experiment.need_weights
    with torch.inference_mode():
        output, weights = module(query, key, value, need_weights=need, average_attn_weights=average)
        other = module(query, key, value, need_weights=True, average_attn_weights=not average)[1] if need else None
        as_batch_first = (lambda x: x) if experiment.batch_first else (lambda x: x.transpose(0, 1))
        steps = reference_attention(
            as_batch_first(query), as_batch_first(key), as_batch_first(value),
            Weights.of(module, kv_width=sizes.kv_width if sizes.grouped else None),
            torch.ones(n, 1, length, source, dtype=torch.bool, device=device), sizes.num_heads,
            # Decoding: the cache's keys and values come before the new tokens' (S = C + L).
            tuple(torch.zeros(n, sizes.kv_heads, experiment.cache_len, sizes.head_dim, device=device, dtype=dtype)
                  for _ in range(2)) if experiment.decoding else None,  # type: ignore[arg-type]
        )
    return _Traced(query, key, value, output, weights, other, steps)


def _row(tensor: str, value: torch.Tensor | None, axes: str, note: str = "") -> ShapeRow:
    if value is None:
        return ShapeRow(tensor, None, "None", note)
    return ShapeRow(tensor, list(value.shape), named_axes(value.shape, axes), note)


def shape_table(experiment: Experiment) -> tuple[list[ShapeRow], dict[str, list[int] | None]]:
    """Rows for the table, and the `shapes` block of the JSON document."""
    traced = _traced(experiment)
    steps, average = traced.steps, experiment.average_attn_weights
    seq_first = not experiment.batch_first
    query_axes = "L N E" if seq_first else "N L E"
    source_note = "self attention: the query tensor" if experiment.attention == "self" else "cross attention source"
    steps_axis = "S"
    if experiment.decoding:  # key and value are the new tokens (L of them); the other S - L are in the cache
        steps_axis = "L"
        source_note = f"the {experiment.sizes.seq_len} new tokens; {experiment.cache_len} more keys and values are in the cache"
    rows = [
        _row("query", traced.query, query_axes, "batch_first=false: sequence first" if seq_first else "batch_first=true"),
        _row("key", traced.key, f"{steps_axis} N kdim" if seq_first else f"N {steps_axis} kdim", source_note),
        _row("value", traced.value, f"{steps_axis} N vdim" if seq_first else f"N {steps_axis} vdim", source_note),
        _row("Q per head", steps.q, "N H L d", "projected, split into heads; d = E/H"),
        *(
            [_row("K per head", steps.k, "N H_kv S d", f"grouped: {sizes.kv_heads} key heads, each read by "
                  f"{sizes.group_size} query heads (h -> h // {sizes.group_size})"),
             _row("V per head", steps.v, "N H_kv S d", "grouped, as K")]
            if (sizes := experiment.sizes).grouped else
            [_row("K per head", steps.k, "N H S d", "projected, split into heads"),
             _row("V per head", steps.v, "N H S d", "projected, split into heads")]
        ),
        _row("scores", steps.scores, "N H L S", "Q K^T / sqrt(d): one L x S map per head"),
    ]
    if experiment.need_weights:  # with need_weights=false nothing is returned: no rows for it
        rows += [
            _row("attn weights (returned)", traced.weights, _weights_axes(average),
                 "averaged over heads (average_attn_weights=true)" if average else "one map per head (average_attn_weights=false)"),
            _row(f"attn weights if average_attn_weights={str(not average).lower()}", traced.other_weights,
                 _weights_axes(not average), "one map per head" if average else "averaged over heads"),
        ]
    output_note = "same layout as the query" + ("; need_weights=false: no weights returned" if not experiment.need_weights else "")
    rows.append(_row("output", traced.output, query_axes, output_note))
    shapes = {name: list(getattr(traced, name).shape) for name in ("query", "key", "value", "output")}
    shapes["attn_weights"] = list(traced.weights.shape) if traced.weights is not None else None
    return rows, shapes
