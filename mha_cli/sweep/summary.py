"""From point records to what a sweep found: one row per (point, implementation),
the fastest implementation per point, and scaling exponents. Pure functions of the
records (sorted by point), so a merged sweep summarises exactly like an unsharded one.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, TypedDict

from .. import __version__
from ..clock import utc_now_iso
from ..results import SCHEMA_VERSION, Result
from .grid import Grid

Record = dict[str, Any]


class SweepSummary(TypedDict):
    """What a sweep found: summary.json, `mha sweep --json`, and what run_sweep returns."""

    schema_version: int
    mha_version: str
    created: str  # UTC, ISO 8601
    status: str  # complete | partial (points pending) | interrupted
    shards: list[str]  # "I/N" of the shards behind it
    name: str
    axes: list[dict[str, Any]]  # {path, values} per swept field
    base_config: dict[str, Any]
    env: dict[str, Any] | None  # of the first point that ran
    counts: dict[str, int]  # points, in_this_sweep, done, skipped, crashed, timeout, pending
    ok: bool  # what `mha sweep` exits 0 on: a point produced a result, and nothing crashed, timed out or failed
    problem: str | None  # why not, in words (None when ok)
    rows: list[dict[str, Any]]  # one per (point, implementation): every result field, then the swept values
    fastest: list[dict[str, Any]]  # the fastest implementation per point
    scaling: list[dict[str, Any]]  # exponent of time in seq_len per (variant, implementation)


def point_results(grid: Grid, record: Record) -> list[Result]:
    """The results of one point, read as typed records (store.py checked they read); a point that did not
    run has one per planned implementation, carrying the point's status and reason."""
    report = record.get("report")
    if report is not None:
        return [Result.from_dict(result, f"point {record['point']}") for result in report["results"]]
    base = grid.base
    return [Result(impl, base["variant"], base["dtype"], base["device"], record["status"], reason=record["reason"])
            for impl in base["impls"]]


def result_rows(grid: Grid, records: list[Record]) -> list[dict[str, Any]]:
    """One row per (point, implementation): the point, every field of its result, the swept values."""
    return [{"point": record["point"], **result.to_dict(), **record["params"]}
            for record in sorted(records, key=lambda r: r["point"]) for result in point_results(grid, record)]


def fastest_per_point(rows: list[dict[str, Any]], axes: list[str]) -> list[dict[str, Any]]:
    best: dict[int, dict[str, Any]] = {}
    for row in rows:
        if row["status"] != "ok" or row["median_s"] is None:
            continue
        current = best.get(row["point"])
        if current is None or row["median_s"] < current["median_s"]:
            best[row["point"]] = row
    return [
        {"point": point, **{a: best[point][a] for a in axes}, "impl": best[point]["impl"], "median_s": best[point]["median_s"]}
        for point in sorted(best)
    ]


def scaling_exponent(samples: list[tuple[Any, float, float]]) -> float | None:
    """Slope of log(time) on log(length), pooled over groups that differ in other parameters.

    samples: (group, length, seconds). Each group keeps its own level (a fixed effect),
    so a sweep over heads *and* lengths still gives one exponent for the length.
    """
    groups: dict[Any, list[tuple[float, float]]] = defaultdict(list)
    for group, length, seconds in samples:
        if length > 0 and seconds and seconds > 0:
            groups[group].append((math.log(length), math.log(seconds)))
    numerator = denominator = 0.0
    for values in groups.values():
        if len({x for x, _ in values}) < 2:
            continue
        mean_x = sum(x for x, _ in values) / len(values)
        mean_y = sum(y for _, y in values) / len(values)
        numerator += sum((x - mean_x) * (y - mean_y) for x, y in values)
        denominator += sum((x - mean_x) ** 2 for x, _ in values)
    return numerator / denominator if denominator > 0 else None


def scaling(rows: list[dict[str, Any]], grid: Grid) -> list[dict[str, Any]]:
    axes = [a.path for a in grid.axes]
    if "seq_len" not in axes:
        return []
    others = [a for a in axes if a not in ("seq_len", "variant")]
    samples: dict[tuple[str, str], list[tuple[Any, float, float]]] = defaultdict(list)
    for row in rows:
        if row["status"] != "ok":
            continue
        variant = row.get("variant", grid.base["variant"])
        samples[(variant, row["impl"])].append((tuple(row[a] for a in others), row["seq_len"], row["median_s"]))
    out = []
    for (variant, impl), values in sorted(samples.items()):
        exponent = scaling_exponent(values)
        if exponent is not None:
            lengths = sorted({length for _, length, _ in values})
            out.append({"variant": variant, "impl": impl, "exponent": exponent, "points": len(values), "seq_lens": lengths})
    return out


def counts(grid: Grid, records: list[Record], owned: int) -> dict[str, int]:
    tally = {"points": grid.size(), "in_this_sweep": owned, "done": 0, "skipped": 0, "crashed": 0, "timeout": 0}
    for record in records:
        tally[record["status"]] = tally.get(record["status"], 0) + 1
    tally["pending"] = owned - len(records)
    return tally


def summarize(grid: Grid, records: list[Record], *, shards: list[str], owned: int, interrupted: bool = False) -> SweepSummary:
    rows = result_rows(grid, records)
    axes = [a.path for a in grid.axes]
    tally = counts(grid, records, owned)
    status = "interrupted" if interrupted else ("complete" if tally["pending"] == 0 else "partial")
    env = next((r["report"]["env"] for r in records if r.get("report")), None)
    return {
        "schema_version": SCHEMA_VERSION,
        "mha_version": __version__,
        "created": utc_now_iso(),
        "status": status,
        "shards": shards,
        "name": grid.base["name"],
        "axes": [{"path": a.path, "values": a.values} for a in grid.axes],
        "base_config": grid.base,
        "env": env,
        "counts": tally,
        "ok": (found := problem(tally, rows)) is None,
        "problem": found,
        "rows": rows,
        "fastest": fastest_per_point(rows, axes),
        "scaling": scaling(rows, grid),
    }


def problem(counts: dict[str, int], rows: list[dict[str, Any]]) -> str | None:
    """Why a sweep must not pass as a success (`mha sweep` exits 1), or None when it may: no point produced a
    result, a point crashed or timed out, or an implementation failed its check or crashed."""
    if counts["in_this_sweep"] and counts["done"] == 0:
        reasons = [row["reason"] for row in sorted(rows, key=lambda row: row["point"]) if row.get("reason")]
        because = f"; first reason: {reasons[0]}" if reasons else ""
        return (f"no point produced a result ({counts['skipped']} skipped, {counts['crashed']} crashed, "
                f"{counts['timeout']} timed out){because}")
    failed = sorted({row["impl"] for row in rows if row["status"] in ("fail", "error")})
    problems = [f"{counts[status]} point(s) {words}" for status, words in (("crashed", "crashed"), ("timeout", "timed out"))
                if counts[status]]
    if failed:
        problems.append(f"{', '.join(failed)} failed the reference check or crashed at some points")
    return "; ".join(problems) if problems else None
