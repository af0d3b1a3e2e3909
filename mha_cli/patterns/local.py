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

if TYPE_CHECKING:
    import torch

    from ..block_plan import BlockPlan
    from ..config import Config
    from .base import PatternRule

NAME = "local"
RUNS_USER_CODE = False  # a built-in rule: `mha validate` may evaluate it
SECTION = "local"


class LocalConfig(Section):
    # Query i may attend key j when |i - j| <= window (with mask.causal: i - window <= j <= i).
    window: NonNegativeInt = 128
    dilation: PositiveInt = 1  # ... and |i - j| is a multiple of dilation
    sinks: NonNegativeInt = 0  # the first `sinks` keys are allowed for every query as well


Settings = LocalConfig


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


def rule(config: Config) -> PatternRule:
    settings = config.local_settings
    return local_rule(settings.window, settings.dilation, settings.sinks)


def words(config: Config) -> str:
    settings = config.local_settings
    text = f"|i - j| <= {settings.window}"
    if settings.dilation > 1:
        text += f" and |i - j| is a multiple of {settings.dilation}"
    if settings.sinks:  # the sinks: the first keys, visible to every query
        text = f"({text} or j < {settings.sinks})"
    return f"query i attends key j when {text}"


def brief(settings: LocalConfig) -> str:
    extras = (f", dilation {settings.dilation}" if settings.dilation > 1 else "") + (
        f", sinks {settings.sinks}" if settings.sinks else "")
    return f"window {settings.window}{extras}"


def varies(config: Config) -> tuple[bool, bool]:
    return False, False  # the same for every batch item and head


def problems(config: Config) -> list[tuple[str, str]]:
    return []  # any window works at any length


def plan(config: Config) -> BlockPlan:
    import torch

    from ..arith import ceil_div
    from ..block_plan import Fixed, Piece, Positions, block_size_for_window

    settings = config.local_settings
    window, dilation = settings.window, settings.dilation
    one_sided = config.mask.plain_causal  # a prefix reaches past the diagonal
    if dilation > 1:
        # Only keys j = i (mod dilation) count: in each residue class a plain window of window // dilation
        # class rows, so the odd distances are never computed.
        near = window // dilation
        block = block_size_for_window(near, ceil_div(config.seq_len, dilation))
        at = Positions(config, block)
        width = block + near + (0 if one_sided else near)
        pieces: list[Piece] = [at.residue_band(dilation, -near, width)]

        def in_window(i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
            first = (i // dilation // block) * block - near  # the class rows i's query block reads
            return (i % dilation == j % dilation) & (j // dilation >= first) & (j // dilation < first + width)
    else:
        block = block_size_for_window(window, config.seq_len)
        at = Positions(config, block)
        width = block + window + (0 if one_sided else window)
        pieces = [at.band(-window, width)]  # the whole rule inside the band, sinks included

        def in_window(i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
            first = (i // block) * block - window  # the band of i's query block
            return (j >= first) & (j < first + width)

    sinks = min(settings.sinks, config.source_length)
    if sinks:
        # Sink keys the window piece does not hold, so that no pair is in two pieces.
        keys = torch.arange(sinks)[None, None, None, :]
        pieces.append(Fixed(torch.arange(sinks), at.allowed(keys, ~in_window(at.query, keys))))
    return at.plan(pieces)


def keys_per_query(config: Config) -> int:
    """An upper bound on the keys blocked reads per query (blocks of up to 128)."""
    settings = config.local_settings
    return 128 + 2 * settings.window + settings.sinks


def extra_blocked_elements(config: Config) -> int:
    return 0
