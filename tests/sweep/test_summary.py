import math

import pytest

from mha_cli.sweep.summary import fastest_per_point, scaling_exponent


def test_scaling_exponent_recovers_a_power_law() -> None:
    samples = [((), length, 3e-9 * length**2) for length in (128, 256, 512, 1024)]
    assert scaling_exponent(samples) == pytest.approx(2.0)


def test_scaling_exponent_holds_other_parameters_apart() -> None:
    # Two head counts with different levels, the same slope 1: pooling naively would mix levels.
    samples = [((heads,), length, heads * 1e-6 * length) for heads in (1, 8) for length in (100, 400)]
    samples.append(((16,), 100, 5.0))  # a group with one length says nothing about the slope
    assert scaling_exponent(samples) == pytest.approx(1.0)


def test_scaling_exponent_needs_two_lengths() -> None:
    assert scaling_exponent([((), 100, 1.0), ((), 100, 2.0)]) is None


def test_noisy_data_gives_the_least_squares_slope() -> None:
    lengths = [64, 128, 256, 512]
    noise = [1.1, 0.9, 1.05, 0.95]
    exponent = scaling_exponent([((), n, n**1.5 * f) for n, f in zip(lengths, noise)])
    assert math.isclose(exponent, 1.5, abs_tol=0.1)


def test_fastest_per_point_ignores_rows_that_did_not_pass() -> None:
    rows = [
        {"point": 0, "h": 1, "impl": "a", "status": "ok", "median_s": 2.0},
        {"point": 0, "h": 1, "impl": "b", "status": "fail", "median_s": 1.0},
        {"point": 0, "h": 1, "impl": "c", "status": "ok", "median_s": 1.5},
        {"point": 1, "h": 2, "impl": "a", "status": "skipped", "median_s": None},
    ]
    assert fastest_per_point(rows, ["h"]) == [{"point": 0, "h": 1, "impl": "c", "median_s": 1.5}]
