import pytest
import torch
from torch.utils import benchmark

from mha_cli import measure
from mha_cli.experiment import resolve
from mha_cli.measure import Timing, count_flops, peak_memory_bytes, time_call

from .helpers import small_config


def test_peak_memory_sees_tensors_alive_together() -> None:
    def two_buffers() -> torch.Tensor:
        a = torch.ones(1024, 1024)  # 4 MiB
        b = torch.ones(1024, 1024)  # 4 MiB more while a is alive
        return (a + b).sum()

    peak = peak_memory_bytes(two_buffers, torch.device("cpu"))
    assert 12 * 2**20 <= peak < 16 * 2**20  # a, b and a + b


def test_peak_memory_of_sequential_buffers_is_one_buffer() -> None:
    def one_at_a_time() -> None:
        for _ in range(3):
            torch.ones(1024, 1024).sum()

    assert 4 * 2**20 <= peak_memory_bytes(one_at_a_time, torch.device("cpu")) < 5 * 2**20


def test_time_call_sizes_the_timer_blocks_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """The calibrated Timer overrides a private torch method: this fails if torch stops calling it."""
    chosen: list[int] = []
    real = measure._CalibratedTimer._estimate_block_size

    def recording(self, min_run_time: float) -> int:  # type: ignore[no-untyped-def]
        chosen.append(real(self, min_run_time))
        return chosen[-1]

    monkeypatch.setattr(measure._CalibratedTimer, "_estimate_block_size", recording)
    measured_blocks: list[int] = []
    real_blocked = benchmark.Timer.blocked_autorange

    def spying(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        measurement = real_blocked(self, *args, **kwargs)
        measured_blocks.append(measurement.number_per_run)
        return measurement

    monkeypatch.setattr(benchmark.Timer, "blocked_autorange", spying)
    x = torch.randn(64, 64)
    timing = time_call(lambda: x @ x, threads=1, min_run_time=0.02)
    assert chosen, "torch.utils.benchmark no longer calls Timer._estimate_block_size"
    assert measured_blocks == [chosen[0]]  # every measurement is a block of the size we chose
    assert timing.runs >= 1 and 0 < timing.median_s < 0.1 and timing.iqr_s >= 0


def test_a_short_budget_still_measures_a_few_calls_when_they_are_cheap_enough() -> None:
    import time

    calls: list[float] = []

    def twenty_ms() -> None:
        calls.append(time.perf_counter())
        time.sleep(0.02)

    one = time_call(twenty_ms, threads=1, min_run_time=0.001)
    assert one.runs == 1 and len(calls) == 3  # two warm-up calls (a short call), then one measured
    calls.clear()
    three = time_call(twenty_ms, threads=1, min_run_time=0.001, at_least=(3, 0.1))
    assert three.runs >= 3 and three.median_s == pytest.approx(0.02, abs=0.015)
    calls.clear()
    capped = time_call(twenty_ms, threads=1, min_run_time=0.001, at_least=(3, 0.03))
    assert capped.runs <= 2  # 3 calls would pass the 0.03 s the floor allows


def test_a_call_that_is_long_already_gets_one_warm_up_call() -> None:
    import time

    calls: list[float] = []

    def sixty_ms() -> None:
        calls.append(time.perf_counter())
        time.sleep(0.06)

    assert time_call(sixty_ms, threads=1, min_run_time=0.001).runs == 1 and len(calls) == 2


def test_noisy_flag() -> None:
    assert Timing(1.0, 0.2, 10).noisy and not Timing(1.0, 0.05, 10).noisy


def test_flops_count_allowed_pairs_and_projections() -> None:
    config = small_config(embed_dim=16, num_heads=2, batch_size=2, seq_len=5)
    flops = count_flops(resolve(config), allowed_pairs=2 * 2 * 5 * 5)  # over batch items and heads
    # q and output projections 2*N*L*E*E each; k and v 2*N*S*E*E each (kdim = vdim = E).
    assert flops.projections == 4 * (2 * 2 * 5 * 16 * 16)
    # QK^T and PV: 2 * 2 * pairs * d.
    assert flops.attention == 4 * 2 * 50 * 8
