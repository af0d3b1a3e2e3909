"""Training cost: the backward pass timed and its gradients checked (`timing.pass`), on the attention core.

`backward` times the backward alone on one kept forward graph (FlashAttention's benchmark_backward:
the graph is retained, gradients are returned, not accumulated); `forward_backward` times both per
call. Every run checks dQ, dK, dV against float64 autograd through the dense masked softmax, with
the same seeded upstream gradient. Where the reference checks evenly spread query rows (long
sequences), the loss is restricted to those rows for the implementation and the reference alike,
sum(out[rows] * g[rows]), so the comparison stays exact and cheap. Query rows with no allowed key
are left out of the loss: their output is undefined (NaN for some kernels), so are its gradients.
The whole layer's backward (input and parameter gradients) is still to come.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from .check import CheckResult, Reference, Tolerance
from .config import Config
from .inputs import TORCH_DTYPES, Inputs, split_heads
from .masks import fully_masked_rows

Leaves = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def training_inputs(inputs: Inputs) -> tuple[Inputs, Leaves]:
    """A copy of the inputs whose projected q, k, v (the core's inputs) are leaves that require grad."""
    leaves = tuple(x.detach().clone().requires_grad_() for x in inputs.projected())
    return replace(inputs, _made={**inputs._made, "projected": leaves}), leaves  # type: ignore[return-value]


def upstream_gradient(config: Config, device: torch.device) -> torch.Tensor:
    """The seeded dL/d(out), (N, H, L, d) in the run dtype: the same for every implementation."""
    generator = torch.Generator().manual_seed(config.seed + 1)
    shape = (config.batch_size, config.num_heads, config.seq_len, config.head_dim)
    return torch.randn(shape, dtype=torch.float64, generator=generator).to(device=device, dtype=TORCH_DTYPES[config.dtype])


@dataclass(frozen=True)
class GradientReference:
    rows: torch.Tensor  # the query rows in the loss: checked and with an allowed key
    grads: Leaves  # float64 dQ, dK, dV on the CPU
    tolerance: Tolerance


def _dense_core(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    scores = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).masked_fill(~allowed, float("-inf"))
    return torch.softmax(scores, dim=-1).nan_to_num(0.0) @ v


def _reference_grads(inputs: Inputs, reference: Reference, rows: torch.Tensor, upstream: torch.Tensor,
                     dtype: torch.dtype) -> Leaves:
    config, w = inputs.config, inputs.master_weights.to(dtype)
    q, k, v = (
        split_heads(torch.nn.functional.linear(x.to(dtype), weight, bias), config.num_heads).detach().requires_grad_()
        for x, weight, bias in ((inputs.master_query, w.q_weight, w.q_bias), (inputs.master_key, w.k_weight, w.k_bias),
                                (inputs.master_value, w.v_weight, w.v_bias))
    )
    allowed = reference.allowed[:, :, torch.isin(reference.rows, rows)]
    out = _dense_core(q[:, :, rows], k, v, allowed)
    loss = (out * upstream[:, :, rows].to(dtype)).sum()
    return torch.autograd.grad(loss, (q, k, v))  # type: ignore[return-value]


def gradient_reference(config: Config, inputs: Inputs, reference: Reference, upstream: torch.Tensor) -> GradientReference:
    """Float64 dQ, dK, dV on the checked rows with an allowed key, and a tolerance sized like the forward's:
    the same math in the run dtype shows how far that dtype alone moves the gradients."""
    defined = ~fully_masked_rows(reference.allowed).any(dim=0)  # (R,): a key in every item and head
    rows = reference.rows[defined]
    upstream = upstream.detach().cpu().double()
    exact = _reference_grads(inputs, reference, rows, upstream, torch.float64)
    gap = None
    if config.dtype != "float64":
        twin = _reference_grads(inputs, reference, rows, upstream, TORCH_DTYPES[config.dtype])
        gap = max(float((a.double() - b).abs().max()) for a, b in zip(twin, exact) if a.numel())
    return GradientReference(rows, exact, Tolerance.for_dtype(config.dtype, gap))


def check_gradients(forward: Callable[[], object], leaves: Leaves, upstream: torch.Tensor,
                    expected: GradientReference) -> CheckResult:
    """The implementation's dQ, dK, dV for the same restricted loss, against float64."""
    rows = expected.rows.to(upstream.device)
    out = forward().output  # type: ignore[attr-defined]
    loss = (out[:, :, rows] * upstream[:, :, rows]).sum()
    got = torch.autograd.grad(loss, leaves, allow_unused=True)
    problems, worst = [], 0.0
    for name, mine, theirs in zip(("dq", "dk", "dv"), got, expected.grads):
        mine = torch.zeros_like(theirs) if mine is None else mine.detach().cpu().double()
        if not torch.isfinite(mine).all():
            problems.append(f"{name}: NaN/inf in the gradient (a row without an allowed key that is NaN in the "
                            "forward poisons the backward, even with no loss on it)")
            continue
        error = (mine - theirs).abs()
        worst = max(worst, float(error.max()) if error.numel() else 0.0)
        bad = int((error > expected.tolerance.atol + expected.tolerance.rtol * theirs.abs()).sum())
        if bad:
            problems.append(f"{name}: max error {float(error.max()):.3g} exceeds the tolerance "
                            f"(atol {expected.tolerance.atol:.3g} + rtol {expected.tolerance.rtol:.3g}*|ref|) in {bad} elements")
    return CheckResult(ok=not problems, max_abs_err=worst, undefined_rows=0, nan_undefined_rows=0, problems=tuple(problems))


def timed_pass(config: Config, forward: Callable[[], object], leaves: Leaves, upstream: torch.Tensor) -> Callable[[], object]:
    """What to time for the pass: the backward alone on a kept graph, or forward and backward."""
    if config.timing.pass_ == "backward":
        out = forward().output  # type: ignore[attr-defined]
        return lambda: torch.autograd.grad(out, leaves, upstream, retain_graph=True, allow_unused=True)
    return lambda: torch.autograd.grad(forward().output, leaves, upstream, allow_unused=True)  # type: ignore[attr-defined]
