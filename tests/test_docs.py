"""Every `mha` command the README and the docs/ pages show runs, page by page in page order, each page in a fresh, empty
folder (no clone: the configs a page uses are shipped examples, named or copied by its own commands).

Commands run through bash exactly as written (quotes, variables, redirections),
with three kinds of help a reader would not need: timing budgets are cut to
0.01 s (an override appended by a small `mha` shim on PATH), the longest
sweeps are shrunk to shorter sequences (SHRUNK, the axes themselves stay, so a
sweep the default config cannot run still fails here), and a CI-only input is
prepared (PREPARED). A command fails the test when it exits with an
unexpected code or prints a traceback; a sweep fails when it skips every point
(it exits 1 then).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

SHRUNK = {
    "--seq-len 1024,2048,4096,8192": "--seq-len 256,512",
    "--seq-len 128,512,2048": "--seq-len 16,64",
}
PREPARED = {
    # In CI this folder is an artifact from main; here it is a copy of the merge just made.
    "mha compare baseline-sweep/ merged/": "cp -r merged baseline-sweep",
}
# A compare may legitimately find a regression on a noisy machine (exit 3); it must not crash or miss.
EXIT_CODES = {"compare": {0, 3}}
MATRIX = {"${{ matrix.shard }}": ["1", "2", "3", "4"]}
SHIM = """#!{python}
import sys
from mha_cli.cli import main
args = sys.argv[1:]
if args[:1] in (["run"], ["sweep"]) and "--resume" not in args:
    args += ["timing.min_run_time=0.01", "timing.repetitions=2"]
sys.argv = [sys.argv[0], *args]
main()
"""


def readme_commands(text: str) -> list[str]:
    """Every `mha ...` line in bash and yaml code blocks, continuation lines joined, comments dropped."""
    commands = []
    for language, body in re.findall(r"```(\w*)\n(.*?)```", text, re.S):
        if language not in ("bash", "yaml"):
            continue
        lines = body.splitlines()
        index = 0
        while index < len(lines):
            line = lines[index].strip()
            if language == "yaml":
                line = line.removeprefix("- run:").strip()
            index += 1
            if not line.startswith("mha "):
                continue
            while line.endswith("\\") or (language == "yaml" and index < len(lines) and
                                          lines[index].startswith(" " * 13) and not lines[index].strip().startswith("- ")):
                line = line.rstrip("\\").rstrip() + " " + lines[index].strip()
                index += 1
            commands.append(re.sub(r"\s+#.*$", "", line).strip())
    return commands


def expanded(command: str) -> list[str]:
    for placeholder, values in MATRIX.items():
        if placeholder in command:
            return [command.replace(placeholder, value) for value in values]
    return [command]


PAGES = ["README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md"))]


def test_the_pages_show_the_commands_worth_showing() -> None:
    commands = [c for page in PAGES for c in readme_commands((REPO / page).read_text(encoding="utf-8"))]
    assert len(commands) >= 25
    for verb in ("run", "validate", "explain", "mask", "plot weights", "plot results", "sweep", "merge", "compare", "env",
                 "examples", "examples copy"):
        assert any(c.startswith(f"mha {verb}") for c in commands), f"no page shows `mha {verb}`"


@pytest.mark.parametrize("page", [p for p in PAGES if readme_commands((REPO / p).read_text(encoding="utf-8"))])
def test_every_command_on_the_page_runs(page: str, tmp_path: Path) -> None:
    commands = readme_commands((REPO / page).read_text(encoding="utf-8"))
    # An empty folder, as after `pip install`: examples are named (example:NAME) or copied by the page's own commands.
    assert not any(tmp_path.iterdir())
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "mha"
    shim.write_text(SHIM.format(python=sys.executable))
    shim.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "NO_COLOR": "1",
           "GITHUB_STEP_SUMMARY": str(tmp_path / "step-summary.md"),
           "SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "8"}
    for command in commands:
        for prefix, preparation in PREPARED.items():
            if command.startswith(prefix):
                subprocess.run(preparation, shell=True, check=True, cwd=tmp_path)
        for shrunk_from, shrunk_to in SHRUNK.items():
            command = command.replace(shrunk_from, shrunk_to)
        for concrete in expanded(command):
            done = subprocess.run(["bash", "-c", concrete], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
            allowed = EXIT_CODES.get(concrete.split()[1], {0})
            assert done.returncode in allowed, f"{page}: `{concrete}` exited {done.returncode}:\n{done.stderr[-3000:]}"
            assert "Traceback" not in done.stderr, f"{page}: `{concrete}` printed a traceback:\n{done.stderr[-3000:]}"
    if any("GITHUB_STEP_SUMMARY" in c for c in commands):
        assert (tmp_path / "step-summary.md").read_text().startswith("## mha compare")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("```bash\nmha run x  # note\n```\n", ["mha run x"]),
        ("```bash\nmha sweep a \\\n    --b c\n```\n", ["mha sweep a --b c"]),
        ("```yaml\n      - run: mha sweep a\n             --shard 1/4\n      - uses: x\n```\n", ["mha sweep a --shard 1/4"]),
        ("```text\nmha validate bad.yaml\n```\n", []),
    ],
)
def test_commands_are_read_as_a_reader_would(text: str, expected: list[str]) -> None:
    assert readme_commands(text) == expected


def config_blocks() -> list[tuple[str, str]]:
    """Every YAML block of the pages that is a config (a CI workflow, with `jobs:`, is not)."""
    return [(page, block) for page in PAGES
            for language, block in re.findall(r"```(\w*)\n(.*?)```", (REPO / page).read_text(encoding="utf-8"), re.S)
            if language == "yaml" and not block.lstrip().startswith("jobs:")]


@pytest.mark.parametrize(("page", "block"), config_blocks())
def test_every_config_shown_is_valid(page: str, block: str, tmp_path: Path) -> None:
    from mha_cli.config import load_config

    path = tmp_path / "shown.yaml"
    path.write_text(block)
    config = load_config(path)  # raises ConfigError, naming the line, if the page shows a broken config
    if config.sweep:
        from mha_cli.sweep.grid import grid_for

        assert grid_for(config.model_copy(update={"variant": "local"}), {}).size() > 1


def test_the_readme_sample_output_is_what_mha_run_prints_today() -> None:
    """The README's sample is a real run (docs/readme_sample.json) rendered by today's code: a change to the
    table's columns or notes fails here until `python docs/make_readme_sample.py` runs again."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_readme_sample", REPO / "docs" / "make_readme_sample.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    shown = script.shown_in_readme()
    assert shown == script.rendered(script.SAMPLE), "run: python docs/make_readme_sample.py"
    from mha_cli.report.rows import result_table
    from mha_cli.results import RunReport
    import json

    report = RunReport.from_dict(json.loads(script.SAMPLE.read_text()))
    headers, _ = result_table(report.results)
    assert all(header in shown for header in headers)
    assert all(len(result.samples_s) == report.config["timing"]["repetitions"] for result in report.results)
