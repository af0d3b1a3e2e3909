"""The backward pass of the layer, step by step (`mha explain --backward`): what autograd computes.

Each gradient is written out from the forward's tensors (the manual layer's steps) with a seeded
upstream gradient dY, in the order autograd runs them, and the result is checked against autograd
through the same manual layer: a student sees the formulas, and that they are the real ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .attention.manual import Steps, layer_steps
from .inputs import Weights, repeat_kv
from .training import seeded_upstream
from .workload import Workload


def backward_rows(work: Workload, steps: Steps) -> tuple[list[tuple], float]:
    """(step, formula, tensor, axes, note, params, flops) rows of the backward, and the largest
    difference between these gradients and autograd's on the same layer."""
    experiment, inputs = work.experiment, work.inputs
    sizes = experiment.sizes
    n, h, e, d = sizes.batch_size, sizes.num_heads, sizes.embed_dim, sizes.head_dim
    length, source = sizes.seq_len, sizes.source_len
    pairs = sizes.scores
    w = inputs.weights
    x_q, x_k, x_v = (inputs.as_batch_first(x) for x in (inputs.query, inputs.key, inputs.value))
    with torch.inference_mode():
        # dY, the loss's gradient with respect to the output (N, L, E), seeded as every training check's
        dy = seeded_upstream(experiment.seed, tuple(steps.output.shape), steps.output.dtype, steps.output.device)
        d_concat = dy @ w.out_weight  # (N, L, E)
        d_out_weight = torch.einsum("nle,nlf->ef", dy, steps.concat)
        d_heads = d_concat.view(n, length, h, d).transpose(1, 2)  # (N, H, L, d)
        p = steps.weights.nan_to_num(0.0)  # rows without an allowed key: no weights, no gradient
        # Grouped heads: each query head reads its key/value head (repeated here, to read as the formulas),
        # and a key/value head's gradient is the sum over the query heads that read it.
        k_heads, v_heads = repeat_kv(steps.k_heads, h), repeat_kv(steps.v_heads, h)
        d_v_heads = group_sum(p.transpose(-2, -1) @ d_heads, sizes.kv_heads)  # (N, H_kv, S, d)
        d_p = d_heads @ v_heads.transpose(-2, -1)  # (N, H, L, S)
        d_s = p * (d_p - (d_heads * steps.heads).sum(dim=-1, keepdim=True))  # softmax backward
    # A score mod: the gradient of the scores before it, dS' times its derivative (1 for a bias), elementwise.
    mod = work.score_mod
    d_raw = _through_mod(mod.apply, steps.scores, d_s) if mod is not None else d_s
    d_table = _table_gradient(work, steps.scores, d_s) if mod is not None and mod.mod.learned else None
    with torch.inference_mode():
        d_q_heads = d_raw @ k_heads / math.sqrt(d)
        d_k_heads = group_sum(d_raw.transpose(-2, -1) @ steps.q_heads / math.sqrt(d), sizes.kv_heads)
        d_q, d_k, d_v = (g.transpose(1, 2).flatten(2) for g in (d_q_heads, d_k_heads, d_v_heads))
        d_weights = [torch.einsum("nle,nlf->ef", g, x) for g, x in ((d_q, x_q), (d_k, x_k), (d_v, x_v))]
        d_inputs = [g @ weight for g, weight in ((d_q, w.q_weight), (d_k, w.k_weight), (d_v, w.v_weight))]
    error = _against_autograd(work, dy, [*d_inputs, *d_weights, d_out_weight])
    projections = 2 * n * (length * e * e + source * sizes.kv_width * (sizes.kdim + sizes.vdim))
    kv_axes = "N H_kv S d" if sizes.grouped else "N H S d"
    summed = f"; grouped: summed over the {sizes.group_size} query heads of each key/value head" if sizes.grouped else ""
    rows = [
        ("dY (upstream gradient)", "dL/dy, seeded", dy, "N L E", "what the loss says about each output value", 0, 0),
        ("output projection, backward", "dO = dY W_o;  dW_o = dY^T O;  db_o = sum dY", d_concat, "N L E",
         f"dW_o is E x E = {e} x {e}, summed over every (item, position)", 0, 2 * 2 * n * length * e * e),
        ("split into heads", "dO_h = dO.view(N, L, H, d).transpose(1, 2)", d_heads, "N H L d", "a view, as forward", 0, 0),
        ("dV", "dV_h = P^T dO_h", d_v_heads, kv_axes, "each value row collects the output gradients of the queries that read it"
         + summed, 0,
         2 * pairs * d),
        ("dP", "dP = dO_h V_h^T", d_p, "N H L S", "one L x S map per head again: why a textbook backward is quadratic in memory", 0,
         2 * pairs * d),
        ("softmax, backward", "dS = P * (dP - rowsum(dO_h * O_h))" if mod is None else
         "dS' = P * (dP - rowsum(dO_h * O_h))", d_s, "N H L S",
         "masked pairs have P = 0 and so dS = 0; rowsum(dO_h * O_h) is FlashAttention's D, no L x S needed for it", 0,
         3 * pairs + 2 * n * h * length * d),
        *([("score mod, backward", "dS = dS' * (dS'/dS)  (elementwise, S' = the modified scores)", d_raw, "N H L S",
            "a bias adds a term that does not depend on the score, so dS = dS'" if mod.is_bias else
            f"through {mod.name}: each score's gradient times the mod's derivative at that score", 0, pairs)]
          if mod is not None else []),
        *([("learned table, backward", "dB[h, t] = sum of dS' over the pairs that read entry t of head h", d_table,
            "H T", f"the gradient of the {mod.name} table (T = {d_table.shape[-1]} entries per head): each entry "
            "collects the score gradients of every pair whose clipped distance reads it", 0, pairs)]
          if d_table is not None else []),
        ("dQ, dK", "dQ_h = dS K_h / sqrt(d);  dK_h = dS^T Q_h / sqrt(d)", d_k_heads, kv_axes,
         f"dQ_h is {tuple(d_q_heads.shape)}; FlashAttention recomputes P from the saved log-sum-exp instead of keeping it"
         + summed, 0,
         4 * pairs * d),
        ("input projections, backward", "dx_q = dQ W_q;  dW_q = dQ^T x_q  (and k, v)", d_inputs[0], "N L E",
         "with self attention x_q = x_k = x_v, so their three gradients add up", 0, 2 * projections),
    ]
    return rows, error


def _table_gradient(work: Workload, scores: torch.Tensor, d_modified: torch.Tensor) -> torch.Tensor:
    """A learned score mod's table gradient: the vector-Jacobian product of the mod in its table at these scores."""
    mod = work.score_mod
    assert mod is not None
    with torch.enable_grad():
        tables = {name: table.detach().clone().requires_grad_() for name, table in mod.tables.items()}
        modified = mod.with_tables(tables).apply(scores.clone())
        (d_table,) = torch.autograd.grad(modified, list(tables.values()), d_modified.clone())
    return d_table


def _through_mod(modify: Callable[[torch.Tensor], torch.Tensor], scores: torch.Tensor,
                 d_modified: torch.Tensor) -> torch.Tensor:
    """The vector-Jacobian product of the score mod at these scores: dS from dS' (outside inference mode)."""
    with torch.enable_grad():
        leaf = scores.clone().requires_grad_()
        (d_scores,) = torch.autograd.grad(modify(leaf), leaf, d_modified.clone())
    return d_scores.nan_to_num(0.0)


def group_sum(per_query_head: torch.Tensor, kv_heads: int) -> torch.Tensor:
    """(N, H, S, d) gradients per query head -> (N, H_kv, S, d): each key/value head's, summed over its group."""
    n, h = per_query_head.shape[:2]
    return per_query_head.view(n, kv_heads, h // kv_heads, *per_query_head.shape[2:]).sum(dim=2)


def _against_autograd(work: Workload, dy: torch.Tensor, explicit: list[torch.Tensor]) -> float:
    """Largest |explicit - autograd| over dx_q, dx_k, dx_v, dW_q, dW_k, dW_v, dW_o (rows with a key)."""
    inputs = work.inputs
    x_q, x_k, x_v = (inputs.as_batch_first(x).detach().clone().requires_grad_() for x in (inputs.query, inputs.key, inputs.value))
    weights = Weights(**{f: (t.detach().clone().requires_grad_() if t is not None else None)
                         for f, t in vars(inputs.weights).items()})
    blocked = ~work.mask.dense()
    mod = work.score_mod
    output = layer_steps(x_q, x_k, x_v, weights, work.experiment.sizes.num_heads, blocked,
                         modify=mod.apply if mod is not None else None).output
    leaves = [x_q, x_k, x_v, weights.q_weight, weights.k_weight, weights.v_weight, weights.out_weight]
    grads = torch.autograd.grad(output, leaves, dy.clone())
    finite = [(a, b) for a, b in zip(explicit, grads, strict=True) if torch.isfinite(b).all()]
    return max((float((a.double() - b.double()).abs().max()) for a, b in finite), default=float("nan"))

