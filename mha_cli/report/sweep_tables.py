"""The tables of a sweep summary, as plain strings, for the terminal and for Markdown."""

from __future__ import annotations

import csv
import io
from typing import Any

from ..machine_load import BUSY_SHARE
from ..results import MIN_RUNS, NOISY_IQR_RATIO
from ..yaml_source import value_text
from .rows import GBS_HEADER, bound_by_memory, format_seconds, gbs_text, gflops_cell, iqr_cell, machine_cell

Table = tuple[str, list[str], list[list[str]]]  # title, headers, rows


NOISY_MARK = " ~"
BUSY_MARK = " BUSY"


def _cell(row: dict[str, Any]) -> str:
    """A median with the noise and busy marks, or the status when there is no median."""
    if row["status"] == "ok":
        return format_seconds(row["median_s"]) + (NOISY_MARK if row.get("noisy") else "") + (BUSY_MARK if row.get("busy") else "")
    return row["status"].upper() if row["status"] in ("fail", "error", "crashed", "timeout") else row["status"]


def table_notes(summary: dict[str, Any]) -> list[str]:
    """What the marks in the tables mean, when a table uses one."""
    notes = []
    if any(row.get("noisy") and row["status"] == "ok" for row in summary["rows"]):
        notes.append(f"'{NOISY_MARK.strip()}' after a time: noisy (IQR above {NOISY_IQR_RATIO:.0%} of the median, or fewer "
                     f"than {MIN_RUNS} timed runs); rerun or raise timing.min_run_time")
    if any(row.get("busy") for row in summary["rows"]):
        notes.append(f"'{BUSY_MARK.strip()}': timed while other processes used more than {100 * BUSY_SHARE:.0f}% of the "
                     "CPUs: not to be trusted; rerun on a quiet machine")
    return notes


def impl_tables(summary: dict[str, Any]) -> list[Table]:
    """Per implementation: the swept parameters as rows (pivoted on the second axis when exactly two are swept)."""
    axes = [a["path"] for a in summary["axes"]]
    by_impl: dict[str, list[dict[str, Any]]] = {}
    for row in summary["rows"]:
        by_impl.setdefault(row["impl"], []).append(row)
    tables = []
    for impl, rows in by_impl.items():
        if len(axes) == 2:
            first, second = summary["axes"]
            cells = {(r[first["path"]], r[second["path"]]): _cell(r) for r in rows}
            headers = [f"{first['path']} \\ {second['path']}"] + [value_text(v) for v in second["values"]]
            body = [[value_text(a)] + [cells.get((a, b), "-") for b in second["values"]] for a in first["values"]]
            tables.append((f"{impl}: median time", headers, body))
        else:
            # The bound that matters for these shapes, as `mha run` shows it: GB/s when every timed point is memory-bound.
            bounds = [bound_by_memory(r.get("flops"), r.get("bytes_moved"), r.get("peak_gflops"), r.get("bandwidth_gb_per_s"))
                      for r in rows if r["status"] == "ok"]
            by_memory = bool(bounds) and all(bounds)
            headers = axes + ["status", "median", "IQR", "reps", "runs", "machine",
                              GBS_HEADER if by_memory else "GFLOP/s (% peak)", "peak mem"]
            body = [
                [value_text(r[a]) for a in axes]
                + [
                    r["status"],
                    _cell(r) if r["status"] == "ok" else "-",
                    iqr_cell(r),
                    str(len([v for v in r["samples_s"] if v])) if r.get("samples_s") else "-",
                    str(r["runs"]) if r.get("runs") is not None else "-",
                    machine_cell(r),
                    gbs_text(r.get("gb_per_s"), r.get("bandwidth_gb_per_s")) if by_memory
                    else gflops_cell(r["gflops"], r.get("peak_gflops")),
                    f"{r['peak_mem_bytes'] / 2**20:.1f} MiB" if r["peak_mem_bytes"] is not None else "-",
                ]
                for r in rows
            ]
            tables.append((f"{impl}", headers, body))
    return tables


def fastest_table(summary: dict[str, Any]) -> Table:
    axes = [a["path"] for a in summary["axes"]]
    body = [[value_text(f[a]) for a in axes] + [f["impl"], format_seconds(f["median_s"])] for f in summary["fastest"]]
    return ("fastest implementation per point", axes + ["fastest", "median"], body)


def scaling_table(summary: dict[str, Any]) -> Table | None:
    if not summary["scaling"]:
        return None
    body = [
        [s["variant"], s["impl"], f"{s['exponent']:.2f}", ", ".join(map(str, s["seq_lens"])), str(s["points"])]
        for s in summary["scaling"]
    ]
    return ("time ~ seq_len^exponent (least squares on log-log, other parameters held apart)",
            ["variant", "impl", "exponent", "seq_len values", "points"], body)


def skipped_lines(summary: dict[str, Any]) -> list[str]:
    seen, lines = set(), []
    for row in summary["rows"]:
        if row["status"] in ("skipped", "crashed", "timeout", "fail", "error") and row["reason"]:
            key = (row["point"], row["reason"])
            if key not in seen:
                seen.add(key)
                params = " ".join(f"{a['path']}={value_text(row[a['path']])}" for a in summary["axes"])
                lines.append(f"point {row['point']} ({params}) {row['impl']}: {row['status']}: {row['reason']}")
    return lines


def headline(summary: dict[str, Any]) -> str:
    """One line: which sweep (or shard of it), its status, and what became of its points."""
    c = summary["counts"]
    axes = ", ".join(f"{a['path']} in {value_text(a['values'])}" for a in summary["axes"])
    busy = sum(1 for row in summary["rows"] if row.get("busy"))
    axes += f"; BUSY MACHINE: {busy} row(s) timed while other processes used the CPUs" if busy else ""
    parts = [f"{c['done']} done"] + [f"{c[k]} {k}" for k in ("skipped", "crashed", "timeout", "pending") if c.get(k)]
    shards = summary["shards"]
    if len(shards) == 1 and shards[0] != "1/1":
        if not c["in_this_sweep"]:
            return (f"sweep {summary['name']}, shard {shards[0]}: empty (all {c['points']} points of the grid fall to "
                    f"other shards); {axes}")
        finished = c["in_this_sweep"] - c["pending"]
        return (f"sweep {summary['name']}, shard {shards[0]} ({summary['status']}): {finished} of its "
                f"{c['in_this_sweep']} points ({c['points']} in the whole grid): {', '.join(parts)}; {axes}")
    merged = f" merged from shards {', '.join(shards)}" if len(shards) > 1 else ""
    return f"sweep {summary['name']}{merged} ({summary['status']}): {c['points']} points: {', '.join(parts)}; {axes}"


def all_tables(summary: dict[str, Any]) -> list[Table]:
    tables = impl_tables(summary) + [fastest_table(summary)]
    scale = scaling_table(summary)
    return tables + ([scale] if scale else [])


def summary_csv(summary: dict[str, Any]) -> str:
    axes = [a["path"] for a in summary["axes"]]
    columns = ["point", *axes, "impl", "status", "median_s", "iqr_s", "runs", "noisy", "load", "steal", "busy", "gflops",
               "peak_gflops", "gb_per_s", "bandwidth_gb_per_s", "peak_mem_bytes", "max_abs_err", "ok", "reason"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in summary["rows"]:
        writer.writerow(["" if row.get(c) is None else row.get(c) for c in columns])
    return buffer.getvalue()


def summary_markdown(summary: dict[str, Any]) -> str:
    from .markdown import markdown_table

    parts = [f"# mha sweep: {summary['name']}", "", headline(summary), ""]
    for title, headers, body in all_tables(summary):
        parts += [f"## {title}", "", markdown_table(headers, body), ""]
    marks = table_notes(summary)
    parts += [*marks, ""] if marks else []
    notes = skipped_lines(summary)
    if notes:
        parts += ["## Not run or not ok", "", *[f"- {line}" for line in notes], ""]
    return "\n".join(parts)


def print_summary(console, summary: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    from rich.markup import escape
    from rich.table import Table as RichTable

    console.print(escape(headline(summary)), highlight=False)
    for title, headers, body in all_tables(summary):
        table = RichTable(title=escape(title), title_justify="left", header_style="bold")
        for header in headers:
            table.add_column(escape(header), no_wrap=True)
        for row in body:
            table.add_row(*(escape(cell) for cell in row))
        console.print(table)
    for line in table_notes(summary):
        console.print(escape(line), highlight=False)
    for line in skipped_lines(summary):
        console.print(f"  • {escape(line)}", highlight=False)
