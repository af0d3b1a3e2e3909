"""The examples that come with the package: the same as configs/, listed, copied, and run by name from an empty folder."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mha_cli.cli import app
from mha_cli.config import load_config
from mha_cli.errors import ConfigError
from mha_cli.shipped_examples import EXAMPLES_DIR, examples

from .helpers import FAST_OVERRIDES

REPO = Path(__file__).resolve().parent.parent
runner = CliRunner()


@pytest.fixture
def empty_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "empty"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def test_the_package_holds_configs_byte_for_byte() -> None:
    in_repository = {path.name: path.read_bytes() for path in (REPO / "configs").iterdir() if path.is_file()}
    in_package = {path.name: path.read_bytes() for path in EXAMPLES_DIR.iterdir() if path.is_file()}
    assert in_package.keys() == in_repository.keys(), "copy configs/ into mha_cli/examples/ (cp configs/* mha_cli/examples/)"
    changed = [name for name in in_repository if in_package[name] != in_repository[name]]
    assert not changed, f"mha_cli/examples/ differs from configs/ in {changed}: cp configs/* mha_cli/examples/"


def test_the_built_wheel_carries_the_examples(tmp_path: Path) -> None:
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("mha_cli-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in (REPO / "configs").iterdir():
        assert f"mha_cli/examples/{path.name}" in names


def test_mha_help_points_at_the_examples_command() -> None:
    assert "mha examples" in runner.invoke(app, ["--help"]).stdout


def test_examples_are_listed_a_line_each_from_an_empty_folder(empty_folder: Path) -> None:
    result = runner.invoke(app, ["examples"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines()[1:] if line.strip()]
    assert [row.split()[0] for row in rows] == [example.name for example in examples()]
    assert len(examples()) == len(list((REPO / "configs").glob("*.yaml")))
    listed = json.loads(runner.invoke(app, ["examples", "list", "--json"]).stdout)
    quickstart = next(entry for entry in listed if entry["name"] == "quickstart")
    assert quickstart["run_as"] == "example:quickstart" and quickstart["summary"].startswith("The classic tutorial example")
    assert next(e for e in listed if e["name"] == "custom_mask_mod")["files"] == ["custom_mask_mod.yaml", "mask_mods.py"]


def test_copy_one_brings_the_code_it_names_and_the_copy_runs(empty_folder: Path) -> None:
    result = runner.invoke(app, ["examples", "copy", "custom_mask_mod"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (empty_folder / "configs").iterdir()) == ["custom_mask_mod.yaml", "mask_mods.py"]
    run = runner.invoke(app, ["run", "configs/custom_mask_mod.yaml", *FAST_OVERRIDES, "--no-save"])
    assert run.exit_code == 0, run.output


def test_copy_refuses_to_replace_an_edited_file_without_overwrite(empty_folder: Path) -> None:
    assert runner.invoke(app, ["examples", "copy", "local_window"]).exit_code == 0
    edited = empty_folder / "configs" / "local_window.yaml"
    edited.write_text(edited.read_text() + "# mine\n")
    refused = runner.invoke(app, ["examples", "copy", "--all"])
    assert refused.exit_code == 2 and "--overwrite" in refused.stderr and "configs/local_window.yaml" in refused.stderr
    assert edited.read_text().endswith("# mine\n")
    assert sorted(p.name for p in (empty_folder / "configs").iterdir()) == ["local_window.yaml"], "nothing copied"
    again = runner.invoke(app, ["examples", "copy", "--all", "--overwrite"])
    assert again.exit_code == 0, again.output
    assert edited.read_bytes() == (REPO / "configs" / "local_window.yaml").read_bytes()
    assert {p.name for p in (empty_folder / "configs").iterdir()} == {p.name for p in (REPO / "configs").iterdir()}


@pytest.mark.parametrize("args", [["examples", "copy"], ["examples", "copy", "quickstart", "--all"],
                                  ["examples", "copy", "local_windw"]])
def test_copy_misuse_is_exit_2_with_a_message(args: list[str], empty_folder: Path) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "error:" in result.stderr and "Traceback" not in result.stderr
    assert not (empty_folder / "configs").exists()
    if "local_windw" in args:
        assert "did you mean 'local_window'?" in result.stderr


@pytest.mark.parametrize("name", ["custom_mask_mod", "my_attention", "local_window"])
def test_an_example_runs_by_name_from_an_empty_folder_with_its_own_code(name: str, empty_folder: Path) -> None:
    result = runner.invoke(app, ["run", f"example:{name}", "seq_len=64", *FAST_OVERRIDES, "--no-save"])
    assert result.exit_code == 0, result.output
    assert "agree with the float64 reference" in result.stdout


def test_example_names_are_never_a_file_or_an_override(empty_folder: Path) -> None:
    (empty_folder / "example:quickstart").write_text("embed_dim: 32\nnum_heads: 4\n")
    assert load_config("example:quickstart") == load_config(None)  # the prefix always names the shipped example
    assert load_config(Path("example:quickstart")).embed_dim == 32  # a Path is always a file
    shown = runner.invoke(app, ["validate", "./example:quickstart", "--json"])
    assert json.loads(shown.stdout)["embed_dim"] == 32
    assert load_config("example:local_window") == load_config(REPO / "configs" / "local_window.yaml")
    assert load_config("example:local_window.yaml", ["local.window=8"]).local.window == 8
    with pytest.raises(ConfigError, match="no shipped example is called 'nope'"):
        load_config("example:nope")


def test_an_unknown_example_is_exit_2(empty_folder: Path) -> None:
    result = runner.invoke(app, ["run", "example:quikstart"])
    assert result.exit_code == 2 and "did you mean 'quickstart'?" in result.stderr


@pytest.mark.parametrize(("args", "words"), [
    (["run", "quickstart"], "the shipped example of that name is example:quickstart"),
    (["run", "local_window.yaml"], "no such file; the shipped example of that name is example:local_window"),
    (["run", "impls=sdpa,manual"], "must be a list: write [sdpa,manual]"),
])
def test_a_newcomer_s_first_guesses_get_the_right_form(args: list[str], words: str, empty_folder: Path) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and words in result.stderr, result.stderr
