import pytest
import torch

from mha_cli.errors import UsageError
from mha_cli.inputs import resolve_device
from mha_cli.runner import run_experiment

from .helpers import small_config


def test_run_reports_every_implementation_ok_and_timed() -> None:
    report = run_experiment(small_config())
    assert [r.impl for r in report.results] == ["torch", "manual", "sdpa"]
    for result in report.results:
        assert result.status == "ok" and result.ok
        assert result.median_s > 0 and result.runs >= 1 and result.gflops > 0
        assert result.peak_mem_bytes > 0 and result.max_abs_err < result.atol
    assert report.results[0].speedup_vs_torch == 1.0
    assert report.env["num_threads"] == 1 and report.env["torch"] == torch.__version__


def test_cross_attention_shapes() -> None:
    config = small_config(attention="cross", seq_len=3, source_len=7, kdim=5, vdim=6, batch_first=True)
    report = run_experiment(config)
    assert report.shapes == {"query": [2, 3, 16], "key": [2, 7, 5], "value": [2, 7, 6], "output": [2, 3, 16], "attn_weights": [2, 3, 7]}
    assert report.ok


def test_per_head_weights_and_no_weights() -> None:
    per_head = run_experiment(small_config(average_attn_weights=False))
    assert per_head.shapes["attn_weights"] == [2, 2, 5, 5]
    none = run_experiment(small_config(need_weights=False))
    assert none.shapes["attn_weights"] is None
    assert not [row for row in none.shape_table if row.tensor.startswith("attn weights")]
    assert "no weights returned" in none.shape_table[-1].note


def test_unavailable_sdpa_backend_is_skipped_with_the_reason() -> None:
    if torch.cuda.is_available():
        pytest.skip("the efficient kernel exists on CUDA")
    report = run_experiment(small_config(sdpa_backend="efficient", impls=["manual", "sdpa"]))
    sdpa = report.results[1]
    assert sdpa.status == "skipped" and "efficient" in sdpa.reason
    assert report.ok  # a skip is not a failure


def test_math_backend_runs() -> None:
    assert run_experiment(small_config(sdpa_backend="math", impls=["sdpa"])).results[0].status == "ok"


def test_memory_limit_refuses_the_run() -> None:
    with pytest.raises(UsageError, match="--max-memory"):
        run_experiment(small_config(seq_len=512), memory_limit=1024)


def test_missing_gpu_is_a_usage_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(UsageError, match="device: cpu"):
        resolve_device("cuda")
    assert resolve_device("auto").type in ("cpu", "mps")


def test_the_guard_skips_dense_rows_but_runs_blocked() -> None:
    config = small_config(seq_len=4096, embed_dim=32, num_heads=4, batch_size=1, variant="local", local={"window": 16},
                          impls=["sdpa", "blocked"], timing={"min_run_time": 0.01, "threads": 1, "repetitions": 1, "scope": "core"})
    from mha_cli.experiment import resolve
    from mha_cli.memory import estimate

    found = estimate(resolve(config))
    limit = max(found.reference_peak, found.peak("blocked")) + 2**20
    assert limit < found.peak("sdpa")
    report = run_experiment(config, memory_limit=limit)
    sdpa, blocked = report.results
    assert sdpa.status == "skipped" and "estimated to need" in sdpa.reason and "--max-memory" in sdpa.reason
    assert blocked.status == "ok" and blocked.density == pytest.approx((2 * 16 + 1) / 4096, rel=0.01)


def test_core_scope_skips_torch_and_times_the_core() -> None:
    config = small_config(impls=["torch", "sdpa", "blocked"], variant="local", local={"window": 1},
                          timing={"min_run_time": 0.01, "threads": 1, "repetitions": 1, "scope": "core"})
    torch_row, sdpa_row, blocked_row = run_experiment(config).results
    assert torch_row.status == "skipped" and "no separate core" in torch_row.reason
    assert sdpa_row.ok and blocked_row.ok and sdpa_row.scope == "core"
    # Core FLOPs count only QK^T and PV over allowed pairs: 4 * H * pairs * d.
    assert sdpa_row.flops == 4 * 2 * int(13 * 2) * 8


def test_long_sequences_are_checked_on_evenly_spread_rows() -> None:
    config = small_config(seq_len=4096, embed_dim=16, num_heads=8, batch_size=1, variant="local", local={"window": 8},
                          impls=["blocked"], need_weights=False)
    (blocked,) = run_experiment(config).results
    assert blocked.ok and blocked.checked_rows == 128 and "checked on 128 of 4096" in blocked.reason


def test_flex_compilation_is_its_own_progress_step(monkeypatch: pytest.MonkeyPatch) -> None:
    from mha_cli.attention import flex, sdpa

    messages: list[str] = []
    seen_at_build: list[str] = []

    def recording_build(work):  # type: ignore[no-untyped-def]
        seen_at_build.append(messages[-1])
        return sdpa.build(work)  # the step is what is checked, not the compiler

    monkeypatch.setattr(flex, "build", recording_build)
    monkeypatch.setattr(flex, "unsupported", lambda experiment: None)
    run_experiment(small_config(impls=["manual", "flex"]), progress=messages.append)
    assert seen_at_build[0] == "[2/2] flex: compiling with torch.compile (often tens of seconds)"
    assert "[2/2] flex: checking against float64" in messages


def test_a_result_timed_fewer_than_3_times_is_noisy() -> None:
    from mha_cli.measure import Timing

    assert Timing(median_s=1.0, iqr_s=0.0, runs=1).noisy
    assert not Timing(median_s=1.0, iqr_s=0.01, runs=3).noisy


def test_run_experiment_leaves_torch_as_it_found_it() -> None:
    from mha_cli.measure import flush_denormal_is_on as _flush_denormal_is_on

    before = torch.get_num_threads()
    torch.set_flush_denormal(False)
    try:
        report = run_experiment(small_config(timing={"min_run_time": 0.01, "threads": 1, "repetitions": 1, "repetitions": 1}))
        assert report.env["num_threads"] == 1
        assert torch.get_num_threads() == before and not _flush_denormal_is_on()
    finally:
        torch.set_flush_denormal(False)
