"""Your own implementation in the harness: named in a config (module:attr, file.py:attr) or offered by an
installed distribution (entry point), run beside the built-in ones in run, sweep and the Python API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import mha_cli
from mha_cli.cli import app
from mha_cli.runner import run_experiment

from .helpers import FAST_OVERRIDES, REPO, small_config
from .your_impls import BUILDS, reference

runner = CliRunner()


def mine(attribute: str, **fields) -> mha_cli.Config:
    """A small config running sdpa and one of tests/your_impls.py's implementations as `mine`."""
    return small_config(impls=["sdpa", "mine"], implementations={"mine": reference(attribute)}, **fields)


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [*args, *FAST_OVERRIDES])


@pytest.mark.parametrize("form", ["module:attr", "file.py:attr"])
def test_a_core_function_is_checked_and_timed_like_a_built_in(form: str) -> None:
    named = "tests.your_impls:dense_softmax" if form == "module:attr" else reference("dense_softmax")
    config = small_config(impls=["sdpa", "mine"], implementations={"mine": named}, mask={"causal": True})
    sdpa, yours = run_experiment(config).results
    assert yours.impl == "mine" and yours.ok, yours.reason
    assert yours.median_s > 0 and yours.runs >= 1 and yours.peak_mem_bytes is not None and yours.gflops > 0
    assert yours.max_abs_err < 1e-5 and yours.atol == sdpa.atol and yours.density == sdpa.density


@pytest.mark.parametrize("fields", [
    {"variant": "local", "local": {"window": 2}, "mask": {"causal": True, "key_padding": {"lengths": [5, 3]}}},
    {"variant": "sparse", "seq_len": 12, "sparse": {"pattern": "strided", "stride": 3}, "timing": {"scope": "core"}},
    {"attention": "cross", "source_len": 7, "kdim": 3, "mask": {"key_padding": {"lengths": [7, 2]}}},
], ids=["local-causal-padding", "strided-core", "cross"])
def test_the_rule_and_the_dense_mask_are_the_same_mask(fields: dict) -> None:
    fields = {**fields, "timing": {"min_run_time": 0.01, "threads": 1, "repetitions": 1, **fields.get("timing", {})}}
    config = small_config(impls=["manual", "dense", "rule"], implementations={
        "dense": reference("dense_softmax"), "rule": reference("from_the_rule")}, **fields)
    report = run_experiment(config)
    assert all(r.ok for r in report.results), [(r.impl, r.reason) for r in report.results]


def test_the_layer_scope_runs_the_same_projections_and_weights_around_it() -> None:
    config = mine("dense_softmax", timing={"min_run_time": 0.01, "threads": 1, "repetitions": 1, "scope": "layer"}, batch_first=True)
    sdpa, yours = run_experiment(config).results
    assert yours.ok and yours.scope == "layer" and abs(yours.max_abs_err - sdpa.max_abs_err) < 1e-5


@pytest.mark.parametrize("pass_", ["backward", "forward_backward"])
def test_training_passes_check_its_gradients(pass_: str) -> None:
    config = mine("dense_softmax", mask={"causal": True}, timing={"min_run_time": 0.01, "threads": 1, "repetitions": 1, "pass": pass_})
    sdpa, yours = run_experiment(config).results
    assert yours.ok, yours.reason
    assert yours.grad_max_abs_err is not None and yours.grad_max_abs_err < 1e-4


def test_an_output_that_does_not_require_grad_is_skipped_for_training() -> None:
    config = mine("detached", timing={"min_run_time": 0.01, "threads": 1, "repetitions": 1, "pass": "backward"})
    _, yours = run_experiment(config).results
    assert yours.status == "skipped" and "does not require grad" in yours.reason
    _, forward = run_experiment(mine("detached")).results
    assert forward.ok, "inference needs no gradients"


def test_unsupported_and_not_implemented_skip_the_row_with_the_reason() -> None:
    _, causal_only = run_experiment(mine("causal_sdpa", mask={"key_padding": {"lengths": [5, 3]}})).results
    assert causal_only.status == "skipped" and causal_only.reason == "causal_sdpa runs plain causal masks only"
    _, plain_causal = run_experiment(mine("causal_sdpa", mask={"causal": True})).results
    assert plain_causal.ok, plain_causal.reason
    _, not_yet = run_experiment(mine("not_implemented")).results
    assert not_yet.status == "skipped" and not_yet.reason == "no masks in this kernel yet"


def test_a_factory_builds_once_and_a_factory_class_answers_before_it_is_built() -> None:
    BUILDS.clear()
    config = small_config(name="factory", impls=["once", "declared"], implementations={
        "once": "tests.your_impls:built_once", "declared": reference("Declared")}, mask={"key_padding": {"lengths": [5, 3]}})
    once, declared = run_experiment(config).results
    assert once.ok, once.reason
    assert BUILDS == ["factory"], "the factory runs once per experiment, outside the timed call"
    assert declared.status == "skipped" and declared.reason == "Declared does not run key padding"
    _, declared = run_experiment(config.model_copy(update={"impls": ["sdpa", "declared"], "mask": {}}), memory_limit=2**33).results
    assert declared.status == "skipped" and "estimated to need 10.0 TiB" in declared.reason


def test_a_crash_is_that_rows_error_and_a_wrong_answer_its_fail(tmp_path: Path) -> None:
    result = invoke("run", f"implementations={{crash: {reference('crashes')}, wrong: {reference('off_by_a_little')}}}",
                    "impls=[sdpa,crash,wrong]", "--output-dir", str(tmp_path / "run"))
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    rows = {r["impl"]: r for r in json.loads((tmp_path / "run" / "results.json").read_text())["results"]}
    assert rows["sdpa"]["status"] == "ok"
    assert rows["crash"]["status"] == "error" and rows["crash"]["reason"] == "ValueError: my kernel is broken"
    assert rows["wrong"]["status"] == "fail" and "exceeds the tolerance" in rows["wrong"]["reason"]


BAD = [
    ("no_such_module_xyz:attention", "no module named 'no_such_module_xyz'"),
    ("tests.your_impls:no_such_attribute", "has no attribute 'no_such_attribute'"),
    ("/nonexistent/kernels.py:attention", "no file /nonexistent/kernels.py"),
    (reference("two_arguments"), "must take (q, k, v, spec)"),
    (reference("NOT_A_FUNCTION"), "is an int, not an attention function"),
    (reference("wrong_shape"), "returned shape (2, 2, 5, 1); the core must return (N, H, L, d) = (2, 2, 5, 8)"),
    (reference("wrong_dtype"), "returned torch.float64; the core must return the run's dtype, torch.float32"),
]


@pytest.mark.parametrize(("named", "says"), BAD, ids=[b[1][:30] for b in BAD])
def test_a_bad_implementation_is_a_config_error_naming_the_field(named: str, says: str, tmp_path: Path) -> None:
    result = invoke("run", "embed_dim=16", "batch_size=2", "seq_len=5", "mask.key_padding=null", "impls=[sdpa,mine]",
                    f"implementations={{mine: {json.dumps(named)}}}", "--output-dir", str(tmp_path / "o"))
    assert result.exit_code == 2, result.output
    assert "implementations.mine" in result.output and says in result.output, result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists(), "nothing is measured or saved"


def test_an_import_that_raises_is_a_config_error(tmp_path: Path) -> None:
    kernels = tmp_path / "kernels.py"
    kernels.write_text("raise RuntimeError('needs a GPU library')\n")
    result = invoke("run", "impls=[mine]", f"implementations={{mine: {kernels}:attention}}", "--no-save")
    assert result.exit_code == 2 and "implementations.mine" in result.output
    assert "importing" in result.output and "RuntimeError: needs a GPU library" in result.output


@pytest.mark.parametrize(("override", "says"), [
    ("implementations={torch: tests.your_impls:dense_softmax}", "'torch' is a built-in implementation"),
    ("implementations={mine: 'not a reference'}", "module.path:attribute or path/to/file.py:attribute"),
    ("impls=[sdpa,sdpaa]", "did you mean 'sdpa'"),
])
def test_names_cannot_shadow_a_built_in_and_validate_never_imports(override: str, says: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", override])
    assert result.exit_code == 2 and says in result.output, result.output
    marker = tmp_path / "imported"
    kernels = tmp_path / "kernels.py"
    kernels.write_text(f"open({str(marker)!r}, 'w').close()\ndef attention(q, k, v, spec):\n    return q\n")
    result = runner.invoke(app, ["validate", "impls=[sdpa,mine]", f"implementations={{mine: {kernels}:attention}}"])
    assert result.exit_code == 0, result.output
    assert "imported and checked by `mha run`" in result.output and not marker.exists()


def _offer(tmp_path: Path, name: str = "theirs") -> Path:
    """A distribution on a folder of sys.path that offers `name` through the entry-point group mha.implementations."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "their_kernels.py").write_text(
        "import torch\n\ndef attention(q, k, v, spec):\n"
        "    scores = (q @ k.transpose(-2, -1)) * spec.scale\n"
        "    if spec.mask.masked:\n        scores = scores.masked_fill(~spec.mask.dense(), float('-inf'))\n"
        "    return torch.softmax(scores, dim=-1) @ v\n")
    info = tmp_path / "their_kernels-1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: their-kernels\nVersion: 1.2\n")
    (info / "entry_points.txt").write_text(f"[mha.implementations]\n{name} = their_kernels:attention\n"
                                           "torch = their_kernels:attention\nBad Name = their_kernels:attention\n"
                                           "broken = their_kernels:no_such_kernel\n")
    return tmp_path


def test_an_installed_distribution_offers_an_implementation_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(_offer(tmp_path)))
    result = invoke("run", "impls=[sdpa,theirs]", "--no-save", "--json")
    assert result.exit_code == 0, result.output
    rows = {r["impl"]: r for r in json.loads(result.stdout)["results"]}
    assert rows["theirs"]["status"] == "ok"
    listed = json.loads(runner.invoke(app, ["env", "--json"]).stdout)["implementations"]
    assert {"name": "theirs", "origin": "their-kernels 1.2: their_kernels:attention"} in listed
    assert {"name": "torch", "origin": "built in"} in listed, "an entry point never shadows a built-in"
    unusable = {entry["name"]: entry["origin"] for entry in listed if "not used" in entry["origin"]}
    assert "a built-in has that name" in unusable["torch"] and "impls cannot name it" in unusable["Bad Name"]
    broken = invoke("run", "impls=[sdpa,broken]", "--no-save")
    assert broken.exit_code == 2 and "entry point 'broken' of their-kernels 1.2" in broken.output, broken.output


@pytest.mark.parametrize("form", ["module:attr", "file.py:attr", "entry point"])
def test_sweeps_run_it_in_process_and_isolated(form: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if form == "entry point":
        offered = _offer(tmp_path / "site", name="mine")
        monkeypatch.syspath_prepend(str(offered))
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(offered), os.environ.get("PYTHONPATH", "")]))  # --isolate's children
        named = []
    else:
        named = [f"implementations={{mine: {'tests.your_impls:dense_softmax' if form == 'module:attr' else reference('dense_softmax')}}}"]
    for isolated in ([], ["--isolate"]):
        result = invoke("sweep", "--heads", "1,2", "--impl", "sdpa,mine", *named, "--no-plot", "--json", *isolated,
                        "--output-dir", str(tmp_path / f"sweep{len(isolated)}"))
        assert result.exit_code == 0, result.output
        rows = json.loads(result.stdout)["rows"]
        assert [(r["num_heads"], r["impl"], r["status"]) for r in rows] == [
            (1, "sdpa", "ok"), (1, "mine", "ok"), (2, "sdpa", "ok"), (2, "mine", "ok")], rows


def test_the_python_api_runs_it_and_sweeps_it() -> None:
    config = mine("dense_softmax")
    report = mha_cli.run_experiment(config)
    assert [r.impl for r in report.results] == ["sdpa", "mine"] and report.ok
    summary = mha_cli.run_sweep(config, {"seq_len": [4, 6]})
    assert summary["counts"]["done"] == 2 and {r["impl"] for r in summary["rows"]} == {"sdpa", "mine"}


def test_the_shipped_example_runs_from_the_repository(tmp_path: Path) -> None:
    env = {**os.environ, "NO_COLOR": "1"}
    done = subprocess.run([sys.executable, "-m", "mha_cli", "run", "configs/my_attention.yaml", "--no-save", "--json",
                           "seq_len=64", "timing.min_run_time=0.01"], cwd=REPO, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    rows = {r["impl"]: r for r in json.loads(done.stdout)["results"]}
    assert rows["mine"]["status"] == "ok" and rows["sdpa"]["status"] == "ok"


def test_from_python_the_function_itself_can_be_named() -> None:
    from .your_impls import dense_softmax

    config = small_config().model_copy(update={"impls": ["sdpa", "mine"], "implementations": {"mine": dense_softmax}})
    report = mha_cli.run_experiment(config)
    assert [r.status for r in report.results] == ["ok", "ok"]
    assert report.config["implementations"] == {"mine": "tests.your_impls:dense_softmax"}  # written down by name
    with pytest.raises(ValueError, match="neither a reference"):
        small_config(impls=["mine"], implementations={"mine": 3})


def test_its_code_never_ends_mha_nor_changes_the_other_rows(tmp_path: Path) -> None:
    # sys.exit inside the call is that row's error, not a silent exit 0.
    result = invoke("run", "impls=[sdpa,mine]", f"implementations={{mine: {reference('exits')}}}", "--no-save", "--json")
    assert result.exit_code == 1, result.output
    rows = {r["impl"]: r for r in json.loads(result.stdout)["results"]}
    assert rows["mine"]["status"] == "error" and "sys.exit(0)" in rows["mine"]["reason"] and rows["sdpa"]["status"] == "ok"
    # sys.exit at import is a config error naming the field.
    module = tmp_path / "leaves.py"
    module.write_text("import sys\nsys.exit(3)\n")
    result = invoke("run", "impls=[mine]", f"implementations={{mine: {module}:f}}", "--no-save")
    assert result.exit_code == 2 and "implementations.mine" in result.output and "sys.exit(3)" in result.output
    # At core scope an in-place change to its inputs stays its own.
    result = invoke("run", "timing.scope=core", "impls=[mine,sdpa,manual]", f"implementations={{mine: {reference('in_place')}}}",
                    "--no-save", "--json")
    rows = {r["impl"]: r for r in json.loads(result.stdout)["results"]}
    assert rows["sdpa"]["status"] == "ok" and rows["manual"]["status"] == "ok" and rows["mine"]["status"] == "fail"


def test_json_stays_one_document_when_its_code_prints() -> None:
    result = runner.invoke(app, ["run", "impls=[mine]", f"implementations={{mine: {reference('chatty')}}}", "--no-save",
                                 "--json", *FAST_OVERRIDES])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["results"][0]["status"] == "ok"
    assert "hello from my kernel" in result.stderr


def test_a_factorys_core_of_the_wrong_signature_is_a_config_error() -> None:
    result = invoke("run", "impls=[mine]", f"implementations={{mine: {reference('core_takes_the_spec')}}}", "--no-save")
    assert result.exit_code == 2 and "must take (q, k, v)" in result.output


def test_a_sweep_stops_at_code_it_cannot_use_and_keeps_nothing_as_skipped(tmp_path: Path) -> None:
    bad = f"implementations={{mine: {reference('wrong_shape')}}}"
    for isolated in ([], ["--isolate"]):
        folder = tmp_path / f"sweep{len(isolated)}"
        result = invoke("sweep", "--heads", "1,2", "--impl", "sdpa,mine", bad, *isolated, "--output-dir", str(folder))
        assert result.exit_code == 2, result.output
        assert "implementations.mine" in result.output and "returned shape" in result.output
        assert not (folder / "points.jsonl").exists() or "skipped" not in (folder / "points.jsonl").read_text()


def test_a_file_may_import_the_modules_beside_it(tmp_path: Path) -> None:
    (tmp_path / "helpers_beside.py").write_text("import torch\ndef scaled(x, s):\n    return x * s\n")
    (tmp_path / "kernel.py").write_text(
        "import torch\nfrom helpers_beside import scaled\n\ndef attention(q, k, v, spec):\n"
        "    return torch.softmax(scaled(q @ k.transpose(-2, -1), spec.scale), dim=-1) @ v\n")
    result = invoke("run", "mask.key_padding=null", "impls=[mine]", f"implementations={{mine: {tmp_path / 'kernel.py'}:attention}}",
                    "--no-save")
    assert result.exit_code == 0, result.output


def test_names_with_a_dash_take_overrides_and_copies_raise_config_errors() -> None:
    config = small_config(impls=["my-impl"], implementations={"my-impl": reference("dense_softmax")})
    assert config.implementations["my-impl"].endswith(":dense_softmax")
    result = invoke("validate", "impls=[my-impl]", f"implementations.my-impl={reference('dense_softmax')}")
    assert result.exit_code == 0, result.output
    with pytest.raises(mha_cli.ConfigError, match="impls"):
        small_config().model_copy(update={"impls": ["sdpa", "ghost"]})


def test_run_sweep_hands_every_point_the_function_itself(tmp_path: Path) -> None:
    def make():  # type: ignore[no-untyped-def]
        def nested(q, k, v, spec):  # type: ignore[no-untyped-def]
            scores = (q @ k.transpose(-2, -1)) * spec.scale
            return torch.softmax(scores, dim=-1) @ v
        return nested

    import torch

    config = small_config().model_copy(update={"impls": ["sdpa", "mine"], "implementations": {"mine": make()}})
    summary = mha_cli.run_sweep(config, {"seq_len": [4, 6]}, output_dir=str(tmp_path / "sweep"))  # a str folder too
    assert summary["counts"]["done"] == 2 and all(r["status"] == "ok" for r in summary["rows"]), summary["rows"]
