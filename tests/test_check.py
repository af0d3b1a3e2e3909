"""The checker must catch real mistakes, above all an inverted mask."""

import pytest
import torch
import torch.nn.functional as F

from mha_cli.attention.reference import reference_attention
from mha_cli.check import (
    FIXED_TOLERANCES,
    Tolerance,
    check_against_reference,
    compare_tensors,
    run_reference,
)
from mha_cli.masks import causal_allowed, fully_masked_rows

from .helpers import allowed_mask, call, small_config, workload


def _reference(config, inputs):
    return reference_attention(
        inputs.master_query, inputs.master_key, inputs.master_value,
        inputs.master_weights, allowed_mask(config), config.num_heads,
    )


def test_inverted_mask_fails_the_check() -> None:
    config = small_config(seq_len=6, mask={"causal": True})
    inputs = workload(config).inputs
    reference = _reference(config, inputs)
    undefined = fully_masked_rows(allowed_mask(config))
    tolerance = Tolerance.for_dtype("float32", None)
    allowed = causal_allowed(6, 6)
    with torch.inference_mode():
        right, _ = inputs.module(inputs.query, inputs.key, inputs.value, attn_mask=~allowed)
        # The classic bug: SDPA's polarity (True = allowed) handed to nn.MultiheadAttention.
        wrong, _ = inputs.module(inputs.query, inputs.key, inputs.value, attn_mask=allowed)
    assert compare_tensors("output", right.transpose(0, 1), reference.output, undefined, tolerance).ok
    verdict = compare_tensors("output", wrong.transpose(0, 1), reference.output, undefined, tolerance)
    assert not verdict.ok and verdict.problems


def test_inverted_sdpa_mask_fails_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """sdpa.py built as a run builds it and the reference check: right polarity passes, the inverted one fails."""
    config = small_config(seq_len=6, mask={"key_padding": {"lengths": [3, 6]}}, impls=["sdpa"])
    work = workload(config)
    reference = run_reference(work)
    with torch.inference_mode():
        assert check_against_reference(work.experiment, call("sdpa", work), reference).ok
    real_sdpa = F.scaled_dot_product_attention

    def inverted(q, k, v, attn_mask=None, **kwargs):  # type: ignore[no-untyped-def]
        # The classic bug: nn.MultiheadAttention's polarity (True = NOT allowed) handed to SDPA.
        return real_sdpa(q, k, v, attn_mask=None if attn_mask is None else ~attn_mask, **kwargs)

    monkeypatch.setattr("mha_cli.attention.sdpa.F.scaled_dot_product_attention", inverted)
    with torch.inference_mode():
        verdict = check_against_reference(work.experiment, call("sdpa", work), reference)
    assert not verdict.ok and verdict.problems


def test_undefined_rows_are_compared_apart() -> None:
    expected = torch.tensor([[[1.0, 2.0], [float("nan"), float("nan")]]], dtype=torch.float64)
    undefined = torch.tensor([[False, True]])
    tolerance = Tolerance.for_dtype("float32", None)
    # NaN or zeros in the undefined row are both accepted, and counted.
    nan_there = compare_tensors("output", expected.clone(), expected, undefined, tolerance)
    zeros_there = compare_tensors("output", torch.tensor([[[1.0, 2.0], [0.0, 0.0]]]), expected, undefined, tolerance)
    assert nan_there.ok and nan_there.nan_undefined_rows == 1 and nan_there.undefined_rows == 1
    assert zeros_there.ok and zeros_there.nan_undefined_rows == 0
    assert "no allowed key" in zeros_there.describe()


def test_nan_in_a_defined_row_fails() -> None:
    expected = torch.zeros(1, 2, 2, dtype=torch.float64)
    got = expected.clone()
    got[0, 0, 1] = float("nan")
    verdict = compare_tensors("output", got, expected, torch.zeros(1, 2, dtype=torch.bool), Tolerance.for_dtype("float32", None))
    assert not verdict.ok and "NaN" in verdict.problems[0]


def test_shape_mismatch_fails() -> None:
    verdict = compare_tensors("weights", torch.zeros(1, 2, 3), torch.zeros(1, 2, 4, dtype=torch.float64),
                      torch.zeros(1, 2, dtype=torch.bool), Tolerance.for_dtype("float32", None))
    assert not verdict.ok and "shape" in verdict.problems[0]


def test_adaptive_tolerance_grows_with_the_dtype_error_but_not_below_the_floor() -> None:
    assert Tolerance.for_dtype("float32", 1e-9).atol == FIXED_TOLERANCES["float32"][0]
    assert Tolerance.for_dtype("bfloat16", 0.02).atol == 0.1
    assert Tolerance.for_dtype("float16", None).atol == FIXED_TOLERANCES["float16"][0]


def test_small_error_passes_and_large_error_fails() -> None:
    expected = torch.ones(1, 1, 4, dtype=torch.float64)
    tolerance = Tolerance.for_dtype("float32", None)
    undefined = torch.zeros(1, 1, dtype=torch.bool)
    assert compare_tensors("o", expected + 1e-6, expected, undefined, tolerance).ok
    assert not compare_tensors("o", expected + 1e-3, expected, undefined, tolerance).ok
