"""Pictures of an attention pattern: block characters for the terminal, a PNG with matplotlib."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..errors import UsageError

if TYPE_CHECKING:
    from ..prepared import Prepared

# Shades from "no allowed pair in this cell" to "every pair allowed".
SHADES = " ░▒▓█"


def shade(fraction: float) -> str:
    if fraction <= 0:
        return SHADES[0]
    if fraction >= 0.999:
        return SHADES[-1]
    return SHADES[1 + min(2, int(fraction * 3))]


def text_picture(grid: torch.Tensor, length: int, source: int) -> list[str]:
    """Lines of block characters, framed, with what one character stands for."""
    rows, cols = grid.shape
    lines = ["┌" + "─" * cols + "┐ key j →"]
    lines += ["│" + "".join(shade(float(v)) for v in row) + "│" for row in grid]
    lines.append("└" + "─" * cols + "┘")
    per_row, per_col = length / rows, source / cols
    lines.append(f"query i ↓ (0..{length - 1}); one character = {per_row:.3g} queries x {per_col:.3g} keys")
    lines.append(f"'{SHADES[-1]}' every pair allowed, '{SHADES[1]}{SHADES[2]}{SHADES[3]}' some, blank none")
    return lines


def new_figure(**kwargs: object):  # type: ignore[no-untyped-def]
    """A matplotlib Figure drawn off-screen (no pyplot, no display: ~0.4 s less to import)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError(
            "pictures need matplotlib, which is not installed; install it with: pip install 'mha-cli[plot]' "
            "(or pip install matplotlib)"
        ) from None
    return Figure(**kwargs)


def save_figure(figure, path: Path) -> None:  # type: ignore[no-untyped-def]
    """Write atomically: a temporary file in the same folder, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(temporary, format="png")
    temporary.replace(path)


def save_png(grid: torch.Tensor, path: Path, title: str, length: int, source: int) -> None:
    figure = new_figure(figsize=(6.4, 6.4 * min(2.0, max(0.4, length / source))), dpi=100)
    axes = figure.add_subplot()
    image = axes.imshow(
        grid.numpy(), cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest", aspect="auto",
        extent=(0, source, length, 0),
    )
    axes.set_xlabel("key position j")
    axes.set_ylabel("query position i")
    axes.set_title(title, fontsize=9, wrap=True)
    figure.colorbar(image, ax=axes, label="share of allowed pairs")
    figure.tight_layout()
    save_figure(figure, path)


def write_pattern_png(prepared: Prepared, path: Path, batch: int = 0, head: int = 0, cells: int = 512) -> None:
    """The experiment's pattern as a PNG of up to cells x cells (exact at or below that size)."""
    from ..mask_grid import mask_grid

    experiment, sizes = prepared.experiment, prepared.experiment.sizes
    grid = mask_grid(prepared.rule, sizes, cells, cells, batch, head)
    title = (f"{experiment.name}: {experiment.rule_in_words()}\nbatch item {batch}{f', head {head}' if head else ''}; "
             f"density {prepared.density:.4g} over the batch and heads")
    save_png(grid, path, title, sizes.seq_len, sizes.source_len)
