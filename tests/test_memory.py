import time

import pytest

from mha_cli.errors import ExitCode, UsageError
from mha_cli.experiment import resolve
from mha_cli.memory import check_fits, format_bytes, parse_bytes

from .helpers import small_config


def estimate(config):  # type: ignore[no-untyped-def]
    from mha_cli.memory import estimate as estimate_experiment

    return estimate_experiment(resolve(config))


@pytest.mark.parametrize(
    ("text", "expected"), [("1024", 1024), ("2GiB", 2 * 2**30), ("500MB", 500 * 10**6), ("1.5k", 1500), ("3 mib", 3 * 2**20)]
)
def test_parse_bytes(text: str, expected: int) -> None:
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["", "lots", "2 parsecs", "-1GB"])
def test_parse_bytes_rejects_nonsense(text: str) -> None:
    with pytest.raises(UsageError, match="--max-memory"):
        parse_bytes(text)


def test_format_bytes() -> None:
    assert format_bytes(512) == "512 B" and format_bytes(3 * 2**30) == "3.0 GiB"


def test_estimate_grows_with_the_score_matrix() -> None:
    small = estimate(small_config(seq_len=100))
    large = estimate(small_config(seq_len=200))
    assert 3.5 < large.reference_peak / small.reference_peak < 4.5


def test_a_million_tokens_is_refused_at_once_with_what_to_lower() -> None:
    start = time.perf_counter()
    with pytest.raises(UsageError) as caught:
        check_fits(resolve(small_config(seq_len=1_000_000)), 24 * 2**30, "available on this machine")
    assert time.perf_counter() - start < 0.5
    assert caught.value.exit_code == ExitCode.USAGE
    message = caught.value.message
    assert "TiB" in message and "seq_len" in message and "--max-memory" in message


def test_a_small_run_fits() -> None:
    assert check_fits(resolve(small_config()), 2**30, "test").reference_peak < 2**20



def test_the_estimate_knows_the_generic_plans_largest_block() -> None:
    from mha_cli.block_plan import GENERIC_BLOCKS
    from mha_cli.memory import GENERIC_LARGEST_BLOCK

    assert max(GENERIC_BLOCKS) == GENERIC_LARGEST_BLOCK
