import pytest
import torch

from mha_cli.errors import UsageError
from mha_cli.runner import resolve_device, run_experiment

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
    other = next(row for row in none.shape_table if row.tensor.startswith("attn weights if"))
    assert other.shape == [2, 2, 5, 5]


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
