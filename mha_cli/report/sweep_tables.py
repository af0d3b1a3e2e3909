"""The tables of a sweep summary, as plain strings, for the terminal and for Markdown."""

from __future__ import annotations

import csv
import io
from typing import Any

from ..machine_load import BUSY_SHARE
from ..results import MIN_RUNS, NOISY_IQR_RATIO
from .rows import format_seconds, gflops_cell, iqr_cell, machine_cell

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
            headers = [f"{first['path']} \\ {second['path']}"] + [str(v) for v in second["values"]]
            body = [[str(a)] + [cells.get((a, b), "-") for b in second["values"]] for a in first["values"]]
            tables.append((f"{impl}: median time", headers, body))
        else:
            headers = axes + ["status", "median", "IQR", "reps", "runs", "machine", "GFLOP/s (% peak)", "peak mem"]
            body = [
                [str(r[a]) for a in axes]
                + [
                    r["status"],
                    _cell(r) if r["status"] == "ok" else "-",
                    iqr_cell(r),
                    str(len([v for v in r["samples_s"] if v])) if r.get("samples_s") else "-",
                    str(r["runs"]) if r.get("runs") is not None else "-",
                    machine_cell(r),
                    gflops_cell(r["gflops"], r.get("peak_gflops")),
                    f"{r['peak_mem_bytes'] / 2**20:.1f} MiB" if r["peak_mem_bytes"] is not None else "-",
                ]
                for r in rows
            ]
            tables.append((f"{impl}", headers, body))
    return tables


def fastest_table(summary: dict[str, Any]) -> Table:
    axes = [a["path"] for a in summary["axes"]]
    body = [[str(f[a]) for a in axes] + [f["impl"], format_seconds(f["median_s"])] for f in summary["fastest"]]
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
                params = " ".join(f"{a['path']}={row[a['path']]}" for a in summary["axes"])
                lines.append(f"point {row['point']} ({params}) {row['impl']}: {row['status']}: {row['reason']}")
    return lines


def headline(summary: dict[str, Any]) -> str:
    """One line: which sweep (or shard of it), its status, and what became of its points."""
    c = summary["counts"]
    axes = ", ".join(f"{a['path']} in {a['values']}" for a in summary["axes"])
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
               "peak_gflops", "peak_mem_bytes", "max_abs_err", "ok", "reason"]
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


def write_plot(summary: dict[str, Any], path) -> bool:  # type: ignore[no-untyped-def]
    """Log-log time against the first swept parameter, one line per implementation (and other settings)."""
    figure = sweep_figure(summary)
    if figure is None:
        return False
    from .mask_render import save_figure

    save_figure(figure, path)
    return True


def sweep_figure(summary: dict[str, Any]):  # type: ignore[no-untyped-def]
    """The figure write_plot saves, or None when there is nothing to draw."""
    first = summary["axes"][0]["path"]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in summary["axes"][0]["values"]):
        return None
    from .mask_render import new_figure

    others = [a["path"] for a in summary["axes"][1:]]
    lines: dict[str, list[tuple[float, float]]] = {}
    order: dict[str, tuple[Any, ...]] = {}  # legend order: by implementation, then the other values as numbers
    for row in summary["rows"]:
        if row["status"] == "ok" and row["median_s"]:
            label = row["impl"] + "".join(f" {o}={row[o]}" for o in others)
            lines.setdefault(label, []).append((row[first], row["median_s"]))
            order[label] = (row["impl"], *(str(row[o]) if not isinstance(row[o], (int, float)) else row[o] for o in others))
    if not lines:
        return None
    from matplotlib.ticker import (
        FixedLocator,
        FuncFormatter,
        NullFormatter,
        NullLocator,
    )

    outside = len(lines) > LEGEND_INSIDE_MAX  # a legend this long would cover the lines
    figure = new_figure(figsize=(10 if outside else 7, 4.5), dpi=100)
    axes = figure.add_subplot()
    labels = sorted(lines, key=lambda label: order[label])
    for label, colour in zip(labels, distinct_colours(len(lines)), strict=True):
        points = lines[label]
        points.sort()
        axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label, color=colour)
    axes.set_xscale("log")
    axes.set_yscale("log")
    # Ticks at the values the sweep measured (128, 512, 2048), written out, not 2x10^2.
    measured = sorted({p[0] for points in lines.values() for p in points})
    axes.xaxis.set_major_locator(FixedLocator(measured))
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.xaxis.set_minor_locator(NullLocator())
    axes.xaxis.set_minor_formatter(NullFormatter())
    axes.set_xlabel(first)
    axes.set_ylabel("median time (s)")
    axes.set_title(f"mha sweep {summary['name']}: time against {first}", fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    if outside:
        axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
        figure.subplots_adjust(left=0.08, right=0.68, top=0.92, bottom=0.12)
    else:
        axes.legend(fontsize=7)
        figure.subplots_adjust(left=0.12, right=0.97, top=0.92, bottom=0.12)  # fixed margins: tight_layout costs ~0.4 s
    return figure


LEGEND_INSIDE_MAX = 6


def distinct_colours(count: int) -> list[Any]:
    """`count` colours, none repeated: tab10, then tab20, then evenly spaced along a wide colour map."""
    from matplotlib import colormaps

    if count <= 10:
        return [colormaps["tab10"](i) for i in range(count)]
    if count <= 20:
        return [colormaps["tab20"](i) for i in range(count)]
    return [colormaps["turbo"](i / (count - 1)) for i in range(count)]
