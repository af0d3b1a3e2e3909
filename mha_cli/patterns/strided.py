"""Sparse Transformer, strided: query i attends key j when |i - j| < stride or i - j is a multiple of stride.

blocked runs it as a band (the near part) plus one dense problem per residue
class i mod stride (the far part).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from ..arith import ceil_div
from ..config_fields import PositiveInt, Section
from .base import Pattern

if TYPE_CHECKING:
    import torch

    from ..block_plan import BlockPlan, PlanContext
    from .base import PatternRule


class StridedSettings(Section):
    pattern: Literal["strided"] = "strided"
    stride: PositiveInt = 64  # j allowed when |i - j| < stride or (i - j) % stride == 0


def strided_rule(stride: int) -> PatternRule:
    """|i - j| < stride, or i - j a multiple of stride (Python's % on tensors is torch.remainder)."""

    def rule(b: torch.Tensor, h: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        return ((i - j).abs() < stride) | ((i - j) % stride == 0)

    return rule


class Strided(Pattern):  # its fields and frozen behaviour are Pattern's
    NAME = "strided"
    SECTION = "sparse"
    Settings = StridedSettings

    def rule(self) -> PatternRule:
        return strided_rule(self.settings.stride)

    def words(self) -> str:
        s = self.settings.stride
        return f"query i attends key j when (|i - j| < {s} or i - j is a multiple of {s})"

    @classmethod
    def brief(cls, settings: StridedSettings) -> str:
        return f"stride {settings.stride}"

    def plan(self, context: PlanContext) -> BlockPlan:
        import torch

        from ..block_plan import block_size_for_window
        from ..pieces import Residue

        stride = self.settings.stride
        near = stride - 1
        block = block_size_for_window(near, self.sizes.seq_len)
        at = context.positions(block)
        width = block + near + (0 if context.one_sided else near)  # a prefix reaches past the diagonal
        band = at.band(-near, width, member=lambda i, j: (i - j).abs() < stride)
        # Residue class r: queries a * stride + r against keys c * stride + r.
        rows, cols = ceil_div(at.length, stride), ceil_div(at.source, stride)
        residue = torch.arange(stride)[:, None, None]
        i = (torch.arange(rows)[None, :, None] * stride + residue)[None]
        j = (torch.arange(cols)[None, None, :] * stride + residue)[None]
        far = at.allowed(j, i != j, query=i)  # j = i is in the band already
        return at.plan([band, Residue(stride, far)])

    def keys_per_query(self) -> int:
        stride = self.settings.stride
        return 128 + 2 * stride + ceil_div(self.sizes.source_len, stride)
