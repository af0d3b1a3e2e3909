"""The Python API: `import mha_cli` exposes the library lazily, and every documented example runs."""

from __future__ import annotations

import doctest
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import mha_cli

REPO = Path(__file__).resolve().parent.parent
API = ["load_config", "run_experiment", "run_sweep", "explain", "Config"]


def test_importing_the_package_does_not_import_torch() -> None:
    code = "import sys, mha_cli; mha_cli.load_config(); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.stdout.strip() == "False", done.stderr


def test_every_exported_name_resolves_and_unknown_names_fail() -> None:
    for name in mha_cli.__all__:
        assert getattr(mha_cli, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        mha_cli.nope  # noqa: B018


@pytest.mark.parametrize("name", API)
def test_each_api_function_has_a_docstring_example_that_runs(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    function = getattr(mha_cli, name)
    tests = doctest.DocTestFinder().find(function, name, globs={})
    assert tests and tests[0].examples, f"{name} has no example"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in tests:
        runner.run(test)
    assert runner.failures == 0
    assert function.__annotations__ or isinstance(function, type), f"{name} has no type hints"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_the_notebook_session_in_the_docs_runs(tmp_path: Path) -> None:
    """docs/python-api.md, block by block in one namespace, as a notebook runs its cells."""
    blocks = python_blocks((REPO / "docs" / "python-api.md").read_text(encoding="utf-8"))
    assert len(blocks) >= 4
    (tmp_path / "configs").symlink_to(REPO / "configs")
    namespace: dict[str, object] = {}
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for index, block in enumerate(blocks):
            try:
                exec(compile(block, f"docs/python-api.md block {index + 1}", "exec"), namespace)  # noqa: S102
            except Exception as error:  # noqa: BLE001
                pytest.fail(f"block {index + 1} of docs/python-api.md raised {type(error).__name__}: {error}\n{block}")
    finally:
        os.chdir(cwd)
    assert (tmp_path / "heads.png").stat().st_size > 10_000


def test_all_lists_exactly_the_lazy_exports() -> None:
    assert sorted(mha_cli.__all__) == sorted(["__version__", *mha_cli._EXPORTS])


@pytest.mark.parametrize("name", ["Config", "RunReport", "Result", "SweepSummary", "Explanation", "ConfigError"])
def test_each_result_type_says_what_it_is(name: str) -> None:
    assert (getattr(mha_cli, name).__doc__ or "").strip()


def test_the_python_example_of_your_implementation_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/your-implementation.md's Python block: a function defined in the session, named directly."""
    (block,) = python_blocks((REPO / "docs" / "your-implementation.md").read_text(encoding="utf-8"))
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "docs_example"}
    exec(compile(block, "docs/your-implementation.md", "exec"), namespace)  # noqa: S102
    report = namespace["report"]
    assert [(r.impl, r.status) for r in report.results] == [("sdpa", "ok"), ("mine", "ok")]  # type: ignore[attr-defined]
