"""The projections around an attention core, shared by the implementations that differ only in their core.

`manual` spells its projections out instead (it is written for reading), and
`torch` is nn.MultiheadAttention's own forward.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..inputs import append_to_cache, project_heads
from ..workload import Workload
from . import AttentionOutput, Forward

# (N, H, L, d) queries, (N, H, S, d) keys and values -> (N, H, L, d)
Core = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def layer_around(core: Core, work: Workload) -> Forward:
    """The Forward to time: the core alone (`timing.scope: core`) or the whole layer."""
    experiment, inputs = work.experiment, work.inputs
    if experiment.timing.scope == "core":
        q, k, v = inputs.projected()
        return lambda: AttentionOutput(core(q, k, v), None)
    w, h = inputs.weights, experiment.sizes.num_heads
    x_q, x_k, x_v = (inputs.as_batch_first(x) for x in (inputs.query, inputs.key, inputs.value))
    batch_first, cache = experiment.batch_first, inputs.cache

    def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if cache is not None:  # decoding: only the new tokens were projected; they join the cache
            k, v = append_to_cache(cache, k, v)
        return core(q, k, v)

    def forward() -> AttentionOutput:
        y = attend(*project_heads(w, h, x_q, x_k, x_v)).transpose(1, 2).flatten(2)  # (N, L, E)
        y = F.linear(y, w.out_weight, w.out_bias)
        return AttentionOutput(y if batch_first else y.transpose(0, 1), None)

    return forward
