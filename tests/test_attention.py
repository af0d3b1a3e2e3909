"""Every implementation computes the same layer as the float64 reference.

Hypothesis draws the shapes (L = 1 and S != L included), the layout and the
masks; each example builds one set of weights and checks every implementation.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mha_cli.attention import IMPLS, get_impl
from mha_cli.config import Config
from mha_cli.errors import UsageError
from mha_cli.inputs import make_inputs
from mha_cli.runner import check_against_reference, run_reference

from .helpers import FAST_TIMING

CPU = torch.device("cpu")
PROPERTY_SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def configs(draw: st.DrawFn) -> Config:
    heads = draw(st.sampled_from([1, 2, 4]))
    embed_dim = heads * draw(st.sampled_from([1, 4, 8]))
    batch = draw(st.integers(1, 3))
    length = draw(st.integers(1, 9))
    cross = draw(st.booleans())
    source = draw(st.integers(1, 9)) if cross else length
    fields: dict = {
        "embed_dim": embed_dim,
        "num_heads": heads,
        "batch_size": batch,
        "seq_len": length,
        "attention": "cross" if cross else "self",
        "batch_first": draw(st.booleans()),
        "bias": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**16)),
        "need_weights": draw(st.booleans()),
        "average_attn_weights": draw(st.booleans()),
        "timing": FAST_TIMING,
    }
    if cross:
        fields["source_len"] = source
        fields["kdim"] = draw(st.sampled_from([None, 3, 7]))
        fields["vdim"] = draw(st.sampled_from([None, 5]))
    mask: dict = {"causal": draw(st.booleans())}
    if draw(st.booleans()):
        # At least one valid key per batch item: every query row keeps an allowed key.
        mask["key_padding"] = {"lengths": draw(st.lists(st.integers(1, source), min_size=batch, max_size=batch))}
    fields["mask"] = mask
    return Config.model_validate(fields)


EDGE_SHAPES = [
    # L = 1 (a single query), S != L both ways, one head and one batch item.
    {"embed_dim": 8, "num_heads": 2, "batch_size": 1, "seq_len": 1},
    {"embed_dim": 8, "num_heads": 1, "batch_size": 2, "seq_len": 1, "attention": "cross", "source_len": 6},
    {"embed_dim": 12, "num_heads": 3, "batch_size": 2, "seq_len": 7, "attention": "cross", "source_len": 2,
     "mask": {"causal": True, "key_padding": {"lengths": [1, 2]}}},
]


@PROPERTY_SETTINGS
@given(config=configs())
@example(config=Config.model_validate({**EDGE_SHAPES[0], "timing": FAST_TIMING}))
@example(config=Config.model_validate({**EDGE_SHAPES[1], "timing": FAST_TIMING}))
@example(config=Config.model_validate({**EDGE_SHAPES[2], "timing": FAST_TIMING}))
def test_every_implementation_agrees_with_the_reference(config: Config) -> None:
    inputs = make_inputs(config, CPU)
    reference, tolerance = run_reference(config, inputs)
    with torch.inference_mode():
        for name in IMPLS:
            got = get_impl(name)(inputs, config)()
            verdict = check_against_reference(config, got, reference, inputs.master_allowed, tolerance)
            assert verdict.ok, (name, verdict.problems)


@PROPERTY_SETTINGS
@given(config=configs())
def test_averaged_weights_rows_sum_to_one(config: Config) -> None:
    config = config.model_copy(update={"need_weights": True, "average_attn_weights": True})
    inputs = make_inputs(config, CPU)
    with torch.inference_mode():
        for name in ("torch", "manual"):
            weights = get_impl(name)(inputs, config)().weights
            assert weights.shape == (config.batch_size, config.seq_len, config.source_length)
            torch.testing.assert_close(weights.sum(-1), torch.ones(config.batch_size, config.seq_len))


@st.composite
def permuted_cases(draw: st.DrawFn) -> tuple[Config, torch.Tensor, list[int]]:
    config = draw(configs()).model_copy(update={"mask": Config().mask, "need_weights": False})
    n, length, source = config.batch_size, config.seq_len, config.source_length
    bits = draw(st.lists(st.booleans(), min_size=n * length * source, max_size=n * length * source))
    allowed = torch.tensor(bits, dtype=torch.bool).reshape(n, length, source)
    allowed[..., draw(st.integers(0, source - 1))] = True  # every row keeps one allowed key
    permutation = draw(st.permutations(list(range(source))))
    return config, allowed, permutation


def _outputs(config: Config, inputs, allowed: torch.Tensor) -> dict[str, torch.Tensor]:
    """Reference, manual and sdpa read an arbitrary mask; nn.MultiheadAttention gets it per head."""
    inputs = replace(inputs, allowed=allowed, master_allowed=allowed)
    outputs = {"reference": run_reference(config, inputs)[0].output}
    with torch.inference_mode():
        for name in ("manual", "sdpa"):
            out = get_impl(name)(inputs, config)().output
            outputs[name] = (out if config.batch_first else out.transpose(0, 1)).double()
        blocked = (~allowed).repeat_interleave(config.num_heads, dim=0)  # (N*H, L, S), True = not allowed
        out, _ = inputs.module(inputs.query, inputs.key, inputs.value, attn_mask=blocked, need_weights=False)
        outputs["torch"] = (out if config.batch_first else out.transpose(0, 1)).double()
    return outputs


@PROPERTY_SETTINGS
@given(case=permuted_cases())
def test_permuting_keys_values_and_mask_columns_together_changes_nothing(case) -> None:
    config, allowed, permutation = case
    inputs = make_inputs(config, CPU)
    order = torch.tensor(permutation)
    source_axis = 1 if config.batch_first else 0
    permuted = replace(
        inputs,
        key=inputs.key.index_select(source_axis, order),
        value=inputs.value.index_select(source_axis, order),
        master_key=inputs.master_key[:, order],
        master_value=inputs.master_value[:, order],
    )
    if config.attention == "self":
        # Self attention reuses the query as key/value; permute them as a cross-style call instead.
        config = config.model_copy(update={"attention": "cross"})
    before = _outputs(config, inputs, allowed)
    after = _outputs(config, permuted, allowed[..., order])
    for name in before:
        # Arbitrary masks: each implementation agrees with the reference, before and after.
        torch.testing.assert_close(before[name], before["reference"], atol=1e-5, rtol=1e-5, msg=name)
        torch.testing.assert_close(after[name], before[name], atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.parametrize("dtype", ["float64", "float32", "bfloat16", "float16"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_every_dtype_and_layout_on_cpu(dtype: str, batch_first: bool) -> None:
    config = Config.model_validate(
        {"embed_dim": 32, "num_heads": 4, "batch_size": 2, "seq_len": 6, "dtype": dtype, "batch_first": batch_first,
         "mask": {"causal": True, "key_padding": {"lengths": [6, 2]}}, "timing": FAST_TIMING}
    )
    inputs = make_inputs(config, CPU)
    reference, tolerance = run_reference(config, inputs)
    with torch.inference_mode():
        for name in IMPLS:
            got = get_impl(name)(inputs, config)()
            assert got.output.dtype == inputs.query.dtype
            verdict = check_against_reference(config, got, reference, inputs.master_allowed, tolerance)
            assert verdict.ok, (name, dtype, verdict.problems)


def test_unknown_implementation_names_the_valid_ones() -> None:
    with pytest.raises(UsageError, match="sdpa"):
        get_impl("sdp")
