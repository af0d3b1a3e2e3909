"""The shape table: what comes out of nn.MultiheadAttention for a experiment.

Every shape is read off a tensor PyTorch really produced, never worked out by
hand (tutorials get the weights' shape wrong often enough). Small configs run
on zero tensors on the CPU; large ones on the "meta" device, where PyTorch runs
its real shape logic without allocating (exact even when the L x S scores
would not fit; its first use imports torch's compiler stack, about 2 s, which
is why small configs do not use it). Masks do not change shapes: left out.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention.reference import reference_attention
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


def shape_table(experiment: Experiment) -> tuple[list[ShapeRow], dict[str, list[int] | None]]:
    """Rows for the table, and the `shapes` block of the JSON document."""
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
    key = value = query
    if experiment.attention == "cross":
        key, value = user_layout(source, sizes.kdim), user_layout(source, sizes.vdim)
    other_average = not experiment.average_attn_weights
    with torch.inference_mode():
        output, weights = module(query, key, value, need_weights=experiment.need_weights, average_attn_weights=experiment.average_attn_weights)
        other_weights = (
            module(query, key, value, need_weights=True, average_attn_weights=other_average)[1] if experiment.need_weights else None
        )
        as_batch_first = (lambda x: x) if experiment.batch_first else (lambda x: x.transpose(0, 1))
        steps = reference_attention(
            as_batch_first(query), as_batch_first(key), as_batch_first(value), Weights.of(module),
            torch.ones(n, 1, length, source, dtype=torch.bool, device=device), sizes.num_heads,
        )

    seq_first = not experiment.batch_first
    query_axes = "L N E" if seq_first else "N L E"

    def row(tensor: str, value: torch.Tensor | None, axes: str, note: str = "") -> ShapeRow:
        if value is None:
            return ShapeRow(tensor, None, "None", note)
        return ShapeRow(tensor, list(value.shape), named_axes(value.shape, axes), note)

    weights_note = (
        "averaged over heads (average_attn_weights=true)" if experiment.average_attn_weights
        else "one map per head (average_attn_weights=false)"
    )
    source_note = "self attention: the query tensor" if experiment.attention == "self" else "cross attention source"
    rows = [
        row("query", query, query_axes, "batch_first=true" if experiment.batch_first else "batch_first=false: sequence first"),
        row("key", key, "S N kdim" if seq_first else "N S kdim", source_note),
        row("value", value, "S N vdim" if seq_first else "N S vdim", source_note),
        row("Q per head", steps.q, "N H L d", "projected, split into heads; d = E/H"),
        row("K per head", steps.k, "N H S d", "projected, split into heads"),
        row("V per head", steps.v, "N H S d", "projected, split into heads"),
        row("scores", steps.scores, "N H L S", "Q K^T / sqrt(d): one L x S map per head"),
    ]
    if experiment.need_weights:  # with need_weights=false nothing is returned: no rows for it
        rows += [
            row("attn weights (returned)", weights, _weights_axes(experiment.average_attn_weights), weights_note),
            row(
                f"attn weights if average_attn_weights={str(other_average).lower()}",
                other_weights,
                _weights_axes(other_average),
                "averaged over heads" if other_average else "one map per head",
            ),
        ]
    output_note = "same layout as the query" + ("; need_weights=false: no weights returned" if not experiment.need_weights else "")
    rows.append(row("output", output, query_axes, output_note))
    shapes = {
        "query": list(query.shape),
        "key": list(key.shape),
        "value": list(value.shape),
        "output": list(output.shape),
        "attn_weights": list(weights.shape) if weights is not None else None,
    }
    return rows, shapes
