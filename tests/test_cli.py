"""The `mha` command as a user and a CI script see it: exit codes, stdout, files."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mha_cli import __version__
from mha_cli.attention import AttentionOutput
from mha_cli.cli import app

from .helpers import FAST_OVERRIDES, mha_process, wait_for_line

REPO = Path(__file__).resolve().parent.parent
QUICKSTART = str(REPO / "configs" / "quickstart.yaml")
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_quickstart_shows_the_real_shapes(tmp_path: Path) -> None:
    result = invoke("run", QUICKSTART, *FAST_OVERRIDES, "--output-dir", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    assert "(10, 5, 64)" in result.stdout  # output (L, N, E)
    assert "(5, 10, 10)" in result.stdout  # weights averaged over heads (N, L, S)
    assert "(5, 2, 10, 10)" in result.stdout  # what average_attn_weights=false would give
    for impl in ("torch", "manual", "sdpa"):  # a timing-table row each, not just the name somewhere
        assert re.search(rf"│ {impl} +│ ok +│ [\d.]+ (µs|ms) ", result.stdout), result.stdout
    assert "OK: torch, manual, sdpa agree" in result.stdout
    assert "saved to" in result.stderr


def test_json_output_is_one_document_and_nothing_else() -> None:
    result = invoke("run", *FAST_OVERRIDES, "--json", "--no-save")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert set(document) >= {"schema_version", "mha_version", "created", "config", "env", "shapes", "results"}
    assert set(document["env"]) >= {"torch", "python", "platform", "cpu", "device", "num_threads", "commit"}
    assert document["shapes"]["output"] == [10, 5, 64] and document["shapes"]["attn_weights"] == [5, 10, 10]
    assert document["created"].endswith("+00:00")
    keys = {"impl", "variant", "dtype", "device", "status", "reason", "median_s", "iqr_s", "runs", "gflops",
            "peak_mem_bytes", "max_abs_err", "ok"}
    for row in document["results"]:
        assert keys <= set(row) and row["status"] == "ok" and row["ok"] is True


def test_run_writes_the_four_files_atomically_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("run", *FAST_OVERRIDES, "--json")
    assert result.exit_code == 0, result.output
    (folder,) = (p for p in (tmp_path / "outputs").iterdir() if p.name != "latest")
    assert (tmp_path / "outputs" / "latest").resolve() == folder.resolve()
    assert re.fullmatch(r"\d{8}T\d{6}Z-quickstart", folder.name)
    assert sorted(p.name for p in folder.iterdir()) == [".mha.lock", "config.yaml", "pattern.png", "report.md", "results.csv", "results.json"]
    assert json.loads((folder / "results.json").read_text()) == json.loads(result.stdout)
    assert "| torch |" in (folder / "report.md").read_text()
    assert (folder / "results.csv").read_text().count("\n") == 4  # header + 3 implementations
    # The saved config reproduces the run.
    again = invoke("validate", str(folder / "config.yaml"), "--json")
    assert json.loads(again.stdout) == json.loads(result.stdout)["config"]


def test_no_save_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert invoke("run", *FAST_OVERRIDES, "--no-save").exit_code == 0
    assert not (tmp_path / "outputs").exists()


def test_overrides_without_a_file_use_the_default() -> None:
    result = invoke("run", "num_heads=4", "impls=[sdpa]", *FAST_OVERRIDES, "--json", "--no-save")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["config"]["num_heads"] == 4 and [r["impl"] for r in document["results"]] == ["sdpa"]


def test_a_failed_check_exits_1_and_says_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    from mha_cli.attention import manual

    real_build = manual.build

    def off_by_a_little(work):
        forward = real_build(work)
        return lambda: AttentionOutput(forward().output + 1e-2, None)

    monkeypatch.setattr(manual, "build", off_by_a_little)
    result = invoke("run", *FAST_OVERRIDES, "--no-save")
    assert result.exit_code == 1
    assert "FAIL" in result.stdout and "manual" in result.stdout and "exceeds the tolerance" in result.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["num_head=2"], "did you mean 'num_heads'"),
        (["num_heads=3"], "not divisible"),
        (["seq_len=0"], "greater than 0"),
        (["mask.key_padding.lengths=[1,2]"], "one length per batch item"),
        (["attention=self", "kdim=8"], "attention: cross"),
        (["timing.min_run_time=.inf"], "finite number"),
        (["--max-memory", "plenty"], "--max-memory"),
        (["--no-save", "--output-dir", "x"], "contradict"),
    ],
)
def test_bad_input_exits_2_with_a_message_and_no_traceback(args: list[str], expected: str) -> None:
    result = invoke("run", *args)
    assert result.exit_code == 2, result.output
    assert expected in result.stderr
    assert "Traceback" not in result.output and result.stdout == ""


def test_bad_file_reports_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("embed_dim: 64\nnum_heads: 2\nnum_heads: 4\n")
    result = invoke("run", str(path))
    assert result.exit_code == 2
    assert f"{path}:3" in result.stderr and "duplicate key" in result.stderr


def test_missing_file_exits_2() -> None:
    result = invoke("validate", "no/such/config.yaml")
    assert result.exit_code == 2 and "no such file" in result.stderr


def test_a_million_tokens_is_refused_within_seconds() -> None:
    process = subprocess.run(
        [sys.executable, "-m", "mha_cli", "run", "seq_len=1000000", "--no-save"],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )
    assert process.returncode == 2
    assert "would need about" in process.stderr and "seq_len" in process.stderr
    assert "Traceback" not in process.stderr


def test_validate_prints_the_resolved_config() -> None:
    result = invoke("validate", QUICKSTART, "num_heads=4")
    assert result.exit_code == 0
    assert "num_heads: 4" in result.stdout and "source_len: null" in result.stdout
    assert "config is valid" in result.stderr


def test_validate_json() -> None:
    result = invoke("validate", "--json")
    assert json.loads(result.stdout)["name"] == "quickstart"


def test_env_json() -> None:
    result = invoke("env", "--json")
    assert result.exit_code == 0
    assert set(json.loads(result.stdout)) >= {"torch", "cuda_available", "num_threads", "cpu", "blas"}


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"mha {__version__}"


@pytest.mark.parametrize("config", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_runs(config: Path) -> None:
    result = invoke("run", str(config), *FAST_OVERRIDES, "--no-save")
    assert result.exit_code == 0, result.output


def test_help_and_validate_do_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from mha_cli.cli import app\n"
        "for args in (['--help'], ['run', '--help'], ['validate', 'configs/quickstart.yaml'],\n"
        "             ['validate', 'configs/sparse_bigbird.yaml'], ['validate', 'variant=local', 'local.sinks=2'],\n"
        "             ['validate', 'mask.causal=true', 'mask.prefix=2', 'mask.documents.lengths=[4,6]'],\n"
        "             ['validate', 'configs/custom_mask_mod.yaml']):\n"
        "    result = CliRunner().invoke(app, args)\n"
        "    assert result.exit_code == 0, result.output\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    process = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert process.returncode == 0, process.stderr


def test_module_entry_point() -> None:
    process = subprocess.run([sys.executable, "-m", "mha_cli", "--version"], capture_output=True, text=True, timeout=60)
    assert process.returncode == 0 and process.stdout.strip() == f"mha {__version__}"


def _commands() -> list[str]:
    """Every command, with the subcommands of groups (`plot weights`) spelt out."""
    import typer.main

    names = []
    for name, command in typer.main.get_command(app).commands.items():
        sub = getattr(command, "commands", None)
        names += [f"{name} {child}" for child in sorted(sub)] if sub else [name]
    return sorted(names)


@pytest.mark.parametrize("command", ["", "plot", *_commands()])
def test_help_shows_no_type_placeholders_and_plain_usage(command: str) -> None:
    result = runner.invoke(app, [*command.split(), "--help"], env={"COLUMNS": "140"})
    assert result.exit_code == 0
    assert not re.search(r"<(bool|str|int|float|path|list\[[^>]*\])>", result.stdout), result.stdout
    usage = next(line for line in result.stdout.splitlines() if "Usage:" in line)
    assert "{" not in usage and "]..." not in usage.replace("[ARGS]...", ""), usage


@pytest.mark.parametrize("columns", ["60", "80", "140"])
@pytest.mark.parametrize("group", ["", "plot"])
def test_command_lists_wrap_whole_sentences_at_word_boundaries(group: str, columns: str) -> None:
    import typer.main

    command = typer.main.get_command(app)
    for part in group.split():
        command = command.commands[part]
    result = runner.invoke(app, [*group.split(), "--help"], env={"COLUMNS": columns})
    panel = result.stdout.split("Commands")[1]
    cells: dict[str, list[str]] = {}
    name = ""
    for line in panel.splitlines()[1:]:
        text = line.strip("│╰─╯ ")
        if not text:
            continue
        first, _, rest = text.partition(" ")
        if first in command.commands:
            name, text = first, rest
        cells.setdefault(name, []).append(text.strip())
    width = max(len(text) for lines in cells.values() for text in lines)  # at most the column's width
    for child, sub in command.commands.items():
        summary = " ".join(sub.help.strip().split("\n\n")[0].split())
        assert " ".join(cells[child]) == summary, f"`mha {group} --help` cuts {child}'s summary at {columns} columns"
        for text, following in zip(cells[child], cells[child][1:]):
            # wrapped at word boundaries: the next line's first word would not have fitted on this one
            assert len(text) + 1 + len(following.split()[0]) > width, f"{child}: a line ends early: {text!r}"


@pytest.mark.parametrize("command", _commands())
def test_every_command_has_help_with_an_example_and_is_in_the_readme(command: str) -> None:
    result = invoke(*command.split(), "--help")
    assert result.exit_code == 0 and "Example" in result.stdout
    assert f"mha {command}" in (REPO / "README.md").read_text()


def test_ci_runs_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    command = next(line for line in ci.splitlines() if "pytest" in line).strip()
    assert command in readme


def test_ctrl_c_exits_130_without_a_traceback(tmp_path: Path) -> None:
    import signal

    process = mha_process("run", "timing.min_run_time=30", "--output-dir", str(tmp_path / "run"))
    wait_for_line(process, "repetition 1/15")  # inside a repetition's own process: it goes with the command
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "interrupted" in rest and "Traceback" not in rest


def test_mask_draws_the_pattern_with_density_and_rule() -> None:
    result = invoke("mask", "variant=local", "local.window=2", "seq_len=12", "mask.key_padding=null")
    assert result.exit_code == 0, result.output
    assert "|i - j| <= 2" in result.stdout and "density: 0.375 " in result.stdout  # 12 + 2*11 + 2*10 = 54 of 144
    picture = [line for line in result.stdout.splitlines() if line.startswith("│")]
    assert len(picture) == 6 and picture[0] == "│███▒        │"  # 12 rows drawn in 6 lines


def test_mask_downsamples_long_sequences_to_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    result = invoke("mask", "variant=local", "seq_len=100000", "batch_size=1", "mask.key_padding=null")
    assert result.exit_code == 0, result.output
    assert all(len(line) <= 60 for line in result.stdout.splitlines() if line.startswith(("│", "┌", "└")))
    assert "one character = " in result.stdout


def test_mask_png_is_a_real_picture(tmp_path: Path) -> None:
    from PIL import Image

    target = tmp_path / "pattern.png"
    result = invoke("mask", "variant=sparse", "sparse.block=8", "seq_len=64", "mask.key_padding=null", "--png", str(target))
    assert result.exit_code == 0, result.output
    with Image.open(target) as image:
        assert image.format == "PNG" and image.size[0] >= 400 and image.size[1] >= 300


def test_mask_png_without_matplotlib_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes an import fail, as if matplotlib were not installed.
    for name in [n for n in sys.modules if n == "matplotlib" or n.startswith("matplotlib.")] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)
    result = invoke("mask", "--png", str(tmp_path / "x.png"))
    assert result.exit_code == 2 and "pip install 'mha-cli[plot]'" in result.stderr
    assert not (tmp_path / "x.png").exists()


def test_mask_batch_out_of_range() -> None:
    result = invoke("mask", "--batch", "7")
    assert result.exit_code == 2 and "batch_size 5" in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["variant=local", "local.window=-1"], "greater than or equal to 0"),
        (["variant=sparse", "sparse.block=11"], "longer than the sequence"),
        (["variant=sparse", "sparse.pattern=strided", "sparse.stride=0"], "greater than 0"),
        (["variant=sparse", "sparse.pattern=strided", "sparse.block=8"], "belongs to pattern: bigbird"),
        (["variant=sparse", "sparse.stride=8"], "belongs to pattern: strided"),
        (["variant=sparse", "seq_len=64", "sparse.block=8", "sparse.random_blocks=9"], "only 3 key blocks"),
        (["variant=sparse", "seq_len=64", "sparse.block=8", "sparse.window_blocks=2"], "odd"),
        (["variant=sparse", "seq_len=64", "sparse.block=8", "sparse.global_blocks=5"], "overlap"),
        (["local.window=8"], "only applies to `variant: local`"),
        (["variant=dense"], "choose one of: full, local, sparse"),
    ],
)
def test_bad_variant_configs_exit_2(args: list[str], expected: str) -> None:
    result = invoke("validate", *args)
    assert result.exit_code == 2, result.output
    assert expected in result.stderr and "Traceback" not in result.output


def test_sweep_json_and_plain_progress(tmp_path: Path) -> None:
    result = invoke("sweep", "--heads", "1,2,3", "impls=[sdpa]", *FAST_OVERRIDES, "--json", "--output-dir", str(tmp_path / "s"))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["counts"] == {"points": 3, "in_this_sweep": 3, "done": 2, "skipped": 1, "crashed": 0, "timeout": 0, "pending": 0}
    assert "[1/3] num_heads=3: skipped" in result.stderr  # found at once; the others once their repetitions are timed
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [
        ".mha.lock", "points.jsonl", "report.md", "summary.csv", "summary.json", "sweep.json", "sweep.png"]


def test_sweep_tables_pivot_two_axes_and_fit_the_scaling() -> None:
    result = invoke("sweep", "--heads", "1,2", "--seq-len", "16,32", "impls=[sdpa]", "mask.key_padding=null",
                    *FAST_OVERRIDES, "--no-save")
    assert result.exit_code == 0, result.output
    assert "num_heads \\ seq_len" in result.stdout and "fastest implementation per point" in result.stdout
    assert "time ~ seq_len^exponent" in result.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--heads", "1,x"], "'x' is not an integer"),
        (["--variant", "full,dense"], "variant = 'dense'"),
        ([], "nothing to sweep"),
        (["--heads", "1", "--point-timeout", "3"], "needs --isolate"),
        (["--heads", "1", "--shard", "5/4"], "between 1 and N"),
        (["--resume", "nowhere"], "not a sweep folder"),
    ],
)
def test_sweep_usage_errors_exit_2(args: list[str], expected: str) -> None:
    result = invoke("sweep", *args, "--no-save") if "--resume" not in args else invoke("sweep", *args)
    assert result.exit_code == 2, result.output
    assert expected in result.stderr and "Traceback" not in result.output


def fast_run(*args: str):
    return invoke("run", *FAST_OVERRIDES, "impls=[sdpa]", *args)


def test_running_into_a_folder_with_results_is_refused_before_measuring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "run"
    assert fast_run("--output-dir", str(folder)).exit_code == 0
    before = (folder / "results.json").read_text()

    def must_not_measure(*_: object, **__: object) -> None:
        raise AssertionError("measured before refusing the folder")

    monkeypatch.setattr("mha_cli.runner.run_experiment", must_not_measure)
    for command in (["run", *FAST_OVERRIDES], ["sweep", "--heads", "1,2", *FAST_OVERRIDES]):
        refused = invoke(*command, "--output-dir", str(folder))
        assert refused.exit_code == 2 and "already holds results" in refused.stderr and "--overwrite" in refused.stderr
    assert (folder / "results.json").read_text() == before
    monkeypatch.undo()
    replaced = fast_run("num_heads=4", "--output-dir", str(folder), "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert json.loads((folder / "results.json").read_text())["config"]["num_heads"] == 4


@pytest.mark.parametrize("case", ["a file", "under a file"])
def test_an_output_folder_that_cannot_be_made_is_exit_2_before_measuring(tmp_path: Path, case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("mine")
    monkeypatch.setattr("mha_cli.runner.run_experiment", lambda *a, **k: pytest.fail("measured first"))
    target = blocker if case == "a file" else blocker / "run"
    for command in ("run", "sweep"):
        extra = ["--heads", "1,2"] if command == "sweep" else []
        result = invoke(command, *extra, "--output-dir", str(target))
        assert result.exit_code == 2, result.output
        assert str(blocker) in result.stderr and "Traceback" not in result.output
    assert blocker.read_text() == "mine"


def test_result_files_follow_the_umask(tmp_path: Path) -> None:
    import os
    import stat

    old = os.umask(0o022)
    try:
        assert fast_run("--output-dir", str(tmp_path / "run")).exit_code == 0
        assert invoke("sweep", "--heads", "1,2", *FAST_OVERRIDES, "impls=[sdpa]", "--output-dir", str(tmp_path / "sweep")).exit_code == 0
    finally:
        os.umask(old)
    files = [p for p in (tmp_path / "run").iterdir()] + [p for p in (tmp_path / "sweep").iterdir()]
    assert {p.name for p in files} >= {"config.yaml", "results.json", "report.md", "summary.json", "sweep.json", "points.jsonl"}
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {p.name: "0o644" for p in files}


@pytest.mark.parametrize("command", [["explain"], ["plot", "weights", "--png", "w.png"], ["validate"], ["run", "--no-save"]])
def test_commands_that_allocate_refuse_what_cannot_fit(command: list[str], tmp_path: Path) -> None:
    process = subprocess.run(
        [sys.executable, "-m", "mha_cli", *command, "seq_len=60000", "batch_size=4"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert process.returncode == 2, process.stderr
    assert "would need about" in process.stderr and "Traceback" not in process.stderr


def test_validate_and_run_state_the_same_estimate() -> None:
    validated = invoke("validate", "seq_len=200000")
    ran = invoke("run", "seq_len=200000", "--no-save")
    assert validated.exit_code == ran.exit_code == 2
    need = re.search(r"would need about ([\d.]+ \w+)", validated.stderr)
    assert need is not None and f"would need about {need.group(1)}" in ran.stderr


def test_mask_refuses_a_plan_that_cannot_fit() -> None:
    result = invoke("mask", "variant=local", "seq_len=1000000000", "--max-memory", "1GiB")
    assert result.exit_code == 2 and "would need about" in result.stderr


def test_a_bare_field_name_is_explained_as_a_missing_value() -> None:
    result = invoke("validate", "num_heads")
    assert result.exit_code == 2 and "KEY=VALUE, e.g. num_heads=4" in result.stderr


def test_user_text_is_not_read_as_rich_markup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mha_cli.errors import UsageError

    def no_matplotlib(*_: object, **__: object) -> None:
        raise UsageError("no matplotlib")

    monkeypatch.setattr("mha_cli.report.mask_render.write_pattern_png", no_matplotlib)
    folder = tmp_path / "[bold]x[/bold]"
    result = fast_run("--output-dir", str(folder))
    assert result.exit_code == 0, result.output
    assert "pip install 'mha-cli[plot]'" in result.stderr and f"saved to {folder}/" in result.stderr


def test_a_sweep_says_when_it_leaves_the_picture_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mha_cli.errors import UsageError

    def no_matplotlib(*_: object, **__: object) -> bool:
        raise UsageError("no matplotlib")

    monkeypatch.setattr("mha_cli.report.sweep_files.write_plot", no_matplotlib)
    result = invoke("sweep", "--heads", "1,2", "impls=[sdpa]", *FAST_OVERRIDES, "--output-dir", str(tmp_path / "s"))
    assert result.exit_code == 0 and "sweep.png not written: matplotlib is not installed" in result.stderr


def test_no_color_means_no_animation(monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    from mha_cli.cli.common import animated

    terminal = Console(force_terminal=True)
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert animated(terminal)
    monkeypatch.setenv("NO_COLOR", "1")
    assert not animated(terminal)
    assert not animated(Console(force_terminal=False))


def test_sweep_lines_give_durations_in_human_units(tmp_path: Path) -> None:
    result = invoke("sweep", "--heads", "1,2", "impls=[sdpa]", *FAST_OVERRIDES, "--no-save")
    lines = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert len(lines) == 2 and all(re.search(r"done in [\d.]+ (ms|s|µs) \(sdpa [\d.]+ (µs|ms|s)\)", line) for line in lines)
    assert "e+" not in result.stderr and "e-" not in result.stderr


@pytest.mark.parametrize("how", ["--debug", "MHA_DEBUG=1"])
@pytest.mark.parametrize(("args", "code"), [(["run", "num_heads=3", "--no-save"], 2), (["validate", "no/such.yaml"], 2)])
def test_debug_shows_the_traceback_and_keeps_the_exit_code(
    how: str, args: list[str], code: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = invoke(*args)
    monkeypatch.setenv("MHA_DEBUG", "1" if how == "MHA_DEBUG=1" else "")  # --debug sets it: restored after the test
    debugged = invoke(*(["--debug"] if how == "--debug" else []), *args)
    assert plain.exit_code == debugged.exit_code == code
    assert "Traceback (most recent call last)" in debugged.stderr and "Traceback" not in plain.stderr
    assert plain.stderr.strip().splitlines()[0] in debugged.stderr  # the same message after the traceback


def test_bugs_are_exit_1_without_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MHA_DEBUG", raising=False)

    def broken(*_: object, **__: object) -> None:
        raise ValueError("boom")

    monkeypatch.setattr("mha_cli.runner.run_experiment", broken)
    result = invoke("run", "--no-save")
    assert result.exit_code == 1 and "internal error: ValueError: boom" in result.stderr and "--debug" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_full_disk_while_saving_is_exit_1_with_a_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    def full(*_: object, **__: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "results.json"))

    monkeypatch.setattr("mha_cli.report.files.write_atomic", full)
    result = fast_run("--output-dir", str(tmp_path / "run"))
    assert result.exit_code == 1 and "No space left on device" in result.stderr
    assert "results.json" in result.stderr and "Traceback" not in result.output


def test_validate_says_what_it_cannot_check_without_torch() -> None:
    result = invoke("validate", "device=cuda")
    assert result.exit_code == 0 and "device cuda is checked by `mha run`" in result.stderr


def test_a_run_in_which_every_implementation_was_skipped_exits_1_with_the_reasons() -> None:
    result = invoke("run", "impls=[torch]", "timing.scope=core", *FAST_OVERRIDES, "--no-save")
    assert result.exit_code == 1, result.output
    assert "nn.MultiheadAttention has no separate core" in result.stdout
    assert "FAIL: nothing was measured: every implementation was skipped" in result.stdout
    as_json = invoke("run", "impls=[torch]", "timing.scope=core", *FAST_OVERRIDES, "--no-save", "--json")
    assert as_json.exit_code == 1 and json.loads(as_json.stdout)["results"][0]["status"] == "skipped"


@pytest.mark.parametrize("command", _commands())
def test_help_examples_work_without_a_clone(command: str) -> None:
    """`mha X --help` examples name shipped examples (example:NAME), not configs/ files a pip user lacks."""
    result = invoke(*command.split(), "--help")
    examples = [line.strip() for line in result.stdout.split("Examples:")[-1].splitlines() if line.strip().startswith("mha ")]
    assert examples
    assert not [line for line in examples if "configs/" in line], examples


@pytest.mark.parametrize(("args", "words"), [
    (["validate", "mask.causal=1"], "override `mask.causal=1`: mask.causal: must be true or false (got 1)"),
    (["sweep", "--heads", "0,2", "--no-save"], "num_heads = 0: input should be greater than 0"),
    (["run", "variant=sparse", "sparse.pattern=custom", "--no-save"],
     "override `sparse.pattern=custom`: sparse.mask_mod: is required"),
])
def test_config_mistakes_through_the_command_line(args: list[str], words: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2 and words in result.stderr and "Traceback" not in result.stderr


def test_a_tab_indented_config_through_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "tabs.yaml"
    path.write_text("embed_dim: 64\nmask:\n\tcausal: true\n")
    result = invoke("validate", str(path))
    assert result.exit_code == 2 and f"{path}:3: not valid YAML: this line is indented with a tab" in result.stderr


def test_no_color_means_no_escape_sequence_even_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from mha_cli.cli.common import stderr_console

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for no_color, escapes in (("1", False), ("", True)):
        monkeypatch.setenv("NO_COLOR", no_color)
        terminal = Terminal()
        monkeypatch.setattr(sys, "stderr", terminal)
        stderr_console().print("[bold red]error:[/] [italic]title[/]")
        assert ("\x1b[" in terminal.getvalue()) is escapes, terminal.getvalue()


@pytest.mark.parametrize("columns", ["60", "80", "100", "160"])
def test_tables_fit_the_terminal_by_leaving_columns_out_never_by_cutting_cells(columns: str) -> None:
    result = runner.invoke(app, ["run", *FAST_OVERRIDES, "--no-save"], env={"COLUMNS": columns})
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout  # no cell cut short
    for impl in ("torch", "manual", "sdpa"):
        assert re.search(rf"│ {impl} +│ ok +│ [\d.]+ (µs|ms) ", result.stdout), result.stdout
    table_lines = [line for line in result.stdout.splitlines() if line.startswith(("┃", "│", "┏", "└"))]
    assert all(len(line) <= int(columns) for line in table_lines)
    assert ("left out at this width" in result.stdout) == (columns != "160")
