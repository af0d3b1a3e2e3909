"""The shape table: what comes out of nn.MultiheadAttention for a config.

Every shape here is read off a real tensor (the module's own outputs and the
reference's intermediates), never worked out by hand: tutorials get the
weights' shape wrong often enough that only a measured shape is trusted.
"""

from __future__ import annotations

import torch

from .attention import get_impl
from .attention.reference import ReferenceSteps
from .config import Config
from .inputs import Inputs
from .results import ShapeRow


def named_axes(shape: tuple[int, ...] | torch.Size, names: str) -> str:
    """((10, 5, 64), "L N E") -> "(L=10, N=5, E=64)"."""
    return "(" + ", ".join(f"{name}={size}" for name, size in zip(names.split(), shape, strict=True)) + ")"


def _weights_axes(average: bool) -> str:
    return "N L S" if average else "N H L S"


def shape_table(config: Config, inputs: Inputs, steps: ReferenceSteps) -> tuple[list[ShapeRow], dict[str, list[int] | None]]:
    """Rows for the table, and the `shapes` block of the JSON document."""
    seq_first = not config.batch_first
    query_axes = "L N E" if seq_first else "N L E"
    key_axes = "S N kdim" if seq_first else "N S kdim"
    value_axes = "S N vdim" if seq_first else "N S vdim"

    with torch.inference_mode():
        returned = get_impl("torch")(inputs, config)()
        other_average = not config.average_attn_weights
        flipped = config.model_copy(update={"need_weights": True, "average_attn_weights": other_average})
        other = get_impl("torch")(inputs, flipped)()

    def row(tensor: str, value: torch.Tensor | None, axes: str, note: str = "") -> ShapeRow:
        if value is None:
            return ShapeRow(tensor, None, "None", note)
        return ShapeRow(tensor, list(value.shape), named_axes(value.shape, axes), note)

    weights_note = (
        "need_weights=false: none are returned"
        if not config.need_weights
        else ("averaged over heads (average_attn_weights=true)" if config.average_attn_weights else "one map per head (average_attn_weights=false)")
    )
    rows = [
        row("query", inputs.query, query_axes, "batch_first=true" if config.batch_first else "batch_first=false: sequence first"),
        row("key", inputs.key, key_axes, "self attention: the query tensor" if config.attention == "self" else "cross attention source"),
        row("value", inputs.value, value_axes, "self attention: the query tensor" if config.attention == "self" else "cross attention source"),
        row("Q per head", steps.q, "N H L d", "projected, split into heads; d = E/H"),
        row("K per head", steps.k, "N H S d", "projected, split into heads"),
        row("V per head", steps.v, "N H S d", "projected, split into heads"),
        row("scores", steps.scores, "N H L S", "Q K^T / sqrt(d): one L x S map per head"),
        row("attn weights (returned)", returned.weights, _weights_axes(config.average_attn_weights), weights_note),
        row(
            f"attn weights if average_attn_weights={str(other_average).lower()}",
            other.weights,
            _weights_axes(other_average),
            "averaged over heads" if other_average else "one map per head",
        ),
        row("output", returned.output, query_axes, "same layout as the query"),
    ]
    shapes = {
        "query": list(inputs.query.shape),
        "key": list(inputs.key.shape),
        "value": list(inputs.value.shape),
        "output": list(returned.output.shape),
        "attn_weights": list(returned.weights.shape) if returned.weights is not None else None,
    }
    return rows, shapes
