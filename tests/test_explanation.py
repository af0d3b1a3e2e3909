"""`mha explain`: the steps on the user's config, checked against the reference's intermediates."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from mha_cli.attention.reference import reference_attention
from mha_cli.cli import app
from mha_cli.explanation import explain, run_steps

from .helpers import allowed_mask, small_config, workload

STEP_NAMES = ["input projections", "split into heads", "scores", "mask applied", "softmax", "weighted sum",
              "concatenate heads", "output projection"]


def test_steps_and_shapes_for_self_attention() -> None:
    found = explain(small_config(embed_dim=16, num_heads=2, batch_size=3, seq_len=5))
    assert [s.step for s in found.steps] == STEP_NAMES
    shapes = {s.step: s.shape for s in found.steps}
    assert shapes["split into heads"] == [3, 2, 5, 8] and shapes["scores"] == [3, 2, 5, 5]
    assert shapes["concatenate heads"] == [3, 5, 16]
    assert found.steps[2].axes == "(N=3, H=2, L=5, S=5)"
    assert found.max_abs_err_output < 1e-5
    # Every parameter of nn.MultiheadAttention is counted once: 4 E^2 + 4 E with bias.
    assert sum(s.params for s in found.steps) == 4 * 16 * 16 + 4 * 16


def test_cross_attention_and_batch_first() -> None:
    config = small_config(embed_dim=16, num_heads=4, batch_size=2, seq_len=3, attention="cross", source_len=7,
                          kdim=5, vdim=6, batch_first=True)
    found = explain(config)
    shapes = {s.step: s.shape for s in found.steps}
    assert shapes["scores"] == [2, 4, 3, 7] and shapes["output projection"] == [2, 3, 16]
    assert "q_proj_weight" in found.steps[0].note and "batch first already" in found.steps[0].note
    assert found.max_abs_err_output < 1e-5


def test_notes_explain_averaging_polarity_and_empty_rows() -> None:
    config = small_config(variant="local", local={"window": 0}, mask={"key_padding": {"lengths": [2, 5]}},
                          average_attn_weights=False)
    found = explain(config)
    notes = {s.step: s.note for s in found.steps}
    assert "per head, (N, H, L, S)" in notes["softmax"]
    assert "True means MAY attend" in notes["mask applied"] and "must NOT attend" in notes["mask applied"]
    assert "3 query rows have no allowed key" in notes["mask applied"]  # rows 2..4 of item 0
    assert found.fully_masked_rows == 3


@pytest.mark.parametrize("fields", [{}, {"attention": "cross", "source_len": 4, "kdim": 3}, {"mask": {"causal": True}}])
def test_each_step_equals_the_reference_intermediate(fields: dict) -> None:
    config = small_config(dtype="float64", **fields)
    work = workload(config)
    inputs = work.inputs
    steps = run_steps(work)
    reference = reference_attention(inputs.master_query, inputs.master_key, inputs.master_value,
                                    inputs.master_weights, allowed_mask(config), config.num_heads)
    pairs = [(steps.q_heads, reference.q), (steps.k_heads, reference.k), (steps.v_heads, reference.v),
             (steps.scores, reference.scores), (steps.masked, reference.masked_scores), (steps.weights, reference.weights),
             (steps.heads, reference.heads), (steps.concat, reference.concat), (steps.output, reference.output)]
    for mine, theirs in pairs:
        torch.testing.assert_close(mine, theirs, atol=1e-12, rtol=1e-12)


def test_explain_cli_table_and_json() -> None:
    runner = CliRunner()
    table = runner.invoke(app, ["explain"])
    assert table.exit_code == 0 and "(N=5, H=2, L=10, S=10)" in table.stdout and "16,640 parameters" in table.stdout
    assert "manual == nn.MultiheadAttention" in table.stdout
    document = json.loads(runner.invoke(app, ["explain", "--json"]).stdout)
    assert set(document) == {"schema_version", "steps", "totals", "check"} and document["schema_version"] == 3
    steps = document["steps"]
    assert [s["step"] for s in steps] == STEP_NAMES
    assert {"step", "formula", "shape", "axes", "note"} <= set(steps[0])
    assert document["totals"] == {"params": 16_640, "flops": sum(s["flops"] for s in steps)}
    assert document["check"]["max_abs_err_output"] < 1e-5 and document["check"]["dtype"] == "float32"


@pytest.mark.parametrize("fields", [{}, {"mask": {"causal": True, "key_padding": {"lengths": [5, 3]}}},
                                    {"attention": "cross", "source_len": 7, "kdim": 12, "vdim": 20, "batch_first": True}])
def test_backward_steps_are_what_autograd_computes(fields: dict) -> None:
    from mha_cli.explanation import explain

    config = small_config(dtype="float64", **fields)
    found = explain(config, backward=True)
    names = [s.step for s in found.backward]
    assert names[0].startswith("dY") and "softmax, backward" in names and names[-1] == "input projections, backward"
    assert found.max_abs_err_backward < 1e-10
    softmax = next(s for s in found.backward if s.step == "softmax, backward")
    assert softmax.shape == [config.batch_size, config.num_heads, config.seq_len, config.source_length]
    document = found.to_dict()
    assert document["totals"]["backward_flops"] == sum(s.flops for s in found.backward) > 0
    assert explain(config).to_dict().get("backward_steps") is None  # only when asked


def test_explain_backward_on_the_command_line() -> None:
    from typer.testing import CliRunner

    from mha_cli.cli import app

    result = CliRunner().invoke(app, ["explain", "--backward"])
    assert result.exit_code == 0, result.output
    assert "softmax, backward" in result.output and "== autograd through the same layer" in result.output
