"""Where the causal diagonal sits when L != S: upper left (nn.MultiheadAttention, SDPA's is_causal) or lower right."""

from __future__ import annotations

import pytest
import torch

from mha_cli.config import load_config
from mha_cli.errors import ConfigError
from mha_cli.masks import causal_allowed
from mha_cli.prepared import Prepared
from mha_cli.experiment import resolve
from mha_cli.report.rows import summary_line
from mha_cli.runner import run_experiment

from .helpers import FAST_OVERRIDES, allowed_mask

SHAPES = [(4, 12), (8, 8), (12, 4), (1, 32)]  # L < S, L = S, L > S, one new token against a cache


def by_loop(length: int, source: int, alignment: str, prefix: int = 0) -> torch.Tensor:
    """The definition, one pair at a time: query i sits at position i (upper left) or S - L + i (lower right)."""
    allowed = torch.zeros(length, source, dtype=torch.bool)
    for i in range(length):
        position = i + (source - length if alignment == "lower_right" else 0)
        for j in range(source):
            allowed[i, j] = j <= position or j < prefix
    return allowed


def config_for(length: int, source: int, alignment: str, *extra: str):
    return load_config(None, ["attention=cross", f"seq_len={length}", f"source_len={source}", "mask.causal=true",
                              f"mask.causal_alignment={alignment}", "mask.key_padding=null", *extra])


@pytest.mark.parametrize("alignment", ["upper_left", "lower_right"])
@pytest.mark.parametrize(("length", "source"), SHAPES)
@pytest.mark.parametrize("prefix", [0, 3])
def test_the_mask_is_the_loop_definition(length: int, source: int, alignment: str, prefix: int) -> None:
    extra = [f"mask.prefix={prefix}"] if prefix else []
    config = config_for(length, source, alignment, *extra)
    expected = by_loop(length, source, alignment, prefix)
    offset = source - length if alignment == "lower_right" else 0
    assert torch.equal(causal_allowed(length, source, prefix, offset), expected)
    assert torch.equal(allowed_mask(config)[0, 0], expected)  # the rule every implementation gets
    prepared = Prepared(resolve(config))
    assert prepared.allowed_pairs == int(expected.sum()) * config.batch_size * config.num_heads  # no L x S mask


@pytest.mark.parametrize("alignment", ["upper_left", "lower_right"])
@pytest.mark.parametrize(("length", "source"), SHAPES)
def test_every_implementation_follows_the_alignment(length: int, source: int, alignment: str) -> None:
    config = config_for(length, source, alignment, "impls=[torch,manual,sdpa,blocked]", *FAST_OVERRIDES)
    for result in run_experiment(config).results:
        assert result.ok, (result.impl, result.reason)


def test_the_header_says_which_alignment_a_run_used_when_l_differs_from_s() -> None:
    def header(length: int, source: int, alignment: str) -> str:
        return summary_line(run_experiment(config_for(length, source, alignment, "impls=[sdpa]", *FAST_OVERRIDES)))

    assert "causal (aligned upper left: query i sees keys j <= i)" in header(2, 6, "upper_left")
    assert "causal (aligned lower right: query i at position S - L + i)" in header(2, 6, "lower_right")
    assert "mask: causal, " in header(6, 6, "upper_left") or header(6, 6, "upper_left").rstrip().endswith("causal")


def test_an_alignment_without_causal_is_an_error() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, ["mask.causal_alignment=lower_right"])
    assert caught.value.problems[0].field == "mask.causal_alignment"
    with pytest.raises(ConfigError):
        load_config(None, ["mask.causal=true", "mask.causal_alignment=lower_left"])


def test_a_pattern_laid_over_the_queries_cannot_be_aligned_lower_right() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, ["attention=cross", "seq_len=8", "source_len=16", "mask.causal=true", "variant=sparse",
                           "sparse.block=4", "mask.causal_alignment=lower_right", "mask.key_padding=null"])
    assert any(problem.field == "mask.causal_alignment" and "BigBird lays its blocks over the L queries" in problem.message
               for problem in caught.value.problems), caught.value.problems
