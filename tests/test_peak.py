"""The matmul peak: probed once per CPU, torch, dtype and thread count, cached, re-probed on request."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mha_cli import peak as peak_module
from mha_cli.cli import app
from mha_cli.peak import CACHE_FILE, peak_gflops

runner = CliRunner()
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MHA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setitem(peak_module.PROBE_SIZE, "cpu", 128)  # a small probe: these tests are about the cache
    monkeypatch.setattr(peak_module, "PROBE_SECONDS", 0.02)
    return tmp_path / "cache"


def test_the_first_call_probes_and_later_calls_read_the_cache(private_cache: Path) -> None:
    probes = []
    first = peak_gflops("float32", 1, CPU, probing=lambda: probes.append(1))
    again = peak_gflops("float32", 1, CPU, probing=lambda: probes.append(1))
    assert probes == [1] and not first.cached and again.cached
    assert again.gflops == first.gflops > 0
    stored = json.loads((private_cache / CACHE_FILE).read_text())
    (key,) = stored
    assert "torch " + torch.__version__ in key and "float32" in key and "1 threads" in key


def test_each_dtype_and_thread_count_has_its_own_entry(private_cache: Path) -> None:
    peak_gflops("float32", 1, CPU)
    peak_gflops("float64", 1, CPU)
    peak_gflops("float32", 2, CPU)
    assert len(json.loads((private_cache / CACHE_FILE).read_text())) == 3


def test_reprobe_measures_again_and_replaces_the_entry(private_cache: Path) -> None:
    peak_gflops("float32", 1, CPU)
    path = private_cache / CACHE_FILE
    stored = json.loads(path.read_text())
    (key,) = stored
    stored[key]["gflops"] = 1e-6  # a stale figure
    path.write_text(json.dumps(stored))
    assert peak_gflops("float32", 1, CPU).gflops == 1e-6
    fresh = peak_gflops("float32", 1, CPU, reprobe=True)
    assert not fresh.cached and fresh.gflops > 1e-6
    assert json.loads(path.read_text())[key]["gflops"] == fresh.gflops


@pytest.mark.parametrize("damage", ["{not json", "[1, 2]", '{"x": 3}'])
def test_a_damaged_cache_is_probed_again_and_rewritten(private_cache: Path, damage: str) -> None:
    private_cache.mkdir(parents=True)
    (private_cache / CACHE_FILE).write_text(damage)
    assert peak_gflops("float32", 1, CPU).gflops > 0
    assert any("float32" in key for key in json.loads((private_cache / CACHE_FILE).read_text()))


def test_an_unwritable_cache_costs_a_probe_not_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("MHA_CACHE_DIR", str(blocker / "cache"))  # under a file: cannot be created
    assert peak_gflops("float32", 1, CPU).gflops > 0


def test_timed_rows_carry_the_peak_and_the_table_shows_the_share() -> None:
    result = runner.invoke(app, ["run", "--no-save", "timing.min_run_time=0.01", "timing.threads=1", "timing.repetitions=1", "impls=[sdpa]"])
    assert result.exit_code == 0, result.output
    assert "GFLOP/s (% peak)" in result.output and "% peak is of this machine's matmul peak" in result.output
    as_json = runner.invoke(app, ["run", "--no-save", "--json", "timing.min_run_time=0.01", "timing.threads=1", "timing.repetitions=1", "impls=[sdpa]"])
    (row,) = json.loads(as_json.stdout)["results"]
    assert row["peak_gflops"] > 0


def test_env_prints_the_probe_and_reprobes_on_request() -> None:
    first = runner.invoke(app, ["env", "--json"])
    assert first.exit_code == 0, first.output
    probe = json.loads(first.stdout)["matmul_peak"]
    assert probe["dtype"] == "float32" and probe["gflops"] > 0
    assert json.loads(runner.invoke(app, ["env", "--json"]).stdout)["matmul_peak"]["cached"]
    assert not json.loads(runner.invoke(app, ["env", "--json", "--reprobe"]).stdout)["matmul_peak"]["cached"]
    table = runner.invoke(app, ["env"])
    assert "matmul_peak" in table.output and "GFLOP/s" in table.output


def test_sweep_reprobes_once_and_its_rows_carry_the_peak(private_cache: Path) -> None:
    result = runner.invoke(app, ["sweep", "--heads", "1,2", "seq_len=8", "timing.min_run_time=0.01", "timing.threads=1", "timing.repetitions=1",
                                 "impls=[sdpa]", "--no-save", "--no-plot", "--json", "--reprobe"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert len(rows) == 2 and all(row["peak_gflops"] > 0 for row in rows)
    assert len({row["peak_gflops"] for row in rows}) == 1, "every point reads the one probe"
    assert any("1 threads" in key for key in json.loads((private_cache / CACHE_FILE).read_text()))
