"""What the shape and timing tables hold, as plain strings (shared by every renderer)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..mask_spec import MaskSpec
from ..memory import format_bytes
from ..machine_load import BUSY_SHARE
from ..results import MIN_RUNS, NOISY_IQR_RATIO, Result, RunReport

RESULT_HEADERS = ["impl", "status", "median", "IQR", "reps", "runs", "machine", "GFLOP/s (% peak)", "vs torch", "peak mem",
                  "max err", "atol"]
COMPILE_HEADER = "compile"  # only when an implementation compiled (flex)
GRAD_HEADER = "grad err"  # only for a training pass: the largest gradient error against float64
PLAN_HEADER = "plan"  # only when an implementation built a block plan (blocked on a pattern)
SHAPE_HEADERS = ["tensor", "shape", "axes", "note"]


def gflops_cell(gflops: float | None, peak: float | None) -> str:
    """GFLOP/s and its share of the machine's matmul peak: "26.1 (17%)"."""
    if gflops is None:
        return "-"
    return f"{gflops:.2f} ({100 * gflops / peak:.0f}%)" if peak else f"{gflops:.2f}"


GBS_HEADER = "GB/s (% bandwidth)"


def bound_by_memory(flops: float | None, moved: float | None, peak: float | None, bandwidth: float | None) -> bool | None:
    """Fewer FLOPs per byte moved than this machine's matmul peak per byte of its copy bandwidth: the time is
    reading memory, and GB/s is the figure that matters. None when a number is missing (training, old results)."""
    if not (flops and moved and peak and bandwidth):
        return None
    return flops / moved < peak / bandwidth


def memory_bound(results: Sequence[Result]) -> bool:
    """The shape's bound is memory, not arithmetic (decoding against a long cache), judged on the first row
    that says: one shape, one bound for the table."""
    for r in results:
        found = bound_by_memory(r.flops, r.bytes_moved, r.peak_gflops, r.bandwidth_gb_per_s)
        if found is not None:
            return found
    return False


def gbs_cell(result: Result) -> str:
    """GB/s and its share of the machine's copy bandwidth: "17.0 (51%)"."""
    return gbs_text(result.gb_per_s, result.bandwidth_gb_per_s)


def gbs_text(gb_per_s: float | None, bandwidth: float | None) -> str:
    if gb_per_s is None:
        return "-"
    share = f" ({100 * gb_per_s / bandwidth:.0f}%)" if bandwidth else ""
    return f"{gb_per_s:.2f}{share}"


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def iqr_cell(result: Result | dict[str, Any]) -> str:
    """±IQR as a share of the median; "n/a" where too few runs give none worth the name (never ±0.0%)."""
    get = result.get if isinstance(result, dict) else lambda name: getattr(result, name)
    median, iqr, runs = get("median_s"), get("iqr_s"), get("runs")
    if not median:
        return "-"
    if iqr is None or (runs is not None and runs < MIN_RUNS):
        return f"n/a ({runs} run{'s' if runs != 1 else ''}) noisy" if runs is not None else "n/a"
    share = 100 * iqr / median
    return f"±{share:.1f}%" + (" noisy" if get("noisy") else "")


def machine_cell(result: Result | dict[str, Any]) -> str:
    """What the rest of the machine did while the row was timed: "quiet 2%", "BUSY 48%", or "-" (unknown)."""
    get = result.get if isinstance(result, dict) else lambda name: getattr(result, name)
    load = get("load")
    if load is None:
        return "-"
    share = 100 * (load + (get("steal") or 0))
    return f"BUSY {share:.0f}%" if get("busy") else f"quiet {share:.0f}%"


def speedup_cell(result: Result) -> str:
    """vs torch, with an interval (at least 90%) for the median of the repetitions' paired ratios."""
    if result.speedup_vs_torch is None:
        return "-"
    low_high = result.speedup_interval
    return f"{result.speedup_vs_torch:.2f}x" + (f" ({low_high[0]:.2f}-{low_high[1]:.2f})" if low_high and
                                                 low_high[0] != low_high[1] else "")


def result_table(results: Sequence[Result]) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the timing table; compile-time and planning-time columns only when
    something compiled or planned (neither is in the median)."""
    extras = [(header, name) for header, name in ((COMPILE_HEADER, "compile_s"), (PLAN_HEADER, "plan_s"))
              if any(getattr(r, name) is not None for r in results)]
    gradients = any(r.grad_max_abs_err is not None for r in results)
    bandwidth_bound = memory_bound(results)
    headers = RESULT_HEADERS + ([GRAD_HEADER] if gradients else []) + [header for header, _ in extras]
    if bandwidth_bound:  # the column that matters for this shape
        headers = [GBS_HEADER if header == "GFLOP/s (% peak)" else header for header in headers]
    rows = [
        result_row(r, bandwidth_bound)
        + ([f"{r.grad_max_abs_err:.2e}" if r.grad_max_abs_err is not None else "-"] if gradients else [])
        + [format_seconds(getattr(r, name)) for _, name in extras]
        for r in results
    ]
    return headers, rows


def result_row(result: Result, bandwidth_bound: bool = False) -> list[str]:
    return [
        result.impl,
        result.status.upper() if result.status == "fail" else result.status,
        format_seconds(result.median_s),
        iqr_cell(result),
        str(len([s for s in result.samples_s if s])) if result.samples_s else "-",
        str(result.runs) if result.runs is not None else "-",
        machine_cell(result),
        gbs_cell(result) if bandwidth_bound else gflops_cell(result.gflops, result.peak_gflops),
        speedup_cell(result),
        format_bytes(result.peak_mem_bytes) if result.peak_mem_bytes is not None else "-",
        f"{result.max_abs_err:.2e}" if result.max_abs_err is not None else "-",
        f"{result.atol:.0e}" if result.atol is not None else "-",
    ]


def shape_rows(report: RunReport) -> list[list[str]]:
    return [
        [row.tensor, "None" if row.shape is None else "(" + ", ".join(map(str, row.shape)) + ")", row.axes, row.note]
        for row in report.shape_table
    ]


def notes(results: Sequence[Result]) -> list[str]:
    """One line per result that has something to say (failures, skips, undefined rows, noise)."""
    lines = [f"{r.impl} ({r.status}): {r.reason}" for r in results if r.reason]
    peaks = {r.peak_gflops for r in results if r.peak_gflops and r.gflops is not None}
    bandwidths = {r.bandwidth_gb_per_s for r in results if r.bandwidth_gb_per_s and r.gb_per_s is not None}
    if memory_bound(results) and bandwidths:
        lines.append(
            f"memory-bound shape (fewer FLOPs per byte than the machine's balance): GB/s count the bytes K and V "
            f"must be read (once per key/value head, only keys some query may attend), q and the output; % bandwidth "
            f"is of this machine's copy bandwidth, {max(bandwidths):.1f} GB/s at this thread count (`mha env` shows the "
            "probe; --reprobe measures it again); JSON has GFLOP/s too"
        )
    elif peaks:
        lines.append(
            f"GFLOP/s count allowed pairs only; % peak is of this machine's matmul peak, {max(peaks):.1f} GFLOP/s "
            "in this dtype and thread count (`mha env` shows the probe; --reprobe measures it again)"
        )
    busy = [r for r in results if r.busy]
    if busy:
        worst = max(100 * ((r.load or 0) + (r.steal or 0)) for r in busy)
        lines.append(f"BUSY: {', '.join(r.impl for r in busy)} timed while other processes used up to {worst:.0f}% of the "
                     f"CPUs (more than {100 * BUSY_SHARE:.0f}%): those times are not to be trusted; rerun on a quiet machine")
    reps = max((len(r.samples_s) for r in results if r.samples_s), default=0)
    if reps > 1:
        lines.append(f"each time is the median of {reps} repetitions, each in a fresh process, the implementations "
                     "interleaved; IQR over the repetitions; vs torch: the median of the ratios in each (and a 90% interval)")
    noisy = [r.impl for r in results if r.noisy]
    if noisy:
        lines.append(
            f"noisy timings (IQR above {NOISY_IQR_RATIO:.0%} of the median, or fewer than {MIN_RUNS} runs) for "
            f"{', '.join(noisy)}: the machine was busy or the budget too short; rerun or raise timing.min_run_time"
        )
    return lines


def pattern_words(config: dict[str, Any]) -> str:
    """The variant and its settings, briefly: "local (window 128)". Defaults come from the pattern modules."""
    from ..patterns import brief

    return brief(config["variant"], config.get(config["variant"]) if config["variant"] != "full" else None)


def summary_line(report: RunReport) -> str:
    from ..score_mods import brief as mod_brief

    config, env = report.config, report.env
    heads = config["num_heads"]
    decode = config.get("decode")
    source = (decode["cache_len"] + config["seq_len"]) if decode else (config["source_len"] or config["seq_len"])
    mask = MaskSpec.of_saved(config["mask"], decode["cache_len"] if decode else None).names(source, seq_len=config["seq_len"])
    density = next((r.density for r in report.results if r.density is not None), None)
    busy = any(r.busy for r in report.results)
    return (
        f"{config['name']}: {config['attention']} attention, variant {pattern_words(config)}, "
        f"E={config['embed_dim']}, H={heads} (d={config['embed_dim'] // heads}), "
        + (f"H_kv={kv_heads} (grouped), " if (kv_heads := config.get("num_kv_heads")) not in (None, heads) else "")
        + f"N={config['batch_size']}, "
        f"L={config['seq_len']}, S={source}" + (f" (decoding: {decode['cache_len']} cached + {config['seq_len']} new)" if decode else "")
        + f", mask: {', '.join(mask) or 'none'}"
        + (f", score mod: {mod_brief(config['score_mod'])}" if config.get("score_mod") else "")
        + (f", density {density:.4g}" if density is not None and density < 1 else "")
        + f"; timing scope {config['timing']['scope']}, pass {config['timing'].get('pass', 'forward')}; "
        f"{config['dtype']} on {env['device']}, {env['num_threads']} threads, torch {env['torch']}"
        + ("; BUSY MACHINE: other processes used the CPUs while timing" if busy else "")
    )


def verdict(report: RunReport) -> str:
    failed = [r.impl for r in report.results if r.status in ("fail", "error")]
    checked = [r.impl for r in report.results if r.status == "ok"]
    if failed:
        return f"FAIL: {', '.join(failed)} did not agree with the float64 reference or did not run"
    if not checked:
        return "FAIL: nothing was measured: every implementation was skipped (the reasons are above)"
    verb = "agrees" if len(checked) == 1 else "agree"
    return f"OK: {', '.join(checked)} {verb} with the float64 reference"
