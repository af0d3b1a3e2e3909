"""Every implementation computes the same layer as the float64 reference.

Hypothesis draws the shapes (L = 1 and S != L included), the layout, the
variant and the masks; each example builds one set of weights and checks every
implementation. FlexAttention compiles for every new shape (seconds each), so
it has its own few small tests in test_flex.py.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mha_cli.attention import builtin
from mha_cli.attention.reference import reference_attention
from mha_cli.check import check_against_reference, run_reference
from mha_cli.config import Config
from mha_cli.errors import Unsupported
from mha_cli.masks import fully_masked_rows

from .helpers import CPU, FAST_TIMING, allowed_mask, call, configs, small_config, workload
FAST_IMPLS = ("torch", "manual", "sdpa", "blocked")
PROPERTY_SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])





def _config(**fields) -> Config:
    return Config.model_validate({**fields, "timing": FAST_TIMING})


EDGE_CASES = [
    # L = 1 (a single query), S != L both ways, one head and one batch item.
    _config(embed_dim=8, num_heads=2, batch_size=1, seq_len=1),
    _config(embed_dim=8, num_heads=1, batch_size=2, seq_len=1, attention="cross", source_len=6),
    _config(embed_dim=12, num_heads=3, batch_size=2, seq_len=7, attention="cross", source_len=2,
            mask={"causal": True, "key_padding": {"lengths": [1, 2]}}),
    # L not divisible by the block; a window wider than the sequence; rows with no allowed key.
    _config(embed_dim=8, num_heads=2, batch_size=2, seq_len=13, variant="sparse",
            sparse={"block": 4, "window_blocks": 1, "global_blocks": 1, "random_blocks": 1}),
    _config(embed_dim=8, num_heads=2, batch_size=1, seq_len=9, variant="local", local={"window": 40}),
    _config(embed_dim=8, num_heads=2, batch_size=2, seq_len=20, variant="local", local={"window": 1},
            mask={"key_padding": {"lengths": [3, 20]}}),
    _config(embed_dim=8, num_heads=2, batch_size=2, seq_len=17, variant="sparse", mask={"causal": True},
            sparse={"pattern": "strided", "stride": 4}),
]


def assert_all_agree(config: Config, impls: tuple[str, ...] = FAST_IMPLS) -> None:
    work = workload(config)
    reference = run_reference(work)
    with torch.inference_mode():
        for name in impls:
            if name == "torch" and config.timing.scope == "core":
                continue  # nn.MultiheadAttention has no separate core
            got = call(name, work)
            verdict = check_against_reference(work.experiment, got, reference)
            assert verdict.ok, (name, verdict.problems)


@PROPERTY_SETTINGS
@given(config=configs())
def test_every_implementation_agrees_with_the_reference(config: Config) -> None:
    assert_all_agree(config)


@pytest.mark.parametrize("config", EDGE_CASES, ids=lambda c: f"{c.variant}-L{c.seq_len}-S{c.source_length}")
def test_edge_cases_agree(config: Config) -> None:
    assert_all_agree(config)


@PROPERTY_SETTINGS
@given(config=configs(variants=("full",)))
def test_averaged_weights_rows_sum_to_one(config: Config) -> None:
    config = config.model_copy(
        update={"need_weights": True, "average_attn_weights": True, "timing": config.timing.model_copy(update={"scope": "layer"})}
    )
    work = workload(config)
    with torch.inference_mode():
        for name in ("torch", "manual"):
            weights = call(name, work).weights
            assert weights.shape == (config.batch_size, config.seq_len, config.source_length)
            defined = ~fully_masked_rows(allowed_mask(config))  # rows with no allowed key have no weights to sum
            torch.testing.assert_close(weights.sum(-1)[defined], torch.ones(config.batch_size, config.seq_len)[defined])


@st.composite
def permuted_cases(draw: st.DrawFn) -> tuple[Config, torch.Tensor, list[int]]:
    config = draw(configs(variants=("full",))).model_copy(
        update={"mask": Config().mask, "need_weights": False, "attention": "cross", "timing": Config(timing=FAST_TIMING).timing}
    )
    n, length, source = config.batch_size, config.seq_len, config.source_length
    bits = draw(st.lists(st.booleans(), min_size=n * length * source, max_size=n * length * source))
    allowed = torch.tensor(bits, dtype=torch.bool).reshape(n, length, source)
    allowed[..., draw(st.integers(0, source - 1))] = True  # every row keeps one allowed key
    permutation = draw(st.permutations(list(range(source))))
    return config, allowed, permutation


def _outputs(config: Config, work, allowed: torch.Tensor) -> dict[str, torch.Tensor]:
    """Reference, manual and sdpa read an arbitrary mask; nn.MultiheadAttention gets it per head."""
    masked, inputs = work.with_mask(allowed), work.inputs
    outputs = {
        "reference": reference_attention(
            inputs.master_query, inputs.master_key, inputs.master_value, inputs.master_weights, allowed[:, None], config.num_heads
        ).output
    }
    with torch.inference_mode():
        for name in ("manual", "sdpa", "torch"):
            out = call(name, masked).output
            outputs[name] = (out if config.batch_first else out.transpose(0, 1)).double()
    return outputs


@PROPERTY_SETTINGS
@given(case=permuted_cases())
def test_permuting_keys_values_and_mask_columns_together_changes_nothing(case) -> None:
    config, allowed, permutation = case
    work = workload(config)
    inputs = work.inputs
    order = torch.tensor(permutation)
    source_axis = 1 if config.batch_first else 0
    from dataclasses import replace

    permuted = replace(
        inputs,
        key=inputs.key.index_select(source_axis, order),
        value=inputs.value.index_select(source_axis, order),
        master_key=inputs.master_key[:, order],
        master_value=inputs.master_value[:, order],
        _made={},
    )
    before = _outputs(config, work, allowed)
    after = _outputs(config, work.with_inputs(permuted), allowed[..., order])
    for name in before:
        # Arbitrary masks: each implementation agrees with the reference, before and after.
        torch.testing.assert_close(before[name], before["reference"], atol=1e-5, rtol=1e-5, msg=name)
        torch.testing.assert_close(after[name], before[name], atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.parametrize("dtype", ["float64", "float32", "bfloat16", "float16"])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("variant", ["full", "local", "sparse"])
def test_every_dtype_layout_and_variant_on_cpu(dtype: str, batch_first: bool, variant: str) -> None:
    fields = {"embed_dim": 32, "num_heads": 4, "batch_size": 2, "seq_len": 24, "dtype": dtype, "batch_first": batch_first,
              "variant": variant, "mask": {"causal": True, "key_padding": {"lengths": [24, 9]}}}
    if variant == "local":
        fields["local"] = {"window": 5}
    if variant == "sparse":
        fields["sparse"] = {"block": 4, "random_blocks": 1}
    assert_all_agree(_config(**fields))


def test_unknown_implementation_names_the_valid_ones() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="did you mean 'sdpa'"):
        small_config(impls=["sdp"])
    with pytest.raises(KeyError):
        builtin("sdp")


def test_blocked_refuses_a_mask_it_has_no_plan_for() -> None:
    config = small_config(variant="local", local={"window": 1})
    work = workload(config)
    allowed = torch.ones(config.batch_size, config.seq_len, config.seq_len, dtype=torch.bool)
    with pytest.raises(Unsupported, match="no block plan"):
        builtin("blocked").build(work.with_mask(allowed))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=configs(), backend=st.sampled_from(["auto", "math", "flash", "efficient"]),
       pass_=st.sampled_from(["forward", "backward"]))
def test_unsupported_says_before_building_what_building_and_running_find(config: Config, backend: str, pass_: str) -> None:
    """Each built-in's cheap answer matches the expensive truth: supported exactly when its module builds and
    runs the experiment (the output the check expects, and a backward for a training pass). Whether the numbers
    are right is the check's business: a wrong answer is a `fail`, not an unsupported experiment."""
    from importlib import import_module

    from mha_cli.registry import BUILTIN_IMPLS
    from mha_cli.training import check_gradients, gradient_reference, training_workload, upstream_gradient

    config = config.model_copy(update={"sdpa_backend": backend,
                                       "timing": config.timing.model_copy(update={"pass_": pass_})})
    work = workload(config)
    reference = run_reference(work)
    for name in ("torch", "manual", "sdpa", "blocked"):
        reason = builtin(name).unsupported(work.experiment)
        module = import_module(f"mha_cli.attention.{BUILTIN_IMPLS[name]}")
        try:
            trained, leaves = training_workload(work) if pass_ != "forward" else (work, None)
            forward = module.build(trained)  # the module itself, without the registry's check first
            with torch.no_grad():
                checked = check_against_reference(work.experiment, forward(), reference)
            runs = not any("shape" in problem for problem in checked.problems)
            if runs and leaves is not None:
                upstream = upstream_gradient(work.experiment, CPU)
                check_gradients(trained, forward, leaves, upstream, gradient_reference(work, reference, upstream))
        except Exception:  # noqa: BLE001 - Unsupported, or the module failing at what it was not made for
            runs = False
        assert (reason is None) == runs, (name, reason)


def test_flex_says_it_cannot_train_on_the_cpu_and_pytorch_agrees() -> None:
    from mha_cli.attention import flex

    config = small_config(seq_len=16, timing={"min_run_time": 0.01, "threads": 1, "repetitions": 1, "pass": "backward", "scope": "core"})
    work = workload(config)
    reason = builtin("flex").unsupported(work.experiment)
    assert reason is not None and "backward on CPU" in reason
    leaves = [x.clone().requires_grad_() for x in work.inputs.projected()]
    trained = work.with_inputs(work.inputs.with_projected(*leaves))
    with pytest.raises(Unsupported, match="does not support backward on CPU"):
        flex.build(trained)  # the module itself, past the cheap answer: PyTorch refuses too
