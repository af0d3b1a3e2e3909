"""Sweep summaries as a reader sees them: tables, marks and their legend, shard headlines (the picture: test_sweep_plots)."""

from __future__ import annotations

from typing import Any

from mha_cli.report.sweep_tables import headline, impl_tables, summary_markdown


def summary_of(rows: list[dict[str, Any]], axes: dict[str, list[Any]], shards: list[str] | None = None,
               owned: int | None = None) -> dict[str, Any]:
    points = 1
    for values in axes.values():
        points *= len(values)
    owned = points if owned is None else owned
    done = len({r["point"] for r in rows})
    return {
        "name": "s", "status": "complete", "shards": shards or ["1/1"],
        "axes": [{"path": p, "values": v} for p, v in axes.items()],
        "counts": {"points": points, "in_this_sweep": owned, "done": done, "skipped": 0, "crashed": 0, "timeout": 0,
                   "pending": owned - done},
        "rows": rows, "fastest": [], "scaling": [],
    }


def row(point: int, impl: str = "sdpa", noisy: bool = False, **params: Any) -> dict[str, Any]:
    return {"point": point, "impl": impl, "status": "ok", "median_s": 1e-3 * (point + 1), "iqr_s": 1e-5, "runs": 10,
            "noisy": noisy, "gflops": 1.0, "peak_mem_bytes": 2**20, "reason": "", **params}


def test_single_parameter_tables_mark_noisy_cells_and_explain_the_mark() -> None:
    summary = summary_of([row(0, num_heads=1), row(1, noisy=True, num_heads=2)], {"num_heads": [1, 2]})
    ((_, headers, body),) = impl_tables(summary)
    median = headers.index("median")
    assert body[0][median] == "1 ms" and body[1][median] == "2 ms ~"
    assert "'~' after a time: noisy" in summary_markdown(summary)
    two_axes = summary_of([row(0, noisy=True, num_heads=1, seq_len=8)], {"num_heads": [1], "seq_len": [8]})
    ((_, _, pivot),) = impl_tables(two_axes)
    assert pivot[0][1] == "1 ms ~"  # the same mark as the single-parameter table


def test_no_mark_means_no_legend() -> None:
    assert "noisy" not in summary_markdown(summary_of([row(0, num_heads=1)], {"num_heads": [1]}))


def test_a_shard_headline_counts_its_own_points_and_an_empty_shard_says_so() -> None:
    shard = summary_of([row(1, num_heads=2), row(5, num_heads=6), row(9, num_heads=10)],
                       {"num_heads": list(range(1, 13))}, shards=["2/4"], owned=3)
    assert "shard 2/4 (complete): 3 of its 3 points (12 in the whole grid)" in headline(shard)
    empty = summary_of([], {"num_heads": [1, 2, 3]}, shards=["4/4"], owned=0)
    assert "shard 4/4: empty (all 3 points of the grid fall to other shards)" in headline(empty)
    merged = summary_of([row(0, num_heads=1)], {"num_heads": [1]}, shards=["1/2", "2/2"])
    assert "merged from shards 1/2, 2/2" in headline(merged)
