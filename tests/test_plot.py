"""`mha plot`: PNGs are real pictures of the expected size; the terminal heatmap; missing matplotlib."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mha_cli.cli import app
from mha_cli.report.attention_plots import downsample

runner = CliRunner()


def image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_weights_png_has_one_panel_per_head(tmp_path: Path) -> None:
    target = tmp_path / "w.png"
    result = runner.invoke(app, ["plot", "weights", "num_heads=4", "mask.causal=true", "--png", str(target), "--heads", "0,1,2"])
    assert result.exit_code == 0, result.output
    width, height = image_size(target)
    assert width == int((3.2 * 3 + 1.6) * 100) and height > 300


def _title_and_panels(heads: list[int], length: int, source: int, title: str):  # type: ignore[no-untyped-def]
    from mha_cli.report.attention_plots import weights_figure

    weights = torch.rand(len(heads), length, source)
    figure, rows, cols = weights_figure(weights, torch.ones(len(heads), length, source, dtype=torch.bool), heads, title)
    figure.canvas.draw()
    return figure, [a for a in figure.axes if a.get_label() != "<colorbar>" and a.get_visible()][: len(heads)], (rows, cols)


def test_one_head_keeps_its_whole_title_and_square_cells() -> None:
    title = "quickstart: E=64, H=2, L=10, S=10, batch item 0; masks: causal, key padding (6 of 10 keys valid)"
    figure, (panel,), _ = _title_and_panels([0], 10, 10, title)
    box = figure._suptitle.get_window_extent()
    assert box.x0 >= 0 and box.x1 <= figure.bbox.width and box.y1 <= figure.bbox.height
    assert "keys valid" in figure._suptitle.get_text()
    assert panel.get_aspect() == 1.0  # L = S: square cells


def test_long_sequences_are_drawn_on_positions_with_a_visible_note() -> None:
    figure, (panel,), blocks = _title_and_panels([0], 600, 600, "long")
    assert blocks == (3, 3)
    assert panel.get_xlim() == (0.0, 600.0) and panel.get_ylim() == (600.0, 0.0)  # positions, not block indices
    assert "mean of 3 x 3" in figure._suptitle.get_text()
    box = figure._suptitle.get_window_extent()
    assert box.y1 <= figure.bbox.height and box.y0 > panel.get_window_extent().y1  # above the panels, not under them


def test_large_sequences_are_downsampled_with_a_note(tmp_path: Path) -> None:
    target = tmp_path / "w.png"
    result = runner.invoke(app, ["plot", "weights", "seq_len=600", "batch_size=1", "mask.key_padding=null",
                                 "embed_dim=16", "--png", str(target), "--heads", "0"])
    assert result.exit_code == 0, result.output
    assert "block means of 3x3 pairs" in result.stderr
    image_size(target)


def test_downsampling_keeps_masked_cells_masked() -> None:
    weights = torch.rand(1, 8, 8)
    allowed = torch.ones(1, 8, 8, dtype=torch.bool).tril()
    pooled, open_cells, rows, cols = downsample(weights, allowed, cells=4)
    assert pooled.shape == (1, 4, 4) and (rows, cols) == (2, 2)
    assert open_cells[0].tolist()[0] == [True, False, False, False]


def test_terminal_heatmap_for_small_configs() -> None:
    result = runner.invoke(app, ["plot", "weights", "seq_len=6", "mask.causal=true", "mask.key_padding=null", "--heads", "1"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line and set(line) <= set(" ░▒▓█·")]
    assert lines[0].endswith("··" * 5)  # query 0 sees only key 0 under the causal mask
    assert lines[0].startswith("██")  # query 0's only key takes all its weight: the darkest shade
    assert "head 1:" in result.stdout and "'█' = this head's largest" in result.stdout
    padded = runner.invoke(app, ["plot", "weights", "seq_len=6", "mask.causal=true", "--heads", "0", "--batch", "4"])
    assert "masks: causal, key padding (2 of 6 keys valid)" in padded.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [(["seq_len=100", "mask.key_padding=null"], "--png FILE"), (["--heads", "2"], "0..1"), (["--heads", "x"], "comma list"),
     (["--batch", "9"], "batch_size 5")],
)
def test_weights_usage_errors(args: list[str], expected: str) -> None:
    result = runner.invoke(app, ["plot", "weights", *args])
    assert result.exit_code == 2 and expected in result.stderr


def test_results_png_for_a_run_and_a_sweep(tmp_path: Path) -> None:
    run = runner.invoke(app, ["run", "timing.min_run_time=0.01", "--output-dir", str(tmp_path / "run")])
    assert run.exit_code == 0, run.output
    assert runner.invoke(app, ["plot", "results", str(tmp_path / "run"), "--png", str(tmp_path / "bars.png")]).exit_code == 0
    assert image_size(tmp_path / "bars.png") == (640, 400)
    sweep = runner.invoke(app, ["sweep", "--seq-len", "16,32", "impls=[sdpa]", "mask.key_padding=null",
                                "timing.min_run_time=0.01", "--output-dir", str(tmp_path / "sweep"), "--no-plot"])
    assert sweep.exit_code == 0, sweep.output
    result = runner.invoke(app, ["plot", "results", str(tmp_path / "sweep" / "summary.json"), "--png", str(tmp_path / "s.png")])
    assert result.exit_code == 0, result.output
    assert image_size(tmp_path / "s.png") == (700, 450)


def test_a_sweep_over_passes_alone_writes_grouped_bars(tmp_path: Path) -> None:
    """No numeric swept parameter: the sweep still gets its picture (it used to say 'sweep.png not written')."""
    folder = tmp_path / "sweep"
    result = runner.invoke(app, ["sweep", "--pass", "forward,forward_backward", "impls=[sdpa,manual]", "seq_len=16",
                                 "mask.key_padding=null", "timing.min_run_time=0.01", "timing.repetitions=1",
                                 "--output-dir", str(folder)])
    assert result.exit_code == 0, result.output
    assert "not written" not in result.stderr
    assert image_size(folder / "sweep.png") == (700, 450)
    redrawn = runner.invoke(app, ["plot", "results", str(folder), "--png", str(tmp_path / "again.png")])
    assert redrawn.exit_code == 0, redrawn.output


def test_results_of_something_else_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text(json.dumps({"hello": 1}))
    result = runner.invoke(app, ["plot", "results", str(tmp_path / "x.json"), "--png", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and "not an mha results.json" in result.stderr


def test_pictures_without_matplotlib_say_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in sys.modules if n == "matplotlib" or n.startswith("matplotlib.")] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)
    result = runner.invoke(app, ["plot", "weights", "--png", str(tmp_path / "w.png")])
    assert result.exit_code == 2 and "pip install 'mha-cli[plot]'" in result.stderr
    assert not (tmp_path / "w.png").exists()
