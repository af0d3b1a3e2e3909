"""`mha mask`: the allowed (query, key) pairs of a config, in the terminal or as a PNG."""


from pathlib import Path
from typing import Annotated

import typer

from .common import (
    ConfigArg,
    MaxMemoryOption,
    OverridesArg,
    check_batch,
    check_head,
    handle_errors,
    split_config_args,
    stderr_console,
    stdout_console,
)


@handle_errors
def mask(
    config: ConfigArg = None,
    overrides: OverridesArg = None,
    png: Annotated[Path | None, typer.Option("--png", metavar="FILE", help="Also write the picture to FILE (needs matplotlib).")] = None,
    batch: Annotated[int, typer.Option("--batch", metavar="B", help="Which batch item to draw (key padding differs per item).")] = 0,
    head: Annotated[int, typer.Option("--head", metavar="H", help="Which head to draw (only a custom mask_mod can differ per head).")] = 0,
    max_memory: MaxMemoryOption = None,
) -> None:
    """Draw which (query, key) pairs a config allows: its variant's pattern, causal mask and key padding.

    Rows are queries, columns keys; large sequences are shown downsampled to
    the terminal width, with the exact density and the rule in words.

    Examples:

      mha mask variant=local local.window=16 seq_len=128 mask.key_padding=null

      mha mask example:sparse_bigbird --png bigbird.png
    """
    from rich.markup import escape

    from ..config import load_config
    from ..experiment import resolve
    from ..memory import check_fits, parse_max_memory, resolve_memory_limit

    limit = resolve_memory_limit(parse_max_memory(max_memory))
    path, extra = split_config_args(config, overrides)
    experiment = resolve(load_config(path, extra))
    sizes = experiment.sizes
    check_batch(batch, sizes.batch_size)
    check_head(head, sizes.num_heads)
    if experiment.pattern is not None:  # the exact density walks blocked's plan, which grows with L
        check_fits(experiment, *limit, together=("blocked",))

    from ..mask_grid import mask_grid
    from ..prepared import Prepared
    from ..report.mask_render import text_picture, write_pattern_png

    prepared = Prepared(experiment)
    out = stdout_console()
    length, source = sizes.seq_len, sizes.source_len
    cols = min(source, max(8, out.width - 12))
    rows = min(length, max(1, round(cols * length / source / 2)))  # a character is about twice as tall as wide
    grid = mask_grid(prepared.rule, sizes, rows, cols, batch, head)
    pairs, total = prepared.allowed_pairs, sizes.scores
    heads = f", head {head} of {sizes.num_heads}" if head else ""
    out.print(escape(f"{experiment.name}: variant {experiment.variant}, L={length}, S={source}, batch item {batch} of {sizes.batch_size}{heads}"))
    out.print(escape(f"rule: {experiment.rule_in_words()}"))
    out.print(f"density: {prepared.density:.4g} ({pairs:,} of {total:,} pairs over the batch and heads)")
    if experiment.score_mod is not None:
        out.print(escape(f"score mod: {experiment.score_mod.words()}. Masks and score mods are separate: the mod "
                         "changes the scores of the pairs shown here, never which pairs attend (`mha plot weights` "
                         "shows the weights with it, `mha explain` its step)"))
    for line in text_picture(grid, length, source):
        out.print(escape(line), highlight=False)
    if png is not None:
        write_pattern_png(prepared, png, batch, head)
        stderr_console().print(escape(f"wrote {png}"))
