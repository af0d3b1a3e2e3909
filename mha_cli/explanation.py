"""`mha explain`: the manual implementation's steps on the user's own config, with shapes and notes.

Each step is computed (not described from memory): the shapes are read off
the tensors `attention.manual.layer_steps` returns, the parameter and FLOP
counts come from the sizes, and the result is compared with
nn.MultiheadAttention on the same weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import torch

from .arguments import ArgumentValueError, check_flag, check_memory_limit
from .attention import builtin
from .attention.manual import Steps, layer_steps
from .attention.reference import reference_attention
from .experiment import Experiment, resolve
from .inputs import make_inputs, resolve_device, ungrouped_module
from .masks import fully_masked_rows
from .memory import check_fits, resolve_memory_limit
from .prepared import Prepared
from .results import SCHEMA_VERSION
from .shapes import named_axes
from .workload import Workload, make_workload

if TYPE_CHECKING:
    from .config import Config


@dataclass(frozen=True)
class Step:
    step: str
    formula: str
    shape: list[int]
    axes: str  # e.g. "(N=5, H=2, L=10, S=10)"
    note: str
    params: int  # learned parameters this step uses
    flops: int  # floating-point operations it computes (masked pairs included: the manual layer computes them)


@dataclass(frozen=True)
class Explanation:
    """The steps of the layer on one config (what explain returns), their totals, and the check of the
    manual steps against nn.MultiheadAttention on the same weights."""

    steps: list[Step]
    max_abs_err_output: float  # manual against nn.MultiheadAttention, same weights
    max_abs_err_weights: float | None
    fully_masked_rows: int
    dtype: str
    backward: list[Step] = field(default_factory=list)  # `--backward`: the gradients, step by step
    checked_against: str = "nn.MultiheadAttention on the same weights"
    max_abs_err_backward: float | None = None  # those gradients against autograd through the same layer

    @property
    def total_params(self) -> int:
        return sum(step.params for step in self.steps)

    @property
    def total_flops(self) -> int:
        """FLOPs of one forward as computed: masked pairs included (the dense layer computes them)."""
        return sum(step.flops for step in self.steps)

    def to_dict(self) -> dict[str, Any]:
        """What `mha explain --json` prints: the steps, their totals, and the check against nn.MultiheadAttention."""
        return {
            "schema_version": SCHEMA_VERSION,
            "steps": [asdict(s) for s in self.steps],
            "totals": {"params": self.total_params, "flops": self.total_flops,
                       **({"backward_flops": sum(s.flops for s in self.backward)} if self.backward else {})},
            **({"backward_steps": [asdict(s) for s in self.backward]} if self.backward else {}),
            "check": {
                "against": self.checked_against,
                "dtype": self.dtype,
                "max_abs_err_output": self.max_abs_err_output,
                "max_abs_err_weights": self.max_abs_err_weights,
                "fully_masked_rows": self.fully_masked_rows,
                **({"max_abs_err_backward": self.max_abs_err_backward} if self.backward else {}),
            },
        }


def workload_for(experiment: Experiment, memory_limit: int | None, together: tuple[str, ...]) -> Workload:
    """Inputs and weights for the dense walk-through, once the memory guard agrees that `together` fit."""
    check_fits(experiment, *resolve_memory_limit(memory_limit), together=together)
    prepared = Prepared(experiment)
    return make_workload(prepared, make_inputs(experiment, resolve_device(experiment.device)))


def run_steps(work: Workload) -> Steps:
    inputs = work.inputs
    blocked = ~work.mask.dense()  # (N, 1 or H, L, S)
    x_q, x_k, x_v = (inputs.as_batch_first(x) for x in (inputs.query, inputs.key, inputs.value))
    experiment = work.experiment
    # Decoding: the cache's keys and values as filled before any call (the new tokens' slots come from the step).
    cached = tuple(c[:, :, : experiment.cache_len] for c in inputs.cache) if inputs.cache is not None else None
    mod = work.score_mod
    with torch.inference_mode():
        return layer_steps(x_q, x_k, x_v, inputs.weights, experiment.sizes.num_heads, blocked, cached,  # type: ignore[arg-type]
                           modify=mod.apply if mod is not None else None)


def _weights_note(experiment: Experiment) -> str:
    if experiment.decoding:
        return (f"each new token's row sums to 1 over all S keys: the {experiment.cache_len} cached, then the new "
                "tokens'; a decode step returns no weights (need_weights: false)")
    returned = (
        "nothing (need_weights: false lets it use a fused kernel)"
        if not experiment.need_weights
        else "these averaged over the heads, (N, L, S)"
        if experiment.average_attn_weights
        else "these per head, (N, H, L, S)"
    )
    return (
        f"each row sums to 1 over the keys. nn.MultiheadAttention returns {returned}; "
        "average_attn_weights: false gives one map per head (N, H, L, S), true their mean (N, L, S)"
    )


def _mask_note(allowed: torch.Tensor) -> str:
    blocked = int((~allowed).sum())
    total = allowed.numel()
    empty = int(fully_masked_rows(allowed).sum())
    parts = [
        f"{blocked:,} of {total:,} (query, key) pairs are masked (set to -inf before the softmax)"
        if blocked
        else "no pair is masked in this config (variant full, no causal mask, no padding)",
        "polarity: here and in F.scaled_dot_product_attention a bool mask's True means MAY attend; "
        "nn.MultiheadAttention's attn_mask and key_padding_mask use True for must NOT attend",
    ]
    if empty:
        parts.append(f"{empty} query rows have no allowed key: the softmax of only -inf is NaN there")
    return "; ".join(parts)


def _forward_steps(experiment: Experiment, steps: Steps, allowed: torch.Tensor) -> list[Step]:
    """One Step per line of the manual layer, with its formula, named axes, parameters and FLOPs."""
    sizes = experiment.sizes
    n, h, e, d = sizes.batch_size, sizes.num_heads, sizes.embed_dim, sizes.head_dim
    length, source, kdim, vdim = sizes.seq_len, sizes.source_len, sizes.kdim, sizes.vdim
    bias = 1 if experiment.bias else 0
    pairs = sizes.scores
    layout = "(L, N, E) inputs are transposed to batch first, (N, L, E)" if not experiment.batch_first else "inputs are batch first already"
    packed = (
        "nn.MultiheadAttention keeps W_q, W_k, W_v stacked in one in_proj_weight (3E x E)"
        if kdim == e and vdim == e
        else f"kdim={kdim} / vdim={vdim} differ from E, so nn.MultiheadAttention keeps q_proj_weight, k_proj_weight, v_proj_weight"
    )
    kv, grouped = sizes.kv_width, sizes.grouped
    kv_note = f"; K and V are {kv} wide (H_kv * d = {sizes.kv_heads} * {d}): the first {kv} rows of W_k, W_v" if grouped else ""
    projected = length if experiment.decoding else source  # decoding projects the new tokens only
    rows_note = (f"K and V of the {length} new tokens, appended to the {experiment.cache_len} cached (S={source})"
                 if experiment.decoding else f"K and V have S={source} rows")
    rows = [
        ("input projections", "Q = x W_q^T + b_q,  K = x_k W_k^T + b_k,  V = x_v W_v^T + b_v", steps.q, "N L E",
         f"{layout}; {packed}; {rows_note}{kv_note}", e * e + kv * (kdim + vdim) + (e + 2 * kv) * bias,
         2 * n * (length * e * e + projected * kv * (kdim + vdim))),
        ("split into heads", "Q.view(N, L, H, d).transpose(1, 2)", steps.q_heads, "N H L d",
         f"d = E / H = {e} / {h} = {d}; a view, nothing is copied; K and V likewise: {tuple(steps.k_heads.shape)}", 0, 0),
        *([("group query heads", "head h reads K[h // G], V[h // G],  G = H / H_kv", steps.k_heads, "N H_kv S d",
            f"grouped-query attention: G = {h} / {sizes.kv_heads} = {sizes.group_size} query heads share each key/value "
            f"head: a group's query rows are stacked against it (K and V are not copied); K and V, and a KV cache, "
            f"are {sizes.group_size}x smaller"
            + (" (multi-query: one K/V head)" if sizes.kv_heads == 1 else ""), 0, 0)] if grouped else []),
        ("scores", "S = Q K^T / sqrt(d)", steps.scores, "N H L S",
         f"one L x S map per head; dividing by sqrt(d) = {d ** 0.5:.3g} keeps the scores' spread independent of d", 0, 2 * pairs * d),
        *([_mod_row(experiment, steps)] if experiment.score_mod is not None else []),
        ("mask applied", "S[~allowed] = -inf" if experiment.score_mod is None else "S'[~allowed] = -inf", steps.masked,
         "N H L S", _mask_note(allowed), 0, 0),
        ("softmax", "P = softmax(S, over keys)" if experiment.score_mod is None else "P = softmax(S', over keys)",
         steps.weights, "N H L S", _weights_note(experiment), 0, 5 * pairs),
        ("weighted sum", "O_h = P V", steps.heads, "N H L d", "each query row mixes the value rows by its weights", 0, 2 * pairs * d),
        ("concatenate heads", "O = O_h.transpose(1, 2).reshape(N, L, E)", steps.concat, "N L E",
         "the heads side by side again; a copy (transpose makes the tensor non-contiguous)", 0, 0),
        ("output projection", "y = O W_o^T + b_o", steps.output, "N L E",
         "returned in the query's layout: " + ("(N, L, E)" if experiment.batch_first else "(L, N, E), transposed back"),
         e * e + e * bias, 2 * n * length * e * e),
    ]
    return [_step(*row) for row in rows]


def _mod_row(experiment: Experiment, steps: Steps) -> tuple:
    """The score mod as its own step: what it does, where, and which implementations apply it how."""
    mod = experiment.score_mod
    assert mod is not None
    where = ("a bias: manual, flex and the float64 reference add it to the scores; sdpa gets it as an additive float "
             "mask (N or 1, H, L, S) with -inf where masked, nn.MultiheadAttention as its float attn_mask (N*H, L, S); "
             "blocked builds it per piece from positions (no L x S)" if mod.is_bias else
             "not a bias: only manual, flex and the float64 reference can apply a function of the scores; sdpa, "
             "nn.MultiheadAttention and blocked are skipped saying so")
    offset = experiment.mask.query_offset
    position = f"; query i sits at key position i + {offset}" if offset else ""
    return ("score mod", mod.FORMULA, steps.modified, "N H L S",
            f"{mod.words()}; on every (query, key) score before the mask, masked pairs included{position}; {where}",
            _mod_params(experiment),
            mod.FLOPS_PER_SCORE * experiment.sizes.scores)


def _mod_params(experiment: Experiment) -> int:
    """The learned numbers of a score mod (a learned relative bias's table), 0 for fixed ones."""
    mod = experiment.score_mod
    if mod is None or not mod.learned:
        return 0
    return sum(table.numel() for table in mod.tables(torch.float64).values())


def _step(name: str, formula: str, tensor: torch.Tensor, axes: str, note: str, params: int, flops: int) -> Step:
    return Step(name, formula, list(tensor.shape), named_axes(tensor.shape, axes), note, params, flops)


def explain(config: Config, *, memory_limit: int | None = None, backward: bool = False) -> Explanation:
    """Every step of the layer on `config`, computed by the manual implementation and checked
    against nn.MultiheadAttention on the same weights (what `mha explain` prints). With backward=True,
    the gradient steps too, written out and checked against autograd (`mha explain --backward`).
    A wrong argument is a TypeError or ValueError naming the parameter.

    Example:

        >>> from mha_cli import explain, load_config
        >>> steps = explain(load_config()).steps
        >>> [(s.step, s.axes) for s in steps][2]
        ('scores', '(N=5, H=2, L=10, S=10)')
    """
    from .config import check_config  # the only use of the config module here: the rest reads the Experiment

    check_config(config)
    check_flag("backward", backward)
    memory_limit = check_memory_limit(memory_limit)
    experiment = resolve(config)
    if backward and experiment.decoding:
        raise ArgumentValueError("backward: the gradients are a training step's, and a decode step is inference; "
                                 "explain it without backward (--backward on the command line)")
    # The manual layer and nn.MultiheadAttention are alive together, beside the reference-sized inputs.
    work = workload_for(experiment, memory_limit, together=("manual", "torch"))
    steps = run_steps(work)
    allowed = work.mask.dense()
    # nn.MultiheadAttention asked for every head's weights, to compare them with the manual layer's.
    per_head = experiment._replace(need_weights=True, average_attn_weights=False)
    # Grouped heads: nn.MultiheadAttention has none, so it runs with each key/value head's weights
    # repeated for its query heads, the same layer written as plain multi-head attention.
    mod = experiment.score_mod
    # nn.MultiheadAttention has no cache, and applies no function of the scores: then the float64 reference is
    # the yardstick.
    beyond_torch = experiment.decoding or (mod is not None and not mod.is_bias)
    if beyond_torch:
        inputs = work.inputs
        master_mod = work.prepared.applied_mod(inputs.master_mod_tables)
        reference = reference_attention(inputs.master_query, inputs.master_key, inputs.master_value,
                                        inputs.master_weights, allowed.cpu(), experiment.sizes.num_heads, inputs.cached(),
                                        master_mod.apply if master_mod is not None else None)
        expected_output, expected_weights = reference.output, reference.weights
    else:
        yardstick = replace(work.inputs, module=ungrouped_module(work.inputs.module, experiment.sizes))
        with torch.inference_mode():
            torch_out = builtin("torch").module.build(replace(work, experiment=per_head, inputs=yardstick))()
        expected_output, expected_weights = work.inputs.as_batch_first(torch_out.output), torch_out.weights
    defined = ~fully_masked_rows(allowed)  # (N, L): compare only rows with an allowed key
    diff_out = (steps.output.double() - expected_output.double()).abs()  # (N, L, E)
    diff_weights = (steps.weights.double() - expected_weights.double()).abs().transpose(1, 2)  # (N, L, H, S)
    backward_steps, backward_error = [], None
    if backward:
        from .backward_steps import backward_rows

        computed, backward_error = backward_rows(work, steps)
        backward_steps = [_step(*row) for row in computed]
    return Explanation(
        steps=_forward_steps(experiment, steps, allowed),
        max_abs_err_output=float(diff_out[defined].max()) if defined.any() else 0.0,
        max_abs_err_weights=float(diff_weights[defined].max()) if defined.any() else 0.0,
        fully_masked_rows=int((~defined).sum()),
        dtype=experiment.dtype,
        backward=backward_steps,
        max_abs_err_backward=backward_error,
        checked_against="the float64 reference (nn.MultiheadAttention has no KV cache)" if experiment.decoding
        else f"the float64 reference (nn.MultiheadAttention cannot apply score_mod {mod.NAME})" if beyond_torch and mod
        else "nn.MultiheadAttention on the same weights",
    )


def weights_to_draw(
    experiment: Experiment, batch: int, heads: list[int], *, memory_limit: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The attention weights of the chosen heads for one batch item, (h, L, S) float on the CPU,
    and those heads' allowed pairs (h, L, S): what `mha plot weights` draws."""
    work = workload_for(experiment, memory_limit, together=("manual",))  # every head's (N, H, L, S) weights
    steps = run_steps(work)
    allowed = work.mask.dense()[batch].expand(experiment.sizes.num_heads, -1, -1)[heads]
    return steps.weights[batch, heads].float().cpu(), allowed.cpu()
