"""FlexAttention against the reference. Kept few and small: each new shape compiles (~10-20 s here)."""

from __future__ import annotations

import pytest
import torch

from mha_cli.attention import builtin
from mha_cli.check import check_against_reference, run_reference
from mha_cli.config import Config

from .helpers import FAST_TIMING, call, workload
from .mask_mods import reference

pytestmark = pytest.mark.skipif(
    torch.backends.cpu.get_cpu_capability() == "DEFAULT", reason="FlexAttention on the CPU needs AVX2"
)


@pytest.mark.parametrize(
    "fields",
    [
        # Local window with causal and key padding (rows with no allowed key included), whole layer.
        {"variant": "local", "local": {"window": 2}, "mask": {"causal": True, "key_padding": {"lengths": [16, 3]}}},
        # BigBird, L not a multiple of the block, attention core only.
        {"variant": "sparse", "seq_len": 21, "sparse": {"block": 4, "random_blocks": 1},
         "timing": {**FAST_TIMING, "scope": "core"}},
        # A custom mask_mod that differs per head: the BlockMask gets a head dimension.
        {"variant": "sparse", "sparse": {"pattern": "custom", "mask_mod": reference("head_window")},
         "mask": {"causal": True}},
    ],
    ids=["local-causal-padding-layer", "bigbird-ragged-core", "custom-per-head"],
)
def test_flex_agrees_with_the_reference_and_reports_its_compile_time(fields: dict) -> None:
    config = Config.model_validate(
        {"embed_dim": 16, "num_heads": 2, "batch_size": 2, "seq_len": 16, "timing": FAST_TIMING, **fields}
    )
    work = workload(config)
    forward = builtin("flex").build(work)
    assert forward.compile_s > 0
    with torch.inference_mode():
        verdict = check_against_reference(work.experiment, forward(), run_reference(work))
    assert verdict.ok, verdict.problems


def test_flex_honours_a_mask_given_through_with_mask() -> None:
    config = Config.model_validate({"embed_dim": 16, "num_heads": 2, "batch_size": 2, "seq_len": 16, "timing": FAST_TIMING})
    work = workload(config)
    allowed = torch.rand(2, 16, 16, generator=torch.Generator().manual_seed(0)) < 0.3
    allowed[..., 0] = True
    masked = work.with_mask(allowed)
    with torch.inference_mode():
        got = call("flex", masked).output
        expected = call("manual", masked).output
    assert torch.allclose(got, expected, atol=1e-5)
