"""Training cost: the backward pass timed and its gradients checked (`timing.pass`), on the attention core.

`backward` times the backward alone on one kept forward graph (FlashAttention's benchmark_backward:
the graph is retained, gradients are returned, not accumulated); `forward_backward` times both per
call. Every run checks dQ, dK, dV against float64 autograd through the dense masked softmax, with
the same seeded upstream gradient. Where the reference checks evenly spread query rows (long
sequences), the loss is restricted to those rows for the implementation and the reference alike,
sum(out[rows] * g[rows]), so the comparison stays exact and cheap. Query rows with no allowed key
are left out of the loss: their output is undefined (NaN for some kernels), so are its gradients.
For the whole layer the gradients are those of the inputs and of every parameter of
nn.MultiheadAttention (in_proj or q/k/v_proj, out_proj, biases), compared by name.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from .attention.reference import reference_attention
from .check import CheckResult, Reference, Tolerance
from .dtypes import torch_dtype
from .errors import Unsupported
from .experiment import Experiment
from .inputs import Weights, project_heads, repeat_kv
from .masks import fully_masked_rows
from .score_mods import ScoreMod
from .workload import Workload

Leaves = dict[str, torch.Tensor]  # what the gradients are taken with respect to, by name
INPUT_LEAVES = ("d(query=key=value)", "d(query)", "d(key)", "d(value)")  # the layer's inputs, in the user's layout


def mod_leaf_name(mod_name: str, table: str) -> str:
    """How a learned score mod's table is named among the gradients: "d(relative_bias.table)"."""
    return f"d({mod_name}.{table})"


def _table_leaves(mod: ScoreMod | None, tables: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], Leaves]:
    """A learned score mod's tables as fresh leaves that require grad (the mod is a parameter of the layer), by
    table name and by gradient name; the tables as they are, and no leaves, otherwise."""
    if mod is None or not mod.learned:
        return tables, {}
    leaves = {name: table.detach().clone().requires_grad_() for name, table in tables.items()}
    return leaves, {mod_leaf_name(mod.NAME, name): table for name, table in leaves.items()}


def training_workload(work: Workload) -> tuple[Workload, Leaves]:
    """A copy of the workload whose differentiable tensors are leaves that require grad: the core's
    projected q, k, v, or for the whole layer its inputs and every parameter of a copy of the module;
    and a learned score mod's table, in both."""
    tables, table_leaves = _table_leaves(work.experiment.score_mod, work.inputs.mod_tables)
    inputs = replace(work.inputs, mod_tables=tables) if table_leaves else work.inputs
    if work.experiment.timing.scope == "core":
        q, k, v = (x.detach().clone().requires_grad_() for x in inputs.projected())
        return work.with_inputs(inputs.with_projected(q, k, v)), {"dq": q, "dk": k, "dv": v, **table_leaves}
    module = copy.deepcopy(inputs.module).requires_grad_(True)
    query, key, value, leaves = _input_leaves(work.experiment, inputs.query, inputs.key, inputs.value)
    leaves.update({f"d({name})": parameter for name, parameter in module.named_parameters()})
    sizes = work.experiment.sizes
    weights = Weights.of(module, detach=False, kv_width=sizes.kv_width if sizes.grouped else None)
    leaves.update(table_leaves)
    trained = replace(inputs, query=query, key=key, value=value, module=module, weights=weights, _made={})
    return work.with_inputs(trained), leaves


def _input_leaves(experiment: Experiment, query: torch.Tensor, key: torch.Tensor,
                  value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Leaves]:
    """The layer's inputs as leaves: one for self attention (one tensor passed three times, as a user would)."""
    query = query.detach().clone().requires_grad_()
    if experiment.attention == "self":
        return query, query, query, {"d(query=key=value)": query}
    key, value = (x.detach().clone().requires_grad_() for x in (key, value))
    return query, key, value, {"d(query)": query, "d(key)": key, "d(value)": value}


def seeded_upstream(seed: int, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """The seeded dL/d(out): drawn in float64 from seed + 1 (the inputs take the seed itself), then cast."""
    generator = torch.Generator().manual_seed(seed + 1)
    return torch.randn(shape, dtype=torch.float64, generator=generator).to(device=device, dtype=dtype)


def upstream_gradient(experiment: Experiment, device: torch.device) -> torch.Tensor:
    """The seeded dL/d(out) in the run dtype, the same for every implementation: (N, H, L, d) for the
    core, (N, L, E) for the layer (batch first; implementations' outputs are read batch first)."""
    sizes = experiment.sizes
    if experiment.timing.scope == "core":
        shape = (sizes.batch_size, sizes.num_heads, sizes.seq_len, sizes.head_dim)
    else:
        shape = (sizes.batch_size, sizes.seq_len, sizes.embed_dim)
    return seeded_upstream(experiment.seed, shape, torch_dtype(experiment.dtype), device)


@dataclass(frozen=True)
class GradientReference:
    rows: torch.Tensor  # the query rows in the loss: checked and with an allowed key
    grads: dict[str, torch.Tensor]  # float64 on the CPU, by leaf name
    tolerance: Tolerance


def _dense_core(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor,
                modify: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    k, v = repeat_kv(k, q.shape[1]), repeat_kv(v, q.shape[1])  # the reference repeats grouped K/V explicitly
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if modify is not None:
        scores = modify(scores)
    scores = scores.masked_fill(~allowed, float("-inf"))
    return torch.softmax(scores, dim=-1).nan_to_num(0.0) @ v


def _full_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    """Grouped heads use the first H_kv * d rows of the module's key/value projections: the rest, zero here,
    get no gradient in the module either, so the two compare row for row."""
    if x.shape[0] == rows:
        return x
    return torch.cat([x, x.new_zeros((rows - x.shape[0], *x.shape[1:]))])


def _reference_parameters(weights: Weights, packed: bool) -> tuple[dict[str, torch.Tensor], Weights]:
    """Leaves laid out like nn.MultiheadAttention's parameters, and the Weights (views) over them."""
    e = weights.q_weight.shape[0]
    kv = weights.k_weight.shape[0]  # H_kv * d: E unless grouped
    parameters = {}
    k_full, v_full = _full_rows(weights.k_weight, e), _full_rows(weights.v_weight, e)
    if packed:
        parameters["in_proj_weight"] = torch.cat([weights.q_weight, k_full, v_full])
    else:
        parameters.update(q_proj_weight=weights.q_weight, k_proj_weight=k_full, v_proj_weight=v_full)
    if weights.q_bias is not None:
        parameters["in_proj_bias"] = torch.cat([weights.q_bias, _full_rows(weights.k_bias, e),  # type: ignore[arg-type]
                                                _full_rows(weights.v_bias, e)])  # type: ignore[arg-type]
    parameters["out_proj.weight"] = weights.out_weight
    if weights.out_bias is not None:
        parameters["out_proj.bias"] = weights.out_bias
    parameters = {name: tensor.detach().clone().requires_grad_() for name, tensor in parameters.items()}
    q_weight, k_weight, v_weight = (parameters["in_proj_weight"].split(e) if packed else
                                    (parameters["q_proj_weight"], parameters["k_proj_weight"], parameters["v_proj_weight"]))
    biases = parameters["in_proj_bias"].split(e) if "in_proj_bias" in parameters else (None, None, None)
    k_bias, v_bias = (b[:kv] if b is not None else None for b in biases[1:])
    return parameters, Weights(q_weight, k_weight[:kv], v_weight[:kv], parameters["out_proj.weight"], biases[0],
                               k_bias, v_bias, parameters.get("out_proj.bias"))


def _reference_grads(work: Workload, reference: Reference, rows: torch.Tensor,
                     upstream: torch.Tensor, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    experiment, inputs = work.experiment, work.inputs
    w, heads = inputs.master_weights.to(dtype), experiment.sizes.num_heads
    allowed = reference.allowed[:, :, torch.isin(reference.rows, rows)]
    masters = (inputs.master_query.to(dtype), inputs.master_key.to(dtype), inputs.master_value.to(dtype))
    # The score mod on the masters' numbers in this dtype; a learned table is a leaf like the weights.
    tables, table_leaves = _table_leaves(experiment.score_mod,
                                         {name: table.to(dtype) for name, table in inputs.master_mod_tables.items()})
    mod = work.prepared.applied_mod(tables)
    modify = (lambda scores: mod.apply(scores, rows)) if mod is not None else None
    if experiment.timing.scope == "core":
        q, k, v = (x.detach().requires_grad_() for x in project_heads(w, heads, *masters))
        out = _dense_core(q[:, :, rows], k, v, allowed, modify)
        loss = (out * upstream[:, :, rows].to(dtype)).sum()
        leaves = {"dq": q, "dk": k, "dv": v, **table_leaves}
        return dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values())), strict=True))
    query, key, value, leaves = _input_leaves(experiment, *masters)
    parameters, weights = _reference_parameters(w, packed=inputs.module._qkv_same_embed_dim)
    leaves.update({f"d({name})": tensor for name, tensor in parameters.items()})
    leaves.update(table_leaves)
    out = reference_attention(query[:, rows], key, value, weights, allowed, heads, modify=modify).output
    loss = (out * upstream[:, rows].to(dtype)).sum()
    return dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values())), strict=True))


def gradient_reference(work: Workload, reference: Reference, upstream: torch.Tensor) -> GradientReference:
    """Float64 gradients on the checked rows with an allowed key, and a tolerance sized like the forward's:
    the same math in the run dtype shows how far that dtype alone moves the gradients."""
    experiment = work.experiment
    defined = ~fully_masked_rows(reference.allowed).any(dim=0)  # (R,): a key in every item and head
    rows = reference.rows[defined]
    upstream = upstream.detach().cpu().double()
    exact = _reference_grads(work, reference, rows, upstream, torch.float64)
    gap = None
    if experiment.dtype != "float64":
        twin = _reference_grads(work, reference, rows, upstream, torch_dtype(experiment.dtype))
        gap = max(float((twin[name].double() - exact[name]).abs().max()) for name in exact if exact[name].numel())
    return GradientReference(rows, exact, Tolerance.for_dtype(experiment.dtype, gap))


def _loss(work: Workload, out: torch.Tensor, upstream: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    if work.experiment.timing.scope == "core":
        return (out[:, :, rows] * upstream[:, :, rows]).sum()
    return (work.inputs.as_batch_first(out)[:, rows] * upstream[:, rows]).sum()


def check_gradients(work: Workload, forward: Callable[[], object], leaves: Leaves,
                    upstream: torch.Tensor, expected: GradientReference) -> CheckResult:
    """The implementation's gradients for the same restricted loss, against float64, leaf by leaf.
    An output that does not require grad cannot be trained through: Unsupported (the row is skipped)."""
    experiment = work.experiment
    rows = expected.rows.to(upstream.device)
    out = forward().output  # type: ignore[attr-defined]
    if not out.requires_grad:
        raise Unsupported(f"its output does not require grad, so timing.pass: {experiment.timing.pass_} cannot train "
                          "through it (is it computed under no_grad, or detached?)")
    loss = _loss(work, out, upstream, rows)
    got = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    problems, poisoned, worst = [], [], 0.0
    for name, mine in zip(leaves, got, strict=True):
        theirs = expected.grads[name]
        if mine is None:  # no path from the output to this leaf: its gradient is zero
            mine = torch.zeros_like(theirs)
        else:
            mine = mine.detach().cpu().double()
            if name in INPUT_LEAVES and not experiment.batch_first:
                mine = mine.transpose(0, 1)  # the user's (L, N, E) layout -> batch first, as the reference
        if not torch.isfinite(mine).all():
            poisoned.append(name)
            continue
        error = (mine - theirs).abs()
        worst = max(worst, float(error.max()) if error.numel() else 0.0)
        bad = int((error > expected.tolerance.atol + expected.tolerance.rtol * theirs.abs()).sum())
        if bad:
            problems.append(f"{name}: max error {float(error.max()):.3g} exceeds the tolerance "
                            f"(atol {expected.tolerance.atol:.3g} + rtol {expected.tolerance.rtol:.3g}*|ref|) in {bad} elements")
    if poisoned:
        problems.insert(0, f"NaN/inf in the gradient of {', '.join(poisoned)} (a row without an allowed key that is "
                           "NaN in the forward poisons the backward, even with no loss on it)")
    return CheckResult(ok=not problems, max_abs_err=worst, undefined_rows=0, nan_undefined_rows=0, problems=tuple(problems))


def timed_pass(experiment: Experiment, forward: Callable[[], object], leaves: Leaves,
               upstream: torch.Tensor) -> Callable[[], object]:
    """What to time for the pass: the backward alone on a kept graph, or forward and backward."""
    tensors = list(leaves.values())
    # The upstream gradient in the output's own layout (the user's, for the layer).
    grad = upstream if experiment.timing.scope == "core" or experiment.batch_first else upstream.transpose(0, 1)
    if experiment.timing.pass_ == "backward":
        out = forward().output  # type: ignore[attr-defined]
        return lambda: torch.autograd.grad(out, tensors, grad, retain_graph=True, allow_unused=True)
    return lambda: torch.autograd.grad(forward().output, tensors, grad, allow_unused=True)  # type: ignore[attr-defined]
