"""Score modifications (`score_mod:`): each built-in against a loop definition, every implementation that
applies one against float64 (hypothesis over mod x pattern x causal x padding x grouped heads), skipped rows
with their reason, the learned table's gradient, your own score_mod and its errors, attention-gym's mods."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mha_cli.attention.reference import reference_attention
from mha_cli.cli import app
from mha_cli.config import Config, load_config
from mha_cli.experiment import resolve
from mha_cli.explanation import explain
from mha_cli.masks import fully_masked_rows
from mha_cli.memory import estimate
from mha_cli.runner import run_experiment
from mha_cli.score_mods.alibi import alibi_slopes
from mha_cli.training import mod_leaf_name

from . import score_mod_fns
from .helpers import FAST_OVERRIDES, FAST_TIMING, allowed_mask, configs, small_config, workload

runner = CliRunner()
BIAS_SKIPPERS = ("torch", "sdpa", "blocked")  # take only an additive float mask


# --------------------------------------------------------------------------- the built-ins, by definition


def test_alibi_slopes_are_the_papers_for_any_head_count() -> None:
    assert alibi_slopes(8) == [2.0 ** -k for k in range(1, 9)]
    assert alibi_slopes(1) == [2.0 ** -8]
    # Not a power of two: the 4 slopes of H=4, then every other one of H=8's, as the paper's code does.
    assert alibi_slopes(6) == [2.0 ** -2, 2.0 ** -4, 2.0 ** -6, 2.0 ** -8, 2.0 ** -1, 2.0 ** -3]
    assert alibi_slopes(12) == [2.0 ** -k for k in range(1, 9)] + [2.0 ** -(k + 0.5) for k in range(0, 4)]


def _loop(kind: str, settings: dict, score: float, h: int, i: int, j: int, slopes: list[float], table) -> float:  # type: ignore[no-untyped-def]
    if kind == "alibi":
        return score + slopes[h] * (j - i)
    if kind == "softcap":
        return settings["cap"] * math.tanh(score / settings["cap"])
    distance = settings["max_distance"]
    return score + float(table[h, max(-distance, min(distance, j - i)) + distance])


@pytest.mark.parametrize("settings_", [{"kind": "alibi"}, {"kind": "softcap", "cap": 1.5},
                                       {"kind": "relative_bias", "max_distance": 2}])
@pytest.mark.parametrize("lower_right", [False, True])
def test_each_builtin_changes_every_score_as_its_loop_definition_says(settings_: dict, lower_right: bool) -> None:
    mask = {"causal": True, "causal_alignment": "lower_right"} if lower_right else {}
    config = small_config(num_heads=3, embed_dim=12, seq_len=4, source_len=7, mask=mask, score_mod=settings_)
    work = workload(config)
    mod = work.prepared.applied_mod(work.inputs.master_mod_tables)
    scores = torch.randn(2, 3, 4, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    got = mod.apply(scores)
    offset = 7 - 4 if lower_right else 0
    table = work.inputs.master_mod_tables.get("table")
    for b in range(2):
        for h in range(3):
            for i in range(4):
                for j in range(7):
                    expected = _loop(settings_["kind"], settings_, float(scores[b, h, i, j]), h, i + offset, j,
                                     alibi_slopes(3), table)
                    assert float(got[b, h, i, j]) == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("settings_", [{"kind": "alibi"}, {"kind": "softcap", "cap": 0.5},
                                       {"kind": "relative_bias", "max_distance": 3}])
def test_the_reference_is_softmax_of_the_modified_scores_of_the_allowed_keys(settings_: dict) -> None:
    config = small_config(num_heads=2, embed_dim=8, seq_len=6, mask={"causal": True}, score_mod=settings_,
                          timing={**FAST_TIMING, "scope": "core"})
    work = workload(config)
    inputs = work.inputs
    mod = work.prepared.applied_mod(inputs.master_mod_tables)
    steps = reference_attention(inputs.master_query, inputs.master_key, inputs.master_value, inputs.master_weights,
                                allowed_mask(config), 2, modify=mod.apply)
    q, k, v = steps.q, steps.k, steps.v
    table = inputs.master_mod_tables.get("table")
    for b in range(2):
        for h in range(2):
            for i in range(6):
                logits = [_loop(settings_["kind"], settings_, float(q[b, h, i] @ k[b, h, j]) / math.sqrt(4), h, i, j,
                                alibi_slopes(2), table) for j in range(i + 1)]
                top = max(logits)
                weights = [math.exp(x - top) for x in logits]
                expected = sum(w * v[b, h, j] for j, w in enumerate(weights)) / sum(weights)
                assert torch.allclose(steps.heads[b, h, i], expected, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- every implementation against float64


@st.composite
def modded_configs(draw: st.DrawFn) -> Config:
    config = draw(configs())
    kind = draw(st.sampled_from(["alibi", "softcap", "relative_bias", "custom"]))
    mod: dict = {"kind": kind}
    if kind == "softcap":
        mod["cap"] = draw(st.sampled_from([0.5, 2.0, 30.0]))
    elif kind == "relative_bias":
        mod["max_distance"] = draw(st.integers(1, 8))
        mod["learned"] = draw(st.booleans())
    elif kind == "custom":
        name = draw(st.sampled_from(["per_item_bias", "squared"]))
        mod.update(function=score_mod_fns.reference(name), bias=name == "per_item_bias")
    update: dict = {"score_mod": mod, "impls": ["torch", "manual", "sdpa", "blocked"]}
    if config.mask.causal and draw(st.booleans()) and not (config.variant == "sparse" and config.sparse.pattern == "bigbird"):
        # Queries aligned lower right sit S - L further on: the mod reads that position, as the mask does.
        update["mask"] = config.mask.model_copy(update={"causal_alignment": "lower_right"})
    if config.num_heads > 1 and draw(st.booleans()):
        update["num_kv_heads"] = draw(st.sampled_from([h for h in range(1, config.num_heads) if config.num_heads % h == 0]))
    return config.model_copy(update=update)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(config=modded_configs(), timed=st.sampled_from(["forward", "forward_backward"]))
def test_every_implementation_applies_the_mod_and_agrees_with_float64_or_says_why_not(config: Config, timed: str) -> None:
    config = config.model_copy(update={"timing": config.timing.model_copy(update={"pass_": timed})})
    report = run_experiment(config)
    mod = resolve(config).score_mod
    undefined = bool(fully_masked_rows(allowed_mask(config)).any())
    for result in report.results:
        if result.status == "skipped":
            known = ("not an additive bias" in result.reason and result.impl in BIAS_SKIPPERS and not mod.is_bias) or \
                    "no separate core" in result.reason or "no grouped key/value heads" in result.reason
            assert known, (result.impl, result.reason)
            if not mod.is_bias and result.impl in ("sdpa", "blocked"):
                assert mod.NAME in result.reason
        elif result.impl in ("torch", "manual") and timed != "forward" and undefined and not result.ok:
            assert "NaN/inf in the gradient" in result.reason  # a plain softmax's NaN rows, as without a mod
        else:
            assert result.ok, (result.impl, result.reason)
            if timed != "forward":
                assert result.grad_max_abs_err is not None
    if not mod.is_bias:  # never silently dropped: the kernels that cannot apply it are skipped
        assert all(r.status == "skipped" for r in report.results if r.impl in BIAS_SKIPPERS)


@pytest.mark.parametrize("mod", ["alibi", "relative_bias"])
def test_blocked_applies_a_bias_per_piece_on_every_pattern(mod: str) -> None:
    for variant, extra in (("local", {"local": {"window": 3, "sinks": 2}}),
                           ("sparse", {"sparse": {"pattern": "bigbird", "block": 4, "window_blocks": 3,
                                                  "global_blocks": 1, "random_blocks": 1}}),
                           ("sparse", {"sparse": {"pattern": "strided", "stride": 3}})):
        config = small_config(seq_len=24, num_heads=4, embed_dim=16, variant=variant, score_mod=mod,
                              mask={"causal": True, "key_padding": {"lengths": [24, 17]}}, impls=["manual", "blocked"],
                              **extra)
        for result in run_experiment(config).results:
            assert result.ok, (variant, result.impl, result.reason)


@pytest.mark.parametrize("mod", [{"kind": "alibi"}, {"kind": "relative_bias", "max_distance": 5, "learned": True},
                                 {"kind": "relative_bias", "max_distance": 5, "learned": False}])
@pytest.mark.parametrize("timed", ["forward", "forward_backward"])
def test_blocked_shares_one_mask_across_a_bands_interior(mod: dict, timed: str) -> None:
    from mha_cli.attention import blocked

    config = small_config(seq_len=400, num_heads=4, num_kv_heads=2, embed_dim=16, variant="local", local={"window": 6},
                          mask={"causal": True, "key_padding": {"lengths": [400, 201]}}, score_mod=mod,
                          impls=["manual", "blocked"], timing={**FAST_TIMING, "scope": "core", "pass": timed})
    runs = blocked.build_core(workload(config))[0].engine.runners[0].segments
    # one mask (G, 1, rows, keys) serves each run of alike problems (the interior, the stretch past item 1's
    # padding); the ends and the change between have their own
    assert runs is not None and sum(bias.shape[1] == 1 and run.stop - run.start > 1 for run, bias in runs) == 2
    assert [run.start for run, _ in runs][0] == 0 and runs[-1][0].stop == 25
    for result in run_experiment(config).results:
        if result.impl == "manual" and timed != "forward" and not result.ok:
            continue  # a plain softmax's NaN rows under key padding, as without a mod
        assert result.ok, (result.impl, result.reason)


def test_blocked_makes_the_bias_per_chunk_when_it_would_not_fit_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from mha_cli.attention import blocked

    monkeypatch.setattr(blocked, "MOD_BIAS_BYTES", 0)
    mod = {"kind": "custom", "function": score_mod_fns.reference("per_item_bias"), "bias": True}  # reads i and j apart
    config = small_config(seq_len=32, num_heads=4, embed_dim=16, variant="local", local={"window": 4},
                          score_mod=mod, impls=["manual", "blocked"], timing={**FAST_TIMING, "scope": "core"})
    work = workload(config)
    core = blocked.build_core(work)[0]
    assert all(runner.bias is None for runner in core.engine.runners)
    for result in run_experiment(config).results:
        assert result.ok, (result.impl, result.reason)


@pytest.mark.parametrize("mod", [{"kind": "relative_bias", "max_distance": 3},
                                 {"kind": "custom", "function": score_mod_fns.reference("per_item_bias"), "bias": True}])
@pytest.mark.parametrize("variant", [{"variant": "full"}, {"variant": "local", "local": {"window": 4}}])
def test_queries_aligned_lower_right_are_modified_at_their_key_positions(mod: dict, variant: dict) -> None:
    # (ALiBi's shift by S - L is the same for a whole row, which the softmax cancels: these two see it.)
    config = small_config(seq_len=6, source_len=20, num_heads=2, embed_dim=8, score_mod=mod, **variant,
                          mask={"causal": True, "causal_alignment": "lower_right"}, impls=["torch", "manual", "sdpa", "blocked"])
    for result in run_experiment(config).results:
        assert result.ok, (result.impl, result.reason)


@pytest.mark.parametrize("mod", ["alibi", "relative_bias", "softcap"])
def test_decoding_applies_the_mod_at_the_new_tokens_positions(mod: str) -> None:
    config = small_config(seq_len=2, num_heads=4, num_kv_heads=2, embed_dim=16, decode={"cache_len": 40},
                          mask={"causal": True}, need_weights=False, variant="local", local={"window": 9},
                          score_mod=mod, impls=["manual", "sdpa", "blocked"])
    for result in run_experiment(config).results:
        if mod == "softcap" and result.impl != "manual":
            assert result.status == "skipped"
        else:
            assert result.ok, (result.impl, result.reason)


# --------------------------------------------------------------------------- gradients of a learned table


def test_a_learned_tables_gradient_is_checked_and_a_dropped_one_fails() -> None:
    implementations = {"detached": score_mod_fns.reference("detached_table_attention")}
    for learned in (True, False):
        config = small_config(seq_len=12, num_heads=2, embed_dim=8, variant="local", local={"window": 3},
                              score_mod={"kind": "relative_bias", "max_distance": 4, "learned": learned},
                              impls=["manual", "sdpa", "blocked", "detached"], implementations=implementations,
                              timing={**FAST_TIMING, "scope": "core", "pass": "forward_backward"})
        results = {r.impl: r for r in run_experiment(config).results}
        for name in ("manual", "sdpa", "blocked"):
            assert results[name].ok, (name, results[name].reason)
        if learned:  # the table is a parameter: an implementation that detaches it gets no gradient for it
            assert results["detached"].status == "fail"
            assert mod_leaf_name("relative_bias", "table") in results["detached"].reason
        else:
            assert results["detached"].ok, results["detached"].reason


def test_the_training_reference_includes_the_tables_gradient() -> None:
    from mha_cli.check import run_reference
    from mha_cli.training import gradient_reference, training_workload, upstream_gradient

    config = small_config(seq_len=6, score_mod={"kind": "relative_bias", "max_distance": 2},
                          timing={**FAST_TIMING, "pass": "forward_backward"})
    work = workload(config)
    trained, leaves = training_workload(work)
    name = mod_leaf_name("relative_bias", "table")
    assert name in leaves and leaves[name].requires_grad
    expected = gradient_reference(trained, run_reference(work), upstream_gradient(work.experiment, work.device))
    assert expected.grads[name].shape == (2, 5) and float(expected.grads[name].abs().sum()) > 0


# --------------------------------------------------------------------------- your own score_mod


def test_your_own_score_mod_runs_in_every_implementation_that_can_apply_it() -> None:
    implementations = {"mine": score_mod_fns.reference("applies_spec_mod")}
    config = small_config(seq_len=10, mask={"causal": True}, impls=["torch", "manual", "sdpa", "blocked", "mine"],
                          implementations=implementations, variant="local", local={"window": 4},
                          score_mod={"kind": "custom", "function": score_mod_fns.reference("per_item_bias"), "bias": True})
    for result in run_experiment(config).results:
        assert result.ok, (result.impl, result.reason)


def test_an_implementation_that_ignores_the_mod_fails_the_check() -> None:
    config = small_config(seq_len=10, score_mod="alibi", impls=["manual", "mine"],
                          implementations={"mine": score_mod_fns.reference("ignores_mod")})
    results = {r.impl: r for r in run_experiment(config).results}
    assert results["manual"].ok and results["mine"].status == "fail"


def test_the_generator_form_with_args() -> None:
    config = small_config(seq_len=6, score_mod={"kind": "custom", "function": score_mod_fns.reference("scaled"),
                                                "args": {"factor": 0.5}}, impls=["manual"])
    assert run_experiment(config).results[0].ok


@pytest.mark.parametrize(("name", "args", "bias", "message"), [
    ("nowhere", None, False, "has no attribute 'nowhere'"),
    ("mask_like", None, False, "a mask_mod takes four: name it as sparse.mask_mod"),
    ("returns_bool", None, False, "a score_mod returns the scores (float)"),
    ("wrong_shape", None, False, "returned shape (3, 3, 3, 3, 3)"),
    ("squared", None, True, "what it adds depends on the score"),
    ("scaled", {"nope": 1}, False, "calling"),
    ("summed", None, False, "it must return one score per score it gets"),
    ("nan_scores", None, False, "returned NaN or +inf for finite scores"),
    ("scaled", None, False, "is it a generator that needs score_mod.args?"),
])
def test_a_bad_score_mod_is_exit_2_naming_the_field(name: str, args: dict | None, bias: bool, message: str) -> None:
    overrides = ["score_mod.kind=custom", f"score_mod.function={score_mod_fns.reference(name)}", f"score_mod.bias={str(bias).lower()}",
                 "impls=[manual]", *FAST_OVERRIDES]
    if args is not None:
        overrides.append(f"score_mod.args={json.dumps(args)}")
    result = runner.invoke(app, ["run", *overrides, "--no-save"])
    assert result.exit_code == 2, result.output
    field = "score_mod.args" if args is not None else "score_mod.function"
    assert field in result.output and message in result.output.replace("\n", " ")
    assert "Traceback" not in result.output


def test_a_missing_file_is_exit_2_and_validate_never_imports_the_code(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "loud.py").write_text("raise SystemExit('imported!')\ndef mod(score, b, h, q, kv):\n    return score\n")
    assert runner.invoke(app, ["validate", "score_mod=loud.py:mod"]).exit_code == 0
    ran = runner.invoke(app, ["run", "score_mod=loud.py:mod", "impls=[manual]", *FAST_OVERRIDES, "--no-save"])
    assert ran.exit_code == 2 and "score_mod.function" in ran.output and "sys.exit" in ran.output
    missing = runner.invoke(app, ["run", "score_mod=absent.py:mod", "impls=[manual]", *FAST_OVERRIDES, "--no-save"])
    assert missing.exit_code == 2 and "no file absent.py" in missing.output


# --------------------------------------------------------------------------- attention-gym's mods


@pytest.mark.parametrize(("builtin", "gym"), [
    ({"kind": "alibi"}, {"kind": "custom", "function": "attn_gym.mods:generate_alibi_bias", "args": {"H": 4}, "bias": True}),
    ({"kind": "softcap", "cap": 2.0}, {"kind": "custom", "function": "attn_gym.mods:generate_tanh_softcap",
                                       "args": {"soft_cap": 2.0}}),
])
def test_attention_gyms_mods_give_the_builtins_outputs(builtin: dict, gym: dict) -> None:
    from .helpers import call

    outputs = []
    for mod in (builtin, gym):
        config = small_config(seq_len=16, num_heads=4, mask={"causal": True}, score_mod=mod)
        outputs.append(call("manual", workload(config)).output)
    assert torch.allclose(outputs[0], outputs[1], rtol=1e-5, atol=1e-6)


def test_flex_gets_the_mod_as_its_score_mod() -> None:
    config = small_config(seq_len=16, num_heads=4, embed_dim=16, variant="local", local={"window": 5},
                          score_mod={"kind": "relative_bias", "max_distance": 3}, impls=["manual", "flex"])
    for result in run_experiment(config).results:
        assert result.ok, (result.impl, result.reason)


# --------------------------------------------------------------------------- the rest of the product


def test_shorthands_and_messages() -> None:
    assert load_config(None, ["score_mod=alibi"]).score_mod.kind == "alibi"
    assert load_config(None, ["score_mod=mods.py:f"]).score_mod.function == "mods.py:f"
    result = runner.invoke(app, ["validate", "score_mod=bogus"])
    assert result.exit_code == 2 and "kind must be one of: alibi, softcap, relative_bias, custom" in result.output
    result = runner.invoke(app, ["validate", "score_mod.kind=softcap", "score_mod.max_distance=3"])
    assert result.exit_code == 2 and "max_distance belongs to kind: relative_bias, not kind: softcap" in result.output


def test_the_memory_guard_counts_the_additive_mask() -> None:
    plain = small_config(seq_len=64)
    modded = small_config(seq_len=64, score_mod="alibi")
    before, after = estimate(resolve(plain)), estimate(resolve(modded))
    additive = 2 * 64 * 64 * 4  # (1, H, L, S) float32: no key padding in small_config
    assert after.per_impl["sdpa"] - before.per_impl["sdpa"] == additive


def test_explain_shows_the_mod_as_its_own_step() -> None:
    explanation = explain(small_config(seq_len=6, score_mod="softcap"))
    names = [s.step for s in explanation.steps]
    assert names.index("score mod") == names.index("scores") + 1
    assert "float64 reference" in explanation.checked_against and explanation.max_abs_err_output < 1e-5
    alibi = explain(small_config(seq_len=6, score_mod="alibi"), backward=True)
    assert alibi.checked_against.startswith("nn.MultiheadAttention") and alibi.max_abs_err_output < 1e-5
    assert "score mod, backward" in [s.step for s in alibi.backward] and alibi.max_abs_err_backward < 1e-4


def test_mask_and_plot_say_the_mod_is_separate() -> None:
    shown = runner.invoke(app, ["mask", "score_mod=alibi", "variant=local", "local.window=2"])
    assert shown.exit_code == 0 and "Masks and score mods are separate" in shown.output.replace("\n", " ")
    drawn = runner.invoke(app, ["plot", "weights", "score_mod=alibi"])
    assert drawn.exit_code == 0 and "score mod: alibi (in these weights)" in drawn.output


def test_the_run_header_and_json_name_the_mod(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(app, ["run", "score_mod=softcap", *FAST_OVERRIDES, "--json", "--no-save"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["config"]["score_mod"] == {"kind": "softcap", "cap": 50.0}
    reasons = {r["impl"]: r.get("reason") for r in report["results"] if r["status"] == "skipped"}
    assert set(reasons) == {"torch", "sdpa"} and all("softcap" in reason for reason in reasons.values())


def test_a_sweep_over_score_mods_and_their_kinds(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "mods.yaml"
    config.write_text("seq_len: 16\nimpls: [manual, sdpa]\ntiming: {repetitions: 1, min_run_time: 0.01}\n"
                      "score_mod: alibi\nsweep:\n  score_mod.kind: [alibi, softcap]\n")
    result = runner.invoke(app, ["sweep", str(config), "--output-dir", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "score_mod.kind=softcap" in result.output and "not an additive bias" in result.output.replace("\n", " ")
    config.write_text(config.read_text().replace("[alibi, softcap]", "[alibi, sofcap]"))
    refused = runner.invoke(app, ["sweep", str(config), "--output-dir", str(tmp_path / "again")])
    assert refused.exit_code == 2 and "choose one of: alibi, softcap, relative_bias, custom" in refused.output


@pytest.mark.parametrize("name", ["no_head_bias", "in_place_bias"])
def test_a_bias_the_same_for_every_head_or_added_in_place_reaches_every_kernel(name: str) -> None:
    mod = {"kind": "custom", "function": score_mod_fns.reference(name), "bias": True}
    for variant in ({"variant": "full"}, {"variant": "local", "local": {"window": 3}}):
        config = small_config(seq_len=10, num_heads=2, score_mod=mod, impls=["torch", "manual", "sdpa", "blocked"],
                              **variant)
        for result in run_experiment(config).results:
            assert result.ok, (name, variant, result.impl, result.reason)


def test_your_implementation_trains_a_learned_table_through_spec_score_mod() -> None:
    config = small_config(seq_len=10, mask={"causal": True}, score_mod={"kind": "relative_bias", "max_distance": 4},
                          impls=["manual", "mine"], implementations={"mine": score_mod_fns.reference("table_through_apply")},
                          timing={**FAST_TIMING, "scope": "core", "pass": "backward"})
    for result in run_experiment(config).results:
        assert result.ok, (result.impl, result.reason)


def test_the_shorthand_takes_its_settings_after_it() -> None:
    assert load_config(None, ["score_mod=softcap", "score_mod.cap=5"]).score_mod.cap == 5.0
    result = runner.invoke(app, ["validate", "score_mod=alibii"])
    assert result.exit_code == 2 and "did you mean 'alibi'?" in result.output
    result = runner.invoke(app, ["validate", "score_mod=configs/mods.py"])  # a file without its :attribute
    assert result.exit_code == 2 and "score_mod.function" in result.output
    result = runner.invoke(app, ["validate", "score_mod=mods.py:f"])
    assert result.exit_code == 0 and "the score_mod mods.py:f is imported and checked by `mha run`, not here" in \
        result.output.replace("\n", " ")


def test_explain_backward_shows_the_learned_tables_gradient() -> None:
    explanation = explain(small_config(seq_len=6, score_mod={"kind": "relative_bias", "max_distance": 2}), backward=True)
    row = next(s for s in explanation.backward if s.step == "learned table, backward")
    assert row.shape == [2, 5]
    softmax = next(s for s in explanation.backward if s.step == "softmax, backward")
    assert softmax.formula.startswith("dS' =")


def test_a_sweep_labels_whole_sections_as_an_override_writes_them(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "mods.yaml"
    config.write_text("seq_len: 8\nimpls: [manual]\ntiming: {repetitions: 1, min_run_time: 0.01}\n"
                      "sweep:\n  score_mod: [null, {kind: softcap, cap: 5}]\n")
    result = runner.invoke(app, ["sweep", str(config), "--output-dir", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "score_mod=null" in result.output and "score_mod={kind: softcap, cap: 5}" in result.output
    assert "'kind'" not in result.output and "None" not in result.output
