"""The copy bandwidth: probed once per device, torch and thread count, cached beside the matmul peak, re-probed on request."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mha_cli import bandwidth as bandwidth_module
from mha_cli import peak as peak_module
from mha_cli.bandwidth import CACHE_FILE, bandwidth
from mha_cli.cli import app

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MHA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setitem(bandwidth_module.PROBE_BYTES, "cpu", 2**22)  # a small probe: these tests are about the cache
    monkeypatch.setattr(bandwidth_module, "PROBE_SECONDS", 0.02)
    monkeypatch.setitem(peak_module.PROBE_SIZE, "cpu", 128)
    monkeypatch.setattr(peak_module, "PROBE_SECONDS", 0.02)
    return tmp_path / "cache"


def test_the_first_call_probes_and_later_calls_read_the_cache_beside_the_peak(private_cache: Path) -> None:
    probes = []
    first = bandwidth(1, CPU, probing=lambda: probes.append(1))
    again = bandwidth(1, CPU, probing=lambda: probes.append(1))
    assert probes == [1] and not first.cached and again.cached and again.gb_per_s == first.gb_per_s > 0
    (key,) = json.loads((private_cache / CACHE_FILE).read_text())
    assert "torch " + torch.__version__ in key and "1 threads" in key
    bandwidth(2, CPU)
    assert len(json.loads((private_cache / CACHE_FILE).read_text())) == 2


def test_reprobe_measures_again(private_cache: Path) -> None:
    bandwidth(1, CPU)
    path = private_cache / CACHE_FILE
    stored = json.loads(path.read_text())
    (key,) = stored
    stored[key]["gb_per_s"] = 1e-6
    path.write_text(json.dumps(stored))
    assert bandwidth(1, CPU).gb_per_s == 1e-6
    assert bandwidth(1, CPU, reprobe=True).gb_per_s > 1e-6


@pytest.mark.parametrize("damage", ["{not json", "[1, 2]", '{"x": 3}'])
def test_a_damaged_cache_is_probed_again(private_cache: Path, damage: str) -> None:
    private_cache.mkdir(parents=True)
    (private_cache / CACHE_FILE).write_text(damage)
    assert bandwidth(1, CPU).gb_per_s > 0


def test_the_probe_counts_bytes_read_and_written(monkeypatch: pytest.MonkeyPatch) -> None:
    class Timing:
        median_s = 0.5

    monkeypatch.setattr("mha_cli.measure.time_call", lambda *args, **kwargs: Timing())
    assert bandwidth_module.measure_bandwidth(1, CPU) == pytest.approx(2 * 2**22 / 0.5 / 1e9)


def test_mha_env_shows_the_bandwidth() -> None:
    result = CliRunner().invoke(app, ["env", "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)["memory_bandwidth"]
    assert found["gb_per_s"] > 0 and found["threads"] >= 1
