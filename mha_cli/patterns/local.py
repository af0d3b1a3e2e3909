"""Local (sliding window) attention: query i attends key j when |i - j| <= window.

With mask.causal the window is one-sided (i - window <= j <= i). blocked runs
it as one band: each query block reads an overlapping, strided view of the keys.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config_fields import NonNegativeInt, Section

if TYPE_CHECKING:
    import torch

    from ..block_plan import BlockPlan
    from ..config import Config
    from .base import PatternRule

NAME = "local"
SECTION = "local"


class LocalConfig(Section):
    # Query i may attend key j when |i - j| <= window (with mask.causal: i - window <= j <= i).
    window: NonNegativeInt = 128


Settings = LocalConfig


def local_rule(window: int) -> PatternRule:
    """|i - j| <= window: a band of 2 * window + 1 keys around the diagonal."""

    def rule(i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        return (i - j).abs() <= window

    return rule


def rule(config: Config) -> PatternRule:
    return local_rule(config.local_settings.window)


def words(config: Config) -> str:
    return f"query i attends key j when |i - j| <= {config.local_settings.window}"


def brief(settings: LocalConfig) -> str:
    return f"window {settings.window}"


def problems(config: Config) -> list[tuple[str, str]]:
    return []  # any window works at any length


def plan(config: Config) -> BlockPlan:
    from ..block_plan import BlockPlan, Positions, block_size_for_window

    window = config.local_settings.window
    block = block_size_for_window(window, config.seq_len)
    at = Positions(config, block)
    width = block + window + (0 if config.mask.causal else window)
    band = at.band(-window, width)
    return BlockPlan(block, at.query_blocks, at.key_blocks, [band], batch_size=config.batch_size)


def keys_per_query(config: Config) -> int:
    """An upper bound on the keys blocked reads per query (blocks of up to 128)."""
    return 128 + 2 * config.local_settings.window


def extra_blocked_elements(config: Config) -> int:
    return 0
