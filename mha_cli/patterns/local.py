"""Local (sliding window) attention: query i attends key j when |i - j| <= window.

`dilation` d keeps every d-th key of the window (|i - j| divisible by d; the
dilated sliding window); `sinks` s makes the first s keys visible to every
query as well (StreamingLLM's attention sinks). With mask.causal the window is
one-sided (i - window <= j <= i) and the sinks too obey j <= i.

blocked runs it as one band (each query block reads an overlapping, strided
view of the keys) plus, with sinks, one fixed set of the sink keys that lie
outside the query block's band.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config_fields import NonNegativeInt, PositiveInt, Section
from .base import Pattern

if TYPE_CHECKING:
    import torch

    from ..block_plan import BlockPlan, PlanContext
    from .base import PatternRule


class LocalSettings(Section):
    # Query i may attend key j when |i - j| <= window (with mask.causal: i - window <= j <= i).
    window: NonNegativeInt = 128
    dilation: PositiveInt = 1  # ... and |i - j| is a multiple of dilation
    sinks: NonNegativeInt = 0  # the first `sinks` keys are allowed for every query as well


def local_rule(window: int, dilation: int = 1, sinks: int = 0) -> PatternRule:
    """|i - j| <= window (and a multiple of dilation), or j < sinks."""

    def rule(b: torch.Tensor, h: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        distance = (i - j).abs()
        allowed = distance <= window
        if dilation > 1:
            allowed = allowed & (distance % dilation == 0)
        if sinks:
            allowed = allowed | (j < sinks)
        return allowed

    return rule


class Local(Pattern):  # its fields and frozen behaviour are Pattern's
    NAME = "local"
    SECTION = "local"
    Settings = LocalSettings

    def rule(self) -> PatternRule:
        return local_rule(self.settings.window, self.settings.dilation, self.settings.sinks)

    def words(self) -> str:
        settings = self.settings
        text = f"|i - j| <= {settings.window}"
        if settings.dilation > 1:
            text += f" and |i - j| is a multiple of {settings.dilation}"
        if settings.sinks:  # the sinks: the first keys, visible to every query
            text = f"({text} or j < {settings.sinks})"
        return f"query i attends key j when {text}"

    @classmethod
    def brief(cls, settings: LocalSettings) -> str:
        extras = (f", dilation {settings.dilation}" if settings.dilation > 1 else "") + (
            f", sinks {settings.sinks}" if settings.sinks else "")
        return f"window {settings.window}{extras}"

    def plan(self, context: PlanContext) -> BlockPlan:
        import torch

        from ..arith import ceil_div
        from ..block_plan import block_size_for_window
        from ..pieces import Fixed, Piece

        window, dilation = self.settings.window, self.settings.dilation
        one_sided = context.one_sided  # a prefix reaches past the diagonal
        if dilation > 1:
            # Only keys j = i (mod dilation) count: in each residue class a plain window of window // dilation
            # class rows, so the odd distances are never computed.
            near = window // dilation
            block = block_size_for_window(near, ceil_div(self.sizes.seq_len, dilation))
            at = context.positions(block)
            width = block + near + (0 if one_sided else near)
            pieces: list[Piece] = [at.residue_band(dilation, -near, width)]

            def in_window(i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
                first = (i // dilation // block) * block - near  # the class rows i's query block reads
                return (i % dilation == j % dilation) & (j // dilation >= first) & (j // dilation < first + width)
        else:
            block = block_size_for_window(window, self.sizes.seq_len)
            at = context.positions(block)
            width = block + window + (0 if one_sided else window)
            pieces = [at.band(-window, width)]  # the whole rule inside the band, sinks included

            def in_window(i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
                first = (i // block) * block - window  # the band of i's query block
                return (j >= first) & (j < first + width)

        sinks = min(self.settings.sinks, self.sizes.source_len)
        if sinks:
            # Sink keys the window piece does not hold, so that no pair is in two pieces.
            keys = torch.arange(sinks)[None, None, None, :]
            pieces.append(Fixed(torch.arange(sinks), at.allowed(keys, ~in_window(at.query, keys))))
        return at.plan(pieces)

    def keys_per_query(self) -> int:
        """An upper bound on the keys blocked reads per query (blocks of up to 128)."""
        return 128 + 2 * self.settings.window + self.settings.sinks
