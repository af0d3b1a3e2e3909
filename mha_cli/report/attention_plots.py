"""Pictures of attention weights (per head) and of results (a run's bars, a sweep's scaling)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from .mask_render import SHADES, new_figure, save_figure

MAX_CELLS = 256  # a heatmap side longer than this is shown block-averaged


def downsample(weights: torch.Tensor, allowed: torch.Tensor, cells: int = MAX_CELLS) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """(h, L, S) weights and their (h, L, S) masks -> block means no larger than cells x cells, and the block sizes.

    A cell counts as masked when every pair in it is masked."""
    _, length, source = weights.shape
    row_block, col_block = math.ceil(length / cells), math.ceil(source / cells)
    if row_block == 1 and col_block == 1:
        return weights, allowed, 1, 1
    pooled = torch.nn.functional.avg_pool2d(
        weights.nan_to_num(0.0)[:, None], (row_block, col_block), ceil_mode=True
    )[:, 0]
    open_cells = torch.nn.functional.max_pool2d(allowed.float()[:, None], (row_block, col_block), ceil_mode=True)[:, 0] > 0
    return pooled, open_cells, row_block, col_block


def save_weights_png(weights: torch.Tensor, allowed: torch.Tensor, heads: list[int], title: str, path: Path) -> tuple[int, int]:
    """weights_figure written to `path`; returns the block sizes (1, 1 when every pair has its own cell)."""
    figure, row_block, col_block = weights_figure(weights, allowed, heads, title)
    save_figure(figure, path)
    return row_block, col_block


def weights_figure(weights: torch.Tensor, allowed: torch.Tensor, heads: list[int], title: str):  # type: ignore[no-untyped-def]
    """A grid of heatmaps, one per head: query rows x key columns; masked pairs in grey.

    The axes count positions (also when long sequences are shown as block means), cells are
    square when L = S, and the title wraps to the figure's width so one head never clips it.
    """
    import textwrap

    import numpy as np

    shown, open_cells, row_block, col_block = downsample(weights.float(), allowed)
    length, source = allowed.shape[-2:]
    count = len(heads)
    cols = min(4, count)
    rows = math.ceil(count / cols)
    width = max(6.0, 3.2 * cols + 1.6)
    lines = textwrap.wrap(title, width=int(width * 13))
    if row_block > 1 or col_block > 1:
        lines.append(f"L, S above {MAX_CELLS}: each cell is the mean of {row_block} x {col_block} (query, key) pairs")
    head_room = 0.4 + 0.2 * len(lines)  # inches for the title lines
    figure = new_figure(figsize=(width, 3.0 * rows + 0.6 + head_room), dpi=100)
    grid = figure.subplots(rows, cols, squeeze=False)
    from matplotlib import colormaps

    cmap = colormaps["viridis"].with_extremes(bad="#c8c8c8")  # masked pairs: a colour no weight can take
    image = None
    for slot, axes in enumerate(grid.flat):
        if slot >= count:
            axes.set_visible(False)
            continue
        values = np.ma.masked_where(~open_cells[slot].numpy(), shown[slot].numpy())
        image = axes.imshow(values, cmap=cmap, vmin=0.0, vmax=float(shown.max()) or 1.0, interpolation="nearest",
                            aspect="equal" if length == source else "auto", extent=(0, source, length, 0))
        axes.set_title(f"head {heads[slot]}", fontsize=9)
        axes.set_xlabel("key position j", fontsize=8)
        axes.set_ylabel("query position i", fontsize=8)
        axes.tick_params(labelsize=7)
    figure.suptitle("\n".join(lines), fontsize=9)
    total_height = figure.get_figheight()
    figure.subplots_adjust(hspace=0.45, wspace=0.35, left=0.1, right=0.8, bottom=0.6 / total_height,
                           top=1 - head_room / total_height)
    figure.colorbar(image, ax=list(grid.flat), label="attention weight (grey: masked)", shrink=0.9)
    return figure, row_block, col_block


def terminal_heatmap(weights: torch.Tensor, allowed: torch.Tensor) -> list[tuple[str, str]]:
    """One head's (L, S) weights as (text, style) pieces: two shade characters per pair, coloured; '··' masked."""
    top = float(weights.nan_to_num(0.0).max()) or 1.0
    pieces: list[tuple[str, str]] = []
    for i in range(weights.shape[0]):
        for j in range(weights.shape[1]):
            if not allowed[i, j]:
                pieces.append(("··", "dim"))
                continue
            share = float(weights[i, j]) / top
            shade = SHADES[min(len(SHADES) - 1, int(share * (len(SHADES) - 1) + 0.5))] * 2
            blue = int(80 + 175 * share)
            pieces.append((shade if shade.strip() else "  ", f"rgb({40},{blue // 2 + 40},{blue}) on grey11"))
        pieces.append(("\n", ""))
    return pieces


def save_run_bars(report: dict[str, Any], path: Path) -> None:
    """run_bars_figure written to `path`."""
    save_figure(run_bars_figure(report), path)


def run_bars_figure(report: dict[str, Any]):  # type: ignore[no-untyped-def]
    """Median time per implementation, IQR as whiskers, for one run; a failed check in red.

    The time axis is log when the bars span more than ten times: a fast implementation next
    to a slow one would otherwise be a bar too short to read."""
    from .time_axis import set_time_scale, spans_widely, time_unit

    rows = [r for r in report["results"] if r.get("median_s")]
    if not rows:
        from ..errors import UsageError

        raise UsageError("this run has no timed implementation to draw (all skipped or failed to run)")
    figure = new_figure(figsize=(6.4, 4.0), dpi=100)
    axes = figure.add_subplot()
    scale, unit = time_unit(r["median_s"] for r in rows)
    names = [r["impl"] for r in rows]
    medians = [r["median_s"] / scale for r in rows]
    whiskers = [(r.get("iqr_s") or 0) / scale / 2 for r in rows]
    log = spans_widely(medians)
    # On a log axis a whisker reaching zero or below cannot be drawn: stop it short of zero.
    below = [min(w, 0.9 * m) for w, m in zip(whiskers, medians, strict=True)] if log else whiskers
    colours = ["#d62728" if r["status"] == "fail" else "#1f77b4" for r in rows]
    axes.bar(names, medians, yerr=[below, whiskers], capsize=4, color=colours)
    ends = [m + w for m, w in zip(medians, whiskers, strict=True)] + [m - b for m, b in zip(medians, below, strict=True)]
    set_time_scale(axes, ends, log)  # limits that hold the whiskers too
    axes.set_ylabel(f"median time per call ({unit}); whiskers: IQR")
    config = report["config"]
    axes.set_title(
        f"{config['name']}: {config['variant']}, E={config['embed_dim']}, H={config['num_heads']}, "
        f"N={config['batch_size']}, L={config['seq_len']}, {config['dtype']}, scope {config['timing']['scope']}, "
        f"pass {config['timing'].get('pass', 'forward')}",
        fontsize=9,
    )
    figure.subplots_adjust(left=0.13, right=0.97, top=0.9, bottom=0.1)
    return figure
