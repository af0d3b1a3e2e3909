"""`mha plot weights` and `mha plot results`: pictures from a config or from saved results."""


from pathlib import Path
from typing import Annotated

import typer

from ..errors import UsageError
from .common import (
    ConfigArg,
    MaxMemoryOption,
    OverridesArg,
    check_batch,
    handle_errors,
    split_config_args,
    stderr_console,
    stdout_console,
)
from .help_format import PlainHelpCommand, PlainHelpGroup

plot_app = typer.Typer(
    name="plot",
    help="Pictures: attention weights per head, and results of runs and sweeps (needs matplotlib for PNGs).",
    no_args_is_help=True,
    cls=PlainHelpGroup,
)

TERMINAL_LIMIT = 64  # longest L or S drawn in the terminal


def _heads(text: str, count: int) -> list[int]:
    if text == "all":
        return list(range(count))
    try:
        heads = [int(part) for part in text.split(",")]
    except ValueError:
        raise UsageError(f"--heads {text!r}: write all or a comma list of head numbers such as 0,1") from None
    bad = [h for h in heads if not 0 <= h < count]
    if bad:
        raise UsageError(f"--heads {text!r}: the config has {count} heads (0..{count - 1}); {bad} out of range")
    return heads


@plot_app.command("weights", cls=PlainHelpCommand)
@handle_errors
def weights(
    config: ConfigArg = None,
    overrides: OverridesArg = None,
    png: Annotated[Path | None, typer.Option("--png", metavar="FILE", help="Write a heatmap per head to FILE.")] = None,
    batch: Annotated[int, typer.Option("--batch", metavar="B", help="Batch item to draw.")] = 0,
    heads: Annotated[str, typer.Option("--heads", metavar="all|H,H,...", help="all, or head numbers such as 0,1.")] = "all",
    max_memory: MaxMemoryOption = None,
) -> None:
    """Heatmaps of the attention weights per head (query rows x key columns), masked pairs marked.

    With --png: a grid with one heatmap per head, a colour bar and the config in
    the title (long sequences block-averaged, with a note). Without: a small
    heatmap in the terminal for L and S up to 64.

    Examples:

      mha plot weights

      mha plot weights example:causal_padding_masks --png weights.png --batch 2 --heads 0,1
    """
    from ..config import load_config
    from ..experiment import resolve
    from ..memory import parse_max_memory

    limit = parse_max_memory(max_memory)
    path, extra = split_config_args(config, overrides)
    experiment = resolve(load_config(path, extra))
    sizes = experiment.sizes
    check_batch(batch, sizes.batch_size)
    chosen = _heads(heads, sizes.num_heads)
    if png is None and max(sizes.seq_len, sizes.source_len) > TERMINAL_LIMIT:
        raise UsageError(
            f"L={sizes.seq_len}, S={sizes.source_len} is too large to draw in the terminal "
            f"(up to {TERMINAL_LIMIT}); write a picture with --png FILE"
        )
    if png is not None:
        from ..report.mask_render import new_figure

        new_figure()  # fails early, with the install hint, when matplotlib is missing

    from ..explanation import weights_to_draw

    maps, allowed = weights_to_draw(experiment, batch, chosen, memory_limit=limit)  # (h, L, S) each
    summary = (f"{experiment.name}: E={sizes.embed_dim}, H={sizes.num_heads}, L={sizes.seq_len}, "
               f"S={sizes.source_len}, batch item {batch}; masks: {experiment.masks_in_words(batch)}"
               + (f"; score mod: {experiment.score_mod.brief(experiment.score_mod.settings)} (in these weights)"
                  if experiment.score_mod is not None else ""))
    if png is not None:
        from ..report.attention_plots import save_weights_png

        row_block, col_block = save_weights_png(maps, allowed, chosen, summary, png)
        note = f" (block means of {row_block}x{col_block} pairs)" if row_block > 1 or col_block > 1 else ""
        stderr_console().print(f"wrote {png}{note}", highlight=False, markup=False)
        return
    _heatmaps_in_terminal(summary, maps, allowed, chosen, sizes.seq_len, sizes.source_len)


def _heatmaps_in_terminal(summary: str, maps, allowed, heads: list[int], length: int, source: int) -> None:  # type: ignore[no-untyped-def]
    """One small coloured heatmap per head, masked pairs marked."""
    from rich.text import Text

    from ..report.attention_plots import terminal_heatmap
    from ..report.mask_render import SHADES

    out = stdout_console()
    out.print(Text(summary))
    for index, head in enumerate(heads):
        out.print(Text(f"head {head}: rows = queries 0..{length - 1}, columns = keys 0..{source - 1}; "
                       f"weight from least to most: blank, '{SHADES[1:]}' ('{SHADES[-1]}' = this head's largest), '··' = masked"))
        text = Text()
        for piece, style in terminal_heatmap(maps[index], allowed[index]):
            text.append(piece, style=style or None)
        out.print(text, soft_wrap=True)


@plot_app.command("results", cls=PlainHelpCommand)
@handle_errors
def results(
    source: Annotated[Path, typer.Argument(metavar="RESULTS", help="results.json or summary.json, or a run or sweep folder.", show_default=False)],
    png: Annotated[Path, typer.Option("--png", metavar="FILE", help="Where to write the picture.")],
) -> None:
    """Draw saved results: bars of median time per implementation (IQR whiskers) for a run;
    for a sweep, time against its numeric parameter (seq_len first), or grouped bars when none
    is numeric, with one panel per combination of the other swept parameters.

    Examples:

      mha plot results outputs/20261127T120000Z-quickstart --png run.png

      mha plot results outputs/20261127T120000Z-quickstart-sweep/summary.json --png sweep.png
    """
    from ..report.attention_plots import save_run_bars
    from ..report.sweep_plots import write_plot
    from ..results import read_results

    kind, path, document = read_results(source)
    if kind == "run":
        save_run_bars(document, png)
    elif not write_plot(document, png):
        raise UsageError(f"{path}: nothing to draw: no point has an ok timing (all skipped, failed or pending)")
    stderr_console().print(f"wrote {png}", highlight=False, markup=False)
