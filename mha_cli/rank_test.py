"""Is CURRENT slower than BASE? Mann-Whitney U on the samples, and an interval for the ratio of their times.

The gate (compare.py) judges a timing change with a rank test on the stored
repetitions, as asv and Google benchmark's compare.py do: it assumes nothing
about the shape of timing noise (bimodal, heavy-tailed), only that the
repetitions of one side are exchangeable. Small samples get the exact null
distribution (every way of splitting the pooled ranks, ties kept as mid-ranks);
large ones the normal approximation with the tie correction. The ratio's
interval is Hodges-Lehmann's estimate with the Moses confidence interval on
log times (the pairwise log ratios between the two sides). No torch, no scipy.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

EXACT_LIMIT = 200_000  # splits of the pooled sample enumerated at most; above, the normal approximation
MIN_SAMPLES = 4  # per side: with 4 and 4 the smallest one-sided p is 1/70 = 0.014, below ALPHA
ALPHA = 0.05  # one-sided significance level of "slower"
CONFIDENCE = 0.90  # of the interval for the ratio


def mid_ranks(values: Sequence[float]) -> list[float]:
    """Ranks 1..n, ties sharing the mean of the ranks they span."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        stop = start
        while stop + 1 < len(order) and values[order[stop + 1]] == values[order[start]]:
            stop += 1
        for position in range(start, stop + 1):
            ranks[order[position]] = (start + stop) / 2 + 1
        start = stop + 1
    return ranks


def p_slower(base: Sequence[float], current: Sequence[float]) -> float:
    """One-sided p-value that CURRENT's values tend to be larger than BASE's (Mann-Whitney U).
    1.0 when either side is empty."""
    n, m = len(base), len(current)
    if not n or not m:
        return 1.0
    ranks = mid_ranks([*base, *current])
    observed = sum(ranks[n:])  # the rank sum of CURRENT: large when it is slower
    if math.comb(n + m, m) <= EXACT_LIMIT:
        sums = [sum(ranks[i] for i in chosen) for chosen in itertools.combinations(range(n + m), m)]
        return sum(1 for s in sums if s >= observed - 1e-9) / len(sums)
    mean = m * (n + m + 1) / 2
    ties = sum(count ** 3 - count for count in _tie_counts(ranks))
    variance = n * m / 12 * ((n + m + 1) - ties / ((n + m) * (n + m - 1)))
    if variance <= 0:
        return 1.0
    z = (observed - mean - 0.5) / math.sqrt(variance)  # continuity correction
    return 0.5 * math.erfc(z / math.sqrt(2))


def _tie_counts(ranks: list[float]) -> list[int]:
    counts: dict[float, int] = {}
    for rank in ranks:
        counts[rank] = counts.get(rank, 0) + 1
    return [c for c in counts.values() if c > 1]


def _u_null_cdf(n: int, m: int) -> list[float]:
    """P(U <= u) for u = 0..n*m under the null (no ties), by the classic recurrence on counts."""
    # counts[i][j][u]: arrangements of i and j items with u (x < y) pairs; built up row by row.
    previous = [[1] + [0] * (n * m) for _ in range(m + 1)]  # i = 0: U is 0 whatever j
    for i in range(1, n + 1):
        row = [[0] * (n * m + 1) for _ in range(m + 1)]
        row[0][0] = 1
        for j in range(1, m + 1):
            for u in range(n * m + 1):
                # The largest item is from the j side (it beats all i items: +i pairs) or from the i side.
                row[j][u] = (row[j - 1][u - i] if u >= i else 0) + previous[j][u]
        previous = row
    counts = previous[m]
    total = math.comb(n + m, n)
    cdf, running = [], 0
    for count in counts:
        running += count
        cdf.append(running / total)
    return cdf


@dataclass(frozen=True)
class RatioInterval:
    """CURRENT / BASE: Hodges-Lehmann's estimate and a distribution-free interval around it."""

    estimate: float
    low: float
    high: float
    confidence: float


def ratio_interval(base: Sequence[float], current: Sequence[float], confidence: float = CONFIDENCE) -> RatioInterval | None:
    """The median of every pairwise ratio current_j / base_i, within the Moses interval at `confidence`
    (the widest the sample sizes allow when they are too small for it). None without positive values."""
    xs, ys = [v for v in base if v > 0], [v for v in current if v > 0]
    if not xs or not ys:
        return None
    logs = sorted(math.log(y) - math.log(x) for x in xs for y in ys)
    middle = len(logs) // 2
    estimate = logs[middle] if len(logs) % 2 else (logs[middle - 1] + logs[middle]) / 2
    # k: the largest count of extreme pairs that may lie outside the interval on each side.
    cdf = _u_null_cdf(len(xs), len(ys))
    tail = (1 - confidence) / 2
    k = max((u + 1 for u, p in enumerate(cdf) if p <= tail), default=0)
    low, high = logs[min(k, len(logs) - 1)], logs[max(len(logs) - 1 - k, 0)]
    covered = 1 - 2 * cdf[k - 1] if k else 1.0
    return RatioInterval(math.exp(estimate), math.exp(low), math.exp(high), covered)


def median_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """A distribution-free interval for the median of `values`: order statistics x(k) and x(n+1-k), k the
    largest with P(Binomial(n, 1/2) < k) <= (1 - confidence) / 2 (the widest, min and max, for small n).
    With 15 values: the 4th and 12th, 96% coverage. None when there are none."""
    ordered = sorted(values)
    n = len(ordered)
    if not n:
        return None
    tail, k, below = (1 - confidence) / 2, 1, 0.0
    while True:
        below += math.comb(n, k - 1) / 2**n  # P(Binomial(n, 1/2) <= k - 1)
        if below > tail or k > n // 2:
            break
        k += 1
    k = max(1, k - 1)
    return ordered[k - 1], ordered[n - k]


def paired_ratios(numerators: Sequence[float | None] | None, denominators: Sequence[float | None] | None) -> list[float]:
    """Per repetition, numerator over denominator, for the repetitions both sides have (a lost one is None: the
    pairs stay aligned by repetition index, never shifted)."""
    return [a / b for a, b in zip(numerators or [], denominators or [], strict=False) if a and b]
