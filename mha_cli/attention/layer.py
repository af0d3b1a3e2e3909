"""The projections around an attention core, shared by the implementations that differ only in their core.

`manual` spells its projections out instead (it is written for reading), and
`torch` is nn.MultiheadAttention's own forward.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ..dtypes import torch_dtype
from ..inputs import append_to_cache, project_heads
from ..score_mods.applied import bias_mask
from ..workload import Workload
from . import AttentionOutput, Forward

if TYPE_CHECKING:
    from ..experiment import Experiment

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


def mod_not_a_bias(experiment: Experiment, kernel: str) -> str | None:
    """Why a kernel that takes only an additive float mask cannot apply the experiment's score mod, or None."""
    mod = experiment.score_mod
    if mod is None or mod.is_bias:
        return None
    return (f"score_mod {mod.NAME} is a function of the scores, not an additive bias: {kernel} cannot apply it "
            "(manual and flex do)")


def additive_mask(work: Workload) -> Callable[[], torch.Tensor]:
    """The mask and the score mod's bias together as one additive float mask (N or 1, H, L, S): the bias where
    allowed, -inf elsewhere. Made once, unless the bias is learned and trained (then on every call, so that its
    gradient flows through each call's graph)."""
    mod, experiment = work.score_mod, work.experiment
    assert mod is not None and mod.is_bias
    heads, dtype = experiment.sizes.num_heads, torch_dtype(experiment.dtype)

    def make() -> torch.Tensor:
        return bias_mask(mod, work.mask.dense(), heads, dtype)

    if mod.trained:
        return make
    made = make()
    return lambda: made
