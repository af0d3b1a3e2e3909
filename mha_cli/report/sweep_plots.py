"""sweep.png: a sweep's median times, drawn so a person can read them whatever was swept.

The layout (sweep_layout decides it, sweep_figure draws it):

- x axis: seq_len when it takes several values, else the first numeric swept parameter that does;
  one line per implementation, log x with ticks at the measured values. When no swept parameter
  is numeric (--pass, --variant, --dtype), the first swept parameter becomes grouped bars: one group
  per value, one bar per implementation.
- small multiples: every other swept parameter with several values makes panels, one per combination,
  each titled with its values ("embed_dim=256, batch_size=1, dtype=float32"), laid out so the last
  parameters run along the rows. A combination with no timed point keeps its panel, marked empty.
  At most MAX_PANELS are drawn (the first ones, in the sweep's order); the title then says how many
  were left out: report.md and summary.csv hold every point.
- y axis: median time, one unit and one scale for every panel; log when the values span more than
  ten times, else linear from zero.
- one colour per implementation (tab10), the same in every panel, and one legend.
Parameters swept with a single value are fixed for the whole picture: the title names them.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..yaml_source import value_text
from .time_axis import set_time_scale, spans_widely, time_unit

MAX_PANELS = 16  # 4 x 4: beyond that each panel is too small to read
MAX_COLUMNS = 4
MAX_X_TICKS = 8  # more measured values than this: label every other one (or every third...)
LEGEND_INSIDE_MAX = 6  # a longer legend would cover a single panel's lines
PANEL_SIZE = (3.2, 2.0)  # inches of plotting area per panel in a grid
PANEL_TITLE_CHARS = 44  # a longer panel title wraps after a comma, so neighbouring titles never run together


@dataclass(frozen=True)
class SweepLayout:
    """Where each swept parameter goes in the picture."""

    x: str  # the swept parameter along the x axis
    numeric: bool  # lines on a numeric x axis; False: grouped bars, one group per value
    x_values: list[Any]  # the values on the x axis that have a timing, in sweep order
    panel_axes: list[str]  # the parameters whose combinations make the panels
    panels: list[tuple[Any, ...]]  # the combinations drawn, in sweep order
    left_out: int  # combinations not drawn (beyond MAX_PANELS)
    fixed: dict[str, Any]  # parameters swept with a single value
    impls: list[str]  # in the order the rows first name them
    columns: int


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _key(value: Any) -> str:
    # Swept values can be lists (a config's own `sweep:` section); repr makes any of them a dictionary key.
    return repr(value)


def timed_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    return [row for row in summary["rows"] if row["status"] == "ok" and row.get("median_s")]


def _columns(panel_axes: list[dict[str, Any]], count: int) -> int:
    """As many trailing panel parameters along a row as fit in MAX_COLUMNS, so each row of panels differs
    only in the leading ones; one parameter with too many values simply wraps."""
    columns = 1
    for axis in reversed(panel_axes):
        if columns * len(axis["values"]) > MAX_COLUMNS:
            break
        columns *= len(axis["values"])
    if columns == 1:
        columns = min(MAX_COLUMNS, count)
    return max(1, min(columns, count))


def sweep_layout(summary: dict[str, Any]) -> SweepLayout | None:
    """The layout of summary's picture, or None when no point has a timing."""
    rows = timed_rows(summary)
    if not rows:
        return None
    axes = summary["axes"]
    varying = [a for a in axes if len(a["values"]) > 1] or axes[:1]
    numeric = [a for a in varying if all(_is_number(v) for v in a["values"])]
    preferred = [a for a in numeric if a["path"] == "seq_len"]
    x_axis = (preferred or numeric or varying)[0]
    panel_axes = [a for a in varying if a is not x_axis]
    present = {_key(row[x_axis["path"]]) for row in rows}
    combinations = list(itertools.product(*(a["values"] for a in panel_axes)))
    panels = combinations[:MAX_PANELS]
    impls = list(dict.fromkeys(row["impl"] for row in rows))
    return SweepLayout(
        x=x_axis["path"],
        numeric=bool(numeric),
        x_values=[v for v in x_axis["values"] if _key(v) in present],
        panel_axes=[a["path"] for a in panel_axes],
        panels=panels,
        left_out=len(combinations) - len(panels),
        fixed={a["path"]: a["values"][0] for a in axes if a not in varying},
        impls=impls,
        columns=_columns(panel_axes, len(panels)),
    )


def panel_title(layout: SweepLayout, combination: tuple[Any, ...]) -> str:
    """'embed_dim=256, batch_size=1, dtype=float32', wrapped after a comma when longer than PANEL_TITLE_CHARS."""
    lines: list[str] = []
    for part in (f"{path}={value_text(value)}" for path, value in zip(layout.panel_axes, combination, strict=True)):
        if lines and len(lines[-1]) + 2 + len(part) <= PANEL_TITLE_CHARS:
            lines[-1] += ", " + part
        else:
            lines.append(part)
    return ",\n".join(lines)


def distinct_colours(count: int) -> list[Any]:
    """`count` colours, none repeated: tab10, then tab20, then evenly spaced along a wide colour map."""
    from matplotlib import colormaps

    if count <= 10:
        return [colormaps["tab10"](i) for i in range(count)]
    if count <= 20:
        return [colormaps["tab20"](i) for i in range(count)]
    return [colormaps["turbo"](i / (count - 1)) for i in range(count)]


def write_plot(summary: dict[str, Any], path: Path) -> bool:
    """sweep_figure written to `path`; False (nothing written) when no point has a timing."""
    figure = sweep_figure(summary)
    if figure is None:
        return False
    from .mask_render import save_figure

    save_figure(figure, path)
    return True


def sweep_figure(summary: dict[str, Any]):  # type: ignore[no-untyped-def]
    """The figure write_plot saves (see the module's docstring for the layout), or None when no point has a timing."""
    layout = sweep_layout(summary)
    if layout is None:
        return None
    from .mask_render import new_figure

    rows = timed_rows(summary)
    # (x value, panel combination, implementation) -> median seconds
    times = {(_key(row[layout.x]), tuple(_key(row[p]) for p in layout.panel_axes), row["impl"]): row["median_s"]
             for row in rows}
    scale, unit = time_unit(times.values())
    log_y = spans_widely(times.values())
    colours = dict(zip(layout.impls, distinct_colours(len(layout.impls)), strict=True))
    tick_labels = [value_text(v) for v in layout.x_values]
    count = len(layout.panels)
    columns = layout.columns
    grid_rows = math.ceil(count / columns)
    single = count == 1
    # Category names that would run into each other side by side are slanted (about 9 characters an inch).
    room = 9 * (5.5 if single else PANEL_SIZE[0])
    rotate = not layout.numeric and sum(len(t) + 2 for t in tick_labels) > room
    titles = [panel_title(layout, combination) for combination in layout.panels]
    title_lines = max(t.count("\n") + 1 for t in titles) if layout.panel_axes else 0
    legend_outside = not single or len(layout.impls) > LEGEND_INSIDE_MAX
    bottom_in = 1.3 if rotate else 0.7  # room under the panels for the x tick labels and the x label
    top_in = 0.9 if layout.left_out else 0.6  # the title, one line more for the note on left-out panels
    if single:
        width, height = (10.0 if legend_outside else 7.0), 4.5 + (bottom_in - 0.7)
    else:
        # Between rows: the panel titles, and the x tick labels of a panel above an empty slot.
        row_gap = 0.2 * title_lines + (0.9 if rotate else 0.35)
        width = PANEL_SIZE[0] * columns + 0.3 * (columns - 1) + 0.9 + 1.8  # y labels left, the legend right
        height = PANEL_SIZE[1] * grid_rows + row_gap * (grid_rows - 1) + top_in + bottom_in + 0.2 * title_lines
    figure = new_figure(figsize=(width, height), dpi=100)
    grid = figure.subplots(grid_rows, columns, squeeze=False, sharex=True, sharey=True)
    panels = list(grid.flat)
    for slot, axes in enumerate(panels):
        if slot >= count:
            axes.set_visible(False)
            continue
        combination = tuple(_key(v) for v in layout.panels[slot])
        drawn = (_draw_lines if layout.numeric else _draw_bars)(axes, layout, times, combination, colours, scale)
        if layout.panel_axes:
            axes.set_title(titles[slot], fontsize=9)
        if not drawn:
            axes.text(0.5, 0.5, "no point timed here\n(skipped or failed)", ha="center", va="center",
                      transform=axes.transAxes, fontsize=8, color="grey")
        # The lowest panel of each column carries the x labels (the one above an empty slot too).
        if slot + columns >= count:
            axes.xaxis.set_tick_params(labelbottom=True)
            axes.set_xlabel(layout.x)
        if slot % columns == 0:
            axes.set_ylabel(f"median time ({unit})")
        axes.grid(True, which="major", alpha=0.3)
    first = panels[0]
    if layout.numeric:
        _numeric_x(first, layout.x_values)
    else:
        slant = {"rotation": 30, "horizontalalignment": "right"} if rotate else {}
        for axes in panels[:count]:  # each panel's labels are its own Text objects, though the ticks are shared
            axes.set_xticks(range(len(tick_labels)), tick_labels, **slant)
    set_time_scale(first, [t / scale for t in times.values()], log_y)
    figure.suptitle(_title(summary, layout), fontsize=10)
    _legend(figure, first, layout, colours, legend_outside, single)
    left = 0.9 / width
    right = 1 - (1.8 if legend_outside else 0.2) / width
    # Fixed margins in inches (tight_layout costs ~0.4 s); gaps as shares of a panel, as matplotlib wants them.
    figure.subplots_adjust(left=left, right=right, bottom=bottom_in / height,
                           top=1 - (top_in + 0.2 * title_lines) / height,
                           hspace=0.0 if single else row_gap / PANEL_SIZE[1], wspace=0.3 / PANEL_SIZE[0])
    return figure


def _draw_lines(axes: Any, layout: SweepLayout, times: dict[Any, float], combination: tuple[str, ...],
                colours: dict[str, Any], scale: float) -> bool:
    drawn = False
    for impl in layout.impls:
        points = [(x, times[(_key(x), combination, impl)] / scale) for x in layout.x_values
                  if (_key(x), combination, impl) in times]
        if points:
            axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=impl, color=colours[impl])
            drawn = True
    return drawn


def _draw_bars(axes: Any, layout: SweepLayout, times: dict[Any, float], combination: tuple[str, ...],
               colours: dict[str, Any], scale: float) -> bool:
    width = 0.8 / len(layout.impls)
    drawn = False
    for index, impl in enumerate(layout.impls):
        places, heights = [], []
        for group, x in enumerate(layout.x_values):
            seconds = times.get((_key(x), combination, impl))
            if seconds is not None:
                places.append(group - 0.4 + width * (index + 0.5))
                heights.append(seconds / scale)
        if places:
            axes.bar(places, heights, width=width, label=impl, color=colours[impl])
            drawn = True
    return drawn


def _numeric_x(axes: Any, values: list[Any]) -> None:
    """Log x when every value is positive; ticks at the measured values (128, 512, 2048), written out."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

    if all(v > 0 for v in values):
        axes.set_xscale("log")
    step = math.ceil(len(values) / MAX_X_TICKS)
    axes.xaxis.set_major_locator(FixedLocator(values[::step]))
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.xaxis.set_minor_locator(NullLocator())
    axes.xaxis.set_minor_formatter(NullFormatter())


def _title(summary: dict[str, Any], layout: SweepLayout) -> str:
    title = f"mha sweep {summary['name']}: median time against {layout.x}"
    if layout.fixed:
        title += "; " + ", ".join(f"{path}={value_text(value)}" for path, value in layout.fixed.items())
    if layout.left_out:
        shown = len(layout.panels)
        title += (f"\nshowing the first {shown} of {shown + layout.left_out} panels "
                  f"({', '.join(layout.panel_axes)}); report.md has every point")
    return title


def _legend(figure: Any, first: Any, layout: SweepLayout, colours: dict[str, Any], outside: bool, single: bool) -> None:
    """One entry per implementation, drawn from proxies so an implementation missing from a panel still has one."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    if layout.numeric:
        handles = [Line2D([], [], color=colours[impl], marker="o", label=impl) for impl in layout.impls]
    else:
        handles = [Patch(color=colours[impl], label=impl) for impl in layout.impls]
    if single and not outside:
        first.legend(handles=handles, fontsize=8)
    elif single:
        first.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    else:
        figure.legend(handles=handles, fontsize=8, loc="upper right", title="implementation", title_fontsize=8)
