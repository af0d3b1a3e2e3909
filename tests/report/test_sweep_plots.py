"""sweep.png and the run bars, read back from the figure objects: panels, axes, ticks, legends, scales."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from mha_cli.report.attention_plots import run_bars_figure
from mha_cli.report.sweep_plots import MAX_PANELS, sweep_figure, sweep_layout

IMPLS = ("sdpa", "manual", "torch")


def summary_of(axes: dict[str, list[Any]], impls: tuple[str, ...] = IMPLS, seconds=None,  # type: ignore[no-untyped-def]
               drop=lambda params: False) -> dict[str, Any]:
    """A sweep summary over every combination of `axes`, one ok row per implementation.

    seconds(params, impl) gives each median (1 ms + 0.1 ms per implementation by default); drop(params)
    leaves a point out, as a skipped point would be."""
    seconds = seconds or (lambda params, impl: 1e-3 + 1e-4 * IMPLS.index(impl) if impl in IMPLS else 1e-3)
    rows = []
    for point, values in enumerate(itertools.product(*axes.values())):
        params = dict(zip(axes, values, strict=True))
        if drop(params):
            continue
        rows += [{"point": point, "impl": impl, "status": "ok", "median_s": seconds(params, impl), **params}
                 for impl in impls]
    return {"name": "s", "axes": [{"path": p, "values": v} for p, v in axes.items()], "rows": rows}


def panels(figure) -> list[Any]:  # type: ignore[no-untyped-def]
    return [axes for axes in figure.axes if axes.get_visible()]


def legend_entries(figure) -> list[str]:  # type: ignore[no-untyped-def]
    legend = figure.legends[0] if figure.legends else figure.axes[0].get_legend()
    return [text.get_text() for text in legend.get_texts()]


def tick_labels(axes) -> list[str]:  # type: ignore[no-untyped-def]
    return [text.get_text() for text in axes.get_xticklabels() if text.get_text()]


def drawn(figure):  # type: ignore[no-untyped-def]
    figure.canvas.draw()  # tick labels exist once drawn
    return figure


def test_a_sweep_over_passes_draws_grouped_bars_one_group_per_pass() -> None:
    figure = drawn(sweep_figure(summary_of({"timing.pass": ["forward", "forward_backward"]})))
    (only,) = panels(figure)
    assert only.get_xlabel() == "timing.pass"
    assert tick_labels(only) == ["forward", "forward_backward"]
    assert len(only.patches) == 2 * len(IMPLS)  # one bar per implementation in each group
    assert legend_entries(figure) == list(IMPLS)
    assert only.get_yscale() == "linear" and only.get_ylim()[0] == 0.0


@pytest.mark.parametrize("axis", [{"variant": ["full", "local", "sparse"]}, {"dtype": ["float32", "bfloat16"]}])
def test_a_sweep_with_no_numeric_parameter_still_has_a_picture(axis: dict[str, list[str]]) -> None:
    ((path, values),) = axis.items()
    figure = drawn(sweep_figure(summary_of(axis)))
    (only,) = panels(figure)
    assert only.get_xlabel() == path and tick_labels(only) == values


def test_a_numeric_parameter_is_the_x_axis_even_when_swept_second() -> None:
    summary = summary_of({"timing.pass": ["forward", "forward_backward"], "seq_len": [128, 512]})
    figure = drawn(sweep_figure(summary))
    shown = panels(figure)
    assert [axes.get_title() for axes in shown] == ["timing.pass=forward", "timing.pass=forward_backward"]
    assert all(axes.get_xlabel() == "seq_len" and tick_labels(axes) == ["128", "512"] for axes in shown)
    assert all(len(axes.get_lines()) == len(IMPLS) for axes in shown)  # one line per implementation, not per pass


def test_seq_len_is_preferred_over_an_earlier_numeric_parameter() -> None:
    layout = sweep_layout(summary_of({"num_heads": [1, 2, 4], "seq_len": [128, 512]}))
    assert layout is not None and layout.x == "seq_len" and layout.panel_axes == ["num_heads"]


def test_four_swept_parameters_make_small_multiples_not_two_dozen_lines() -> None:
    axes = {"seq_len": [128, 512, 2048], "embed_dim": [256, 512], "batch_size": [1, 8], "dtype": ["float32", "bfloat16"]}
    figure = drawn(sweep_figure(summary_of(axes, seconds=lambda p, impl: 1e-6 * p["seq_len"] * p["batch_size"])))
    shown = panels(figure)
    assert len(shown) == 8
    assert shown[0].get_title() == "embed_dim=256, batch_size=1, dtype=float32"
    assert shown[-1].get_title() == "embed_dim=512, batch_size=8, dtype=bfloat16"
    assert all(len(axes.get_lines()) == len(IMPLS) for axes in shown)
    assert legend_entries(figure) == list(IMPLS)  # one legend, one entry per implementation
    # The same implementation has the same colour in every panel, and tab10's, not a colour map's.
    from matplotlib import colormaps

    tab10 = [tuple(colormaps["tab10"](i)) for i in range(len(IMPLS))]
    assert all([tuple(line.get_color()) for line in axes.get_lines()] == tab10 for axes in shown)
    # Four panels a row (batch_size x dtype); the bottom row carries the x labels; y shared, log (128 to 16384 µs).
    bottom = shown[4:]
    assert all(axes.get_xlabel() == "seq_len" and tick_labels(axes) == ["128", "512", "2048"] for axes in bottom)
    assert [axes.get_ylabel() for axes in shown[::4]] == ["median time (µs)"] * 2
    assert {axes.get_yscale() for axes in shown} == {"log"} and len({axes.get_ylim() for axes in shown}) == 1


@pytest.mark.parametrize(("slowest", "scale"), [(9e-3, "linear"), (11e-3, "log")])
def test_the_time_axis_is_log_only_when_the_values_span_more_than_ten_times(slowest: float, scale: str) -> None:
    figure = sweep_figure(summary_of({"seq_len": [16, 32]}, impls=("sdpa",),
                                     seconds=lambda p, impl: 1e-3 if p["seq_len"] == 16 else slowest))
    assert panels(figure)[0].get_yscale() == scale


def test_panels_beyond_the_cap_are_left_out_and_the_title_says_so() -> None:
    axes = {"seq_len": [16, 32], "num_heads": [1, 2, 4], "embed_dim": [32, 64], "batch_size": [1, 2], "dtype": ["a", "b"]}
    figure = sweep_figure(summary_of(axes, impls=("sdpa",)))
    assert len(panels(figure)) == MAX_PANELS == 16
    assert "showing the first 16 of 24 panels" in figure._suptitle.get_text()


def test_a_combination_with_no_timed_point_keeps_a_marked_panel() -> None:
    summary = summary_of({"seq_len": [16, 32], "num_heads": [1, 3]}, drop=lambda p: p["num_heads"] == 3)
    figure = sweep_figure(summary)
    empty = panels(figure)[1]
    assert empty.get_title() == "num_heads=3" and not empty.get_lines()
    assert any("no point timed" in text.get_text() for text in empty.texts)


def test_parameters_swept_with_one_value_go_in_the_title() -> None:
    figure = sweep_figure(summary_of({"seq_len": [16, 32], "dtype": ["float32"]}))
    assert len(panels(figure)) == 1 and "dtype=float32" in figure._suptitle.get_text()


def test_many_implementations_never_repeat_a_colour_and_their_legend_sits_beside_the_chart() -> None:
    impls = tuple(f"impl{i}" for i in range(16))
    figure = drawn(sweep_figure(summary_of({"seq_len": [128, 512, 2048]}, impls=impls)))
    (only,) = panels(figure)
    colours = {tuple(line.get_color()) for line in only.get_lines()}
    assert len(only.get_lines()) == len(colours) == 16
    assert only.get_legend().get_window_extent().x0 >= only.get_window_extent().x1


def test_nothing_timed_is_no_figure() -> None:
    summary = summary_of({"seq_len": [16, 32]})
    for row in summary["rows"]:
        row["status"] = "skipped"
    assert sweep_figure(summary) is None and sweep_layout(summary) is None


def run_report(medians: dict[str, float]) -> dict[str, Any]:
    config = {"name": "q", "variant": "full", "embed_dim": 64, "num_heads": 2, "batch_size": 1, "seq_len": 16,
              "dtype": "float32", "timing": {"scope": "layer", "pass": "forward"}}
    return {"config": config, "results": [{"impl": impl, "median_s": seconds, "iqr_s": seconds / 5, "status": "ok"}
                                          for impl, seconds in medians.items()]}


@pytest.mark.parametrize(("slowest", "scale"), [(9e-4, "linear"), (2e-3, "log")])
def test_run_bars_use_a_log_scale_when_the_bars_span_more_than_ten_times(slowest: float, scale: str) -> None:
    figure = drawn(run_bars_figure(run_report({"sdpa": 1e-4, "manual": 5e-4, "torch": slowest})))
    (axes,) = figure.axes
    assert axes.get_yscale() == scale
    assert tick_labels(axes) == ["sdpa", "manual", "torch"] and axes.get_ylabel().startswith("median time per call (µs)")
    low, high = axes.get_ylim()
    assert low <= 1e2 * 0.8 and high >= slowest * 1e6  # every bar and its whiskers fit
