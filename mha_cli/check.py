"""Agreement with the float64 reference.

Tolerance (see docs/results.md, "How results are checked"): the reference math is also
run in the test dtype; the error that costs, times 5, is the absolute
tolerance (never below the fixed per-dtype floor), plus a relative term:
    |out - ref64| <= max(atol_dtype, 5 * max|ref64 - ref_dtype|) + rtol_dtype * |ref64|
Query rows with no allowed key are undefined: NaN there is expected, any value
is accepted, and they are counted apart. NaN anywhere else fails.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .attention import AttentionOutput
from .attention.reference import ReferenceSteps, reference_attention
from .dtypes import torch_dtype
from .experiment import Experiment
from .masks import fully_masked_rows
from .memory import reference_row_count
from .workload import Workload

# (atol, rtol) floors per dtype; torch.testing's defaults are too tight for bf16/fp16.
FIXED_TOLERANCES: dict[str, tuple[float, float]] = {
    "float64": (1e-7, 1e-7),
    "float32": (1e-5, 5e-6),
    "bfloat16": (5e-2, 5e-2),
    "float16": (1e-2, 1e-2),
}
ADAPTIVE_FACTOR = 5.0


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float
    dtype_error: float | None  # max|ref64 - ref in the test dtype|, None if unknown

    @classmethod
    def for_dtype(cls, dtype: str, dtype_error: float | None) -> Tolerance:
        atol, rtol = FIXED_TOLERANCES[dtype]
        if dtype_error is not None and math.isfinite(dtype_error):
            atol = max(atol, ADAPTIVE_FACTOR * dtype_error)
        return cls(atol=atol, rtol=rtol, dtype_error=dtype_error)


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    max_abs_err: float | None  # over defined rows; None when nothing was comparable
    undefined_rows: int  # query rows with no allowed key
    nan_undefined_rows: int  # of those, how many this implementation filled with NaN
    problems: tuple[str, ...]  # why it failed, empty when ok

    def describe(self) -> str:
        parts = list(self.problems)
        if self.undefined_rows:
            parts.append(
                f"{self.undefined_rows} query rows have no allowed key: NaN in "
                f"{self.nan_undefined_rows}, finite values in {self.undefined_rows - self.nan_undefined_rows}"
            )
        return "; ".join(parts)


def rows_first(tensor: torch.Tensor, per_head: bool) -> torch.Tensor:
    """(N, H, L, S) -> (N, L, H, S), so that dims 0 and 1 are always (batch, query row)."""
    return tensor.transpose(1, 2) if per_head else tensor


def compare_tensors(
    what: str,
    got: torch.Tensor,  # (N, L, ...) any dtype/device
    expected: torch.Tensor,  # (N, L, ...) float64 CPU, NaN on undefined rows
    undefined: torch.Tensor,  # (N, L) bool: rows with no allowed key
    tolerance: Tolerance,
) -> CheckResult:
    if tuple(got.shape) != tuple(expected.shape):
        return CheckResult(False, None, 0, 0, (f"{what} shape {tuple(got.shape)} != reference {tuple(expected.shape)}",))
    got = got.detach().to(device="cpu", dtype=torch.float64)
    defined = ~undefined
    bad_rows = (~torch.isfinite(got)).flatten(2).any(dim=-1)  # (N, L)
    problems = []
    unexpected = int((bad_rows & defined).sum())
    if unexpected:
        problems.append(f"{what}: NaN/inf in {unexpected} query rows that do have allowed keys")
    got_defined, expected_defined = got[defined], expected[defined]
    max_abs_err = None
    if got_defined.numel():
        error = (got_defined - expected_defined).abs()
        # Non-finite values were reported above; the error figure is over the finite ones.
        finite = torch.isfinite(error)
        max_abs_err = float(error[finite].max()) if bool(finite.any()) else None
        within = (error <= tolerance.atol + tolerance.rtol * expected_defined.abs()) | ~finite
        if not bool(within.all()):
            problems.append(
                f"{what}: max error {max_abs_err:.3g} exceeds the tolerance "
                f"(atol {tolerance.atol:.3g} + rtol {tolerance.rtol:.3g}*|ref|) in {int((~within).sum())} elements"
            )
    return CheckResult(
        ok=not problems,
        max_abs_err=max_abs_err,
        undefined_rows=int(undefined.sum()),
        nan_undefined_rows=int((got[undefined].isnan().flatten(1).any(dim=-1)).sum()) if undefined.any() else 0,
        problems=tuple(problems),
    )


def combine_checks(first: CheckResult, *others: CheckResult) -> CheckResult:
    """One verdict for several compared tensors (output, then weights)."""
    errors = [c.max_abs_err for c in (first, *others) if c.max_abs_err is not None]
    return CheckResult(
        ok=all(c.ok for c in (first, *others)),
        max_abs_err=max(errors) if errors else None,
        undefined_rows=first.undefined_rows,
        nan_undefined_rows=first.nan_undefined_rows,
        problems=tuple(p for c in (first, *others) for p in c.problems),
    )


# --------------------------------------------------------------------------- the float64 reference


@dataclass(frozen=True)
class Reference:
    """The float64 answer on the query rows that are checked."""

    steps: ReferenceSteps
    rows: torch.Tensor  # (R,) query rows
    allowed: torch.Tensor  # (N, 1 or H, R, S) the mask on those rows
    tolerance: Tolerance

    @property
    def undefined(self) -> torch.Tensor:
        return fully_masked_rows(self.allowed)


def checked_rows(experiment: Experiment) -> torch.Tensor:
    """Every query row, or evenly spread rows (first and last included) when L x S is too big for float64."""
    count, length = reference_row_count(experiment), experiment.sizes.seq_len
    if count >= length:
        return torch.arange(length)
    return torch.linspace(0, length - 1, count).round().long().unique()


def run_reference(work: Workload, rows: torch.Tensor | None = None) -> Reference:
    """The float64 oracle, and the same math in the test dtype to size the tolerance."""
    experiment, inputs = work.experiment, work.inputs
    rows = checked_rows(experiment) if rows is None else rows
    allowed = work.prepared.allowed_rows(rows)
    core = experiment.timing.scope == "core"

    def in_dtype(dtype: torch.dtype) -> ReferenceSteps:
        cached = inputs.cached()
        mod = work.prepared.applied_mod({name: table.to(dtype) for name, table in inputs.master_mod_tables.items()})
        return reference_attention(
            inputs.master_query[:, rows].to(dtype),
            inputs.master_key.to(dtype),
            inputs.master_value.to(dtype),
            inputs.master_weights.to(dtype),
            allowed,
            experiment.sizes.num_heads,
            cached,  # type: ignore[arg-type]
            (lambda scores: mod.apply(scores, rows)) if mod is not None else None,
        )

    reference = in_dtype(torch.float64)
    dtype_error = None
    if experiment.dtype != "float64":
        twin = in_dtype(torch_dtype(experiment.dtype))
        mine, theirs = (twin.heads, reference.heads) if core else (twin.output, reference.output)
        defined = ~fully_masked_rows(allowed)
        gap = (rows_first(mine.double(), core) - rows_first(theirs, core))[defined].abs()
        dtype_error = float(gap.max()) if gap.numel() else None
    return Reference(reference, rows, allowed, Tolerance.for_dtype(experiment.dtype, dtype_error))


def check_against_reference(experiment: Experiment, got: AttentionOutput, reference: Reference) -> CheckResult:
    """Compare an implementation's output (and weights, when it returns them) with the reference rows."""
    rows, undefined, tolerance = reference.rows.to(got.output.device), reference.undefined, reference.tolerance
    if experiment.timing.scope == "core":  # (N, H, L, d) against the reference's heads
        return compare_tensors("core output", rows_first(got.output[:, :, rows], True), rows_first(reference.steps.heads, True), undefined, tolerance)
    output = got.output if experiment.batch_first else got.output.transpose(0, 1)
    result = compare_tensors("output", output[:, rows], reference.steps.output, undefined, tolerance)
    if got.weights is None:
        return result
    per_head = not experiment.average_attn_weights
    weights = got.weights[:, :, rows] if per_head else got.weights[:, rows]
    expected = rows_first(reference.steps.returned_weights(experiment.average_attn_weights), per_head)
    return combine_checks(result, compare_tensors("weights", rows_first(weights, per_head), expected, undefined, tolerance))
