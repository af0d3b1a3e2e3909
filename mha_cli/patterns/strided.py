"""Sparse Transformer, strided: query i attends key j when |i - j| < stride or i - j is a multiple of stride.

blocked runs it as a band (the near part) plus one dense problem per residue
class i mod stride (the far part).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from ..arith import ceil_div
from ..config_fields import PositiveInt, Section

if TYPE_CHECKING:
    import torch

    from ..block_plan import BlockPlan
    from ..config import Config
    from .base import PatternRule

NAME = "strided"
RUNS_USER_CODE = False  # a built-in rule: `mha validate` may evaluate it
SECTION = "sparse"


class StridedConfig(Section):
    pattern: Literal["strided"] = "strided"
    stride: PositiveInt = 64  # j allowed when |i - j| < stride or (i - j) % stride == 0


Settings = StridedConfig


def strided_rule(stride: int) -> PatternRule:
    """|i - j| < stride, or i - j a multiple of stride (Python's % on tensors is torch.remainder)."""

    def rule(b: torch.Tensor, h: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        return ((i - j).abs() < stride) | ((i - j) % stride == 0)

    return rule


def _stride(config: Config) -> int:
    settings = config.sparse_settings
    assert isinstance(settings, StridedConfig)  # the registry only hands this module strided configs
    return settings.stride


def rule(config: Config) -> PatternRule:
    return strided_rule(_stride(config))


def words(config: Config) -> str:
    s = _stride(config)
    return f"query i attends key j when (|i - j| < {s} or i - j is a multiple of {s})"


def brief(settings: StridedConfig) -> str:
    return f"stride {settings.stride}"


def varies(config: Config) -> tuple[bool, bool]:
    return False, False  # the same for every batch item and head


def problems(config: Config) -> list[tuple[str, str]]:
    return []


def plan(config: Config) -> BlockPlan:
    import torch

    from ..block_plan import Positions, Residue, block_size_for_window

    stride = _stride(config)
    near = stride - 1
    block = block_size_for_window(near, config.seq_len)
    at = Positions(config, block)
    width = block + near + (0 if config.mask.plain_causal else near)  # a prefix reaches past the diagonal
    band = at.band(-near, width, member=lambda i, j: (i - j).abs() < stride)
    # Residue class r: queries a * stride + r against keys c * stride + r.
    rows, cols = ceil_div(at.length, stride), ceil_div(at.source, stride)
    residue = torch.arange(stride)[:, None, None]
    i = (torch.arange(rows)[None, :, None] * stride + residue)[None]
    j = (torch.arange(cols)[None, None, :] * stride + residue)[None]
    far = at.allowed(j, i != j, query=i)  # j = i is in the band already
    return at.plan([band, Residue(stride, far)])


def keys_per_query(config: Config) -> int:
    stride = _stride(config)
    return 128 + 2 * stride + ceil_div(config.source_length, stride)


def extra_blocked_elements(config: Config) -> int:
    return 0
