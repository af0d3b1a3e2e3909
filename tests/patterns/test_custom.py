"""`sparse.pattern: custom`: a FlexAttention mask_mod named in the config, attention-gym's masks included."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from attn_gym.masks import (
    causal_mask,
    generate_dilated_sliding_window,
    generate_doc_mask_mod,
    generate_prefix_lm_mask,
    generate_sliding_window,
)
from attn_gym.masks.document_mask import length_to_offsets
from torch.nn.attention.flex_attention import create_mask
from typer.testing import CliRunner

from mha_cli.block_plan import PlanContext, generic_plan
from mha_cli.cli import app
from mha_cli.config import Config
from mha_cli.patterns.custom import Custom
from mha_cli.runner import run_experiment

from ..helpers import FAST_OVERRIDES, FAST_TIMING, allowed_mask, plan_of, prepared
from ..mask_mods import reference

runner = CliRunner()


def custom(length: int, mask_mod: str, args: dict | None = None, heads: int = 2, **fields) -> Config:
    sparse = {"pattern": "custom", "mask_mod": mask_mod, **({"mask_mod_args": args} if args is not None else {})}
    return Config.model_validate({"embed_dim": 8 * heads, "num_heads": heads, "batch_size": 2, "seq_len": length,
                                  "variant": "sparse", "sparse": sparse, "timing": FAST_TIMING, **fields})


ATTN_GYM = [
    ("attn_gym.masks:generate_sliding_window", {"window_size": 5}, generate_sliding_window(5)),
    ("attn_gym.masks:generate_prefix_lm_mask", {"prefix_length": 7}, generate_prefix_lm_mask(7)),
    ("attn_gym.masks:generate_dilated_sliding_window", {"window_size": 6, "dilation": 2}, generate_dilated_sliding_window(6, 2)),
    (reference("attn_gym_documents"), {"lengths": [9, 4, 20, 7]}, generate_doc_mask_mod(causal_mask, length_to_offsets([9, 4, 20, 7], "cpu"))),
]


@pytest.mark.parametrize(("mask_mod", "args", "theirs"), ATTN_GYM, ids=["sliding_window", "prefix_lm", "dilated", "documents"])
def test_attention_gym_masks_allow_the_same_pairs_as_its_create_mask(mask_mod: str, args: dict, theirs) -> None:
    config = custom(40, mask_mod, args)
    expected = create_mask(theirs, None, None, 40, 40, device="cpu")  # (1, 1, L, S)
    assert torch.equal(allowed_mask(config), expected.expand(2, 1, 40, 40))
    # The generic plan holds exactly those pairs, and the run agrees with the float64 reference.
    assert plan_of(config).allowed_pairs() == 2 * 2 * int(expected.sum())
    report = run_experiment(config.model_copy(update={"impls": ["sdpa", "blocked"]}))
    assert [r.status for r in report.results] == ["ok", "ok"], [r.reason for r in report.results]


def test_a_rule_that_reads_the_head_gets_one_mask_per_head() -> None:
    config = custom(12, reference("head_window"), heads=3)
    assert prepared(config).groups == (1, 3)
    mask = allowed_mask(config)
    assert mask.shape == (2, 3, 12, 12)
    for h in range(3):
        distance = (torch.arange(12)[:, None] - torch.arange(12)[None, :]).abs()
        assert torch.equal(mask[0, h], distance <= 2 * h + 1)
    report = run_experiment(config.model_copy(update={"impls": ["torch", "manual", "sdpa", "blocked"]}))
    assert all(r.ok for r in report.results), [(r.impl, r.reason) for r in report.results]
    per_head_pairs = sum(int(((torch.arange(12)[:, None] - torch.arange(12)).abs() <= 2 * h + 1).sum()) for h in range(3))
    assert report.results[0].density == pytest.approx(per_head_pairs / (3 * 12 * 12))


def test_a_rule_that_reads_the_batch_item_gets_one_mask_per_item() -> None:
    config = custom(9, reference("batch_stripes"), heads=1)
    assert prepared(config).groups == (2, 1)
    mask = allowed_mask(config)
    assert not torch.equal(mask[0], mask[1])


def test_the_plan_is_built_once_and_its_time_reported_apart_from_the_median(monkeypatch: pytest.MonkeyPatch) -> None:
    from mha_cli import block_plan

    plans, real = [], block_plan.generic_plan
    monkeypatch.setattr(block_plan, "generic_plan", lambda *args, **kwargs: plans.append(1) or real(*args, **kwargs))
    config = custom(64, reference("window"), {"width": 3}, impls=["blocked"])
    report = run_experiment(config)
    (blocked,) = report.results
    assert blocked.ok and blocked.plan_s is not None and blocked.plan_s > 0
    assert len(plans) == 1  # counting the pairs and blocked share one plan


def test_planning_never_evaluates_more_than_a_slice_of_pairs_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    config = custom(300, reference("window"), {"width": 2})
    seen = []
    rule = prepared(config).pattern_rule

    def counting(b, h, q, kv):  # type: ignore[no-untyped-def]
        result = rule(b, h, q, kv)
        seen.append(torch.broadcast_shapes(b.shape, h.shape, q.shape, kv.shape).numel())
        return result

    monkeypatch.setattr(Custom, "rule", lambda self: counting)
    ready = prepared(config)
    context = PlanContext(ready.experiment.sizes, ready.rule, ready.groups, False, elements=64 * 320)
    seen.clear()  # the rule's first call on a few positions (which dimensions it keeps) is not planning
    plan = generic_plan(context)
    slices, masks = seen[:-1], seen[-1]  # the rule on every pair, a slice at a time; then the plan's own masks
    assert sum(slices) >= 300 * 300 and max(slices) <= 64 * 320
    assert masks < 300 * 300
    assert plan.allowed_pairs() == 2 * int(allowed_mask(config).sum())  # the mask holds both items; 2 heads


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["run", *args, *FAST_OVERRIDES])
    return result.exit_code, result.output


BAD = [
    ("no_such_module_xyz.masks:rule", "no module named 'no_such_module_xyz'"),
    ("attn_gym.masks:no_such_rule", "has no attribute 'no_such_rule'"),
    ("/nonexistent/rules.py:rule", "no file /nonexistent/rules.py"),
    (reference("two_arguments"), "must take (b, h, q_idx, kv_idx)"),
    (reference("integer_result"), "torch.int64 tensor; a mask_mod returns bool"),
    (reference("wrong_shape"), "returned shape (3,)"),
    (reference("raises"), "ValueError: this rule is broken"),
    (reference("NOT_A_FUNCTION"), "is an int, not a mask_mod function"),
    ("attn_gym.masks:generate_sliding_window", "is it a generator that needs mask_mod_args?"),
]


@pytest.mark.parametrize(("mask_mod", "says"), BAD, ids=[b[1][:24] for b in BAD])
def test_a_bad_mask_mod_is_a_config_error_naming_the_field(mask_mod: str, says: str, tmp_path: Path) -> None:
    code, output = _run("variant=sparse", "sparse.pattern=custom", f"sparse.mask_mod={mask_mod}", "--output-dir", str(tmp_path / "o"))
    assert code == 2, output
    assert "sparse.mask_mod" in output and says in output and "Traceback" not in output
    assert not (tmp_path / "o").exists(), "nothing is measured or saved"


def test_wrong_mask_mod_args_are_a_config_error(tmp_path: Path) -> None:
    code, output = _run("variant=sparse", "sparse.pattern=custom", "sparse.mask_mod=attn_gym.masks:generate_sliding_window",
                        "sparse.mask_mod_args={window: 3}", "--output-dir", str(tmp_path / "o"))
    assert code == 2 and "generate_sliding_window(**mask_mod_args) failed: TypeError" in output, output


@pytest.mark.parametrize("value", ["rules", "a b:c", "mod.py", "mod:attr:extra", "mod:1x"])
def test_a_reference_of_the_wrong_form_is_refused_by_validate(value: str) -> None:
    result = runner.invoke(app, ["validate", "variant=sparse", "sparse.pattern=custom", f"sparse.mask_mod={value}"])
    assert result.exit_code == 2
    assert "sparse.mask_mod" in result.output and "module.path:attribute or path/to/file.py:attribute" in result.output


def test_validate_checks_the_form_without_importing(tmp_path: Path) -> None:
    marker = tmp_path / "imported"
    rules = tmp_path / "rules.py"
    rules.write_text(f"open({str(marker)!r}, 'w').close()\ndef rule(b, h, q, kv):\n    return q >= kv\n")
    result = runner.invoke(app, ["validate", "variant=sparse", "sparse.pattern=custom", f"sparse.mask_mod={rules}:rule"])
    assert result.exit_code == 0, result.output
    assert "imported and checked by `mha run`" in result.output
    assert not marker.exists()
    code, output = _run("variant=sparse", "sparse.pattern=custom", f"sparse.mask_mod={rules}:rule", "seq_len=8",
                        "--output-dir", str(tmp_path / "o"))
    assert code == 0, output
    assert marker.exists()


def test_mask_draws_one_head_of_a_per_head_rule() -> None:
    args = ["mask", "variant=sparse", "sparse.pattern=custom", f"sparse.mask_mod={reference('head_window')}",
            "seq_len=16", "mask.key_padding=null", "num_heads=4", "embed_dim=16"]
    narrow, wide = runner.invoke(app, [*args, "--head", "0"]), runner.invoke(app, [*args, "--head", "3"])
    assert narrow.exit_code == 0 and wide.exit_code == 0, narrow.output + wide.output
    assert "head 3 of 4" in wide.output and narrow.output != wide.output
    assert runner.invoke(app, [*args, "--head", "4"]).exit_code == 2
