"""A time axis a person can read: one unit for every value, log only when the values span more than ten times,
ticks written as plain numbers (50, 100, 200), never 5x10^-5."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

LOG_SPAN = 10.0  # largest / smallest above this: a linear axis would flatten the small values to nothing
UNITS = ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns"))


def time_unit(seconds: Iterable[float]) -> tuple[float, str]:
    """The largest unit in which the smallest positive value is still at least 1 (so no tick reads 0.00005)."""
    positive = [s for s in seconds if s and s > 0]
    smallest = min(positive) if positive else 1.0
    for scale, name in UNITS:
        if smallest >= scale:
            return scale, name
    return UNITS[-1]


def spans_widely(values: Iterable[float]) -> bool:
    """True when the largest positive value is more than LOG_SPAN times the smallest."""
    positive = [v for v in values if v and v > 0]
    return bool(positive) and max(positive) / min(positive) > LOG_SPAN


def set_time_scale(axes: Any, values: list[float], log: bool) -> None:
    """Scale, limits and ticks of `axes`' y axis for `values` (already in the unit the label names).

    Linear axes start at zero so bar heights and gaps compare honestly; log axes get ticks at 1, 2, 5
    per decade (only powers of ten beyond three decades) so even a span of 10-30x has labelled ticks.
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    positive = [v for v in values if v > 0]
    if not positive:
        return
    low, high = min(positive), max(positive)
    if not log:
        axes.set_yscale("linear")
        axes.set_ylim(0.0, high * 1.08)
        return
    axes.set_yscale("log")
    axes.set_ylim(low / 1.4, high * 1.4)
    subs = (1.0, 2.0, 5.0) if math.log10(high / low) <= 3 else (1.0,)
    axes.yaxis.set_major_locator(LogLocator(base=10.0, subs=subs))
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.yaxis.set_minor_formatter(NullFormatter())
