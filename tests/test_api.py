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


# --- Arguments: what a caller may pass, and what a wrong one raises --------------------------------------------

SMALL = ["seq_len=16", "timing.min_run_time=0.01", "timing.repetitions=2", "impls=[sdpa]"]


@pytest.fixture(scope="module")
def small() -> mha_cli.Config:
    return mha_cli.load_config(None, SMALL)


@pytest.mark.parametrize("call", ["run_experiment", "explain", "run_sweep"])
def test_a_path_instead_of_a_config_is_a_type_error_that_says_how_to_load_it(call: str) -> None:
    args: tuple[object, ...] = ("configs/x.yaml", {"num_heads": [1]}) if call == "run_sweep" else ("configs/x.yaml",)
    with pytest.raises(TypeError, match=r"config: expected a Config \(from mha_cli.load_config\), got a str") as raised:
        getattr(mha_cli, call)(*args)
    assert "mha_cli.load_config('configs/x.yaml')" in str(raised.value)
    assert isinstance(raised.value, mha_cli.MhaError)  # caught with every other error a user can cause


def test_load_config_refuses_a_bare_string_of_overrides_and_says_to_pass_a_list() -> None:
    with pytest.raises(TypeError, match=r"overrides: expected a list .* got a str; put it in a list: \['num_heads=4'\]"):
        mha_cli.load_config(overrides="num_heads=4")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"overrides\[1\]: expected a 'key=value' str"):
        mha_cli.load_config(None, ["num_heads=4", 4])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="path: expected a str or a path-like"):
        mha_cli.load_config(123)  # type: ignore[arg-type]
    assert mha_cli.load_config(None, ("num_heads=4",)).num_heads == 4  # a tuple is a list too


@pytest.mark.parametrize(("grid", "error", "words"), [
    ({"num_heads": []}, ValueError, r"grid\['num_heads'\]: the axis has no values"),
    ({"no_such": [1]}, ValueError, r"grid: bad sweep values:\n  - no_such: no such config field"),
    ({"num_head": [1]}, ValueError, r"num_head: no such config field; did you mean 'num_heads'\?"),
    ({"num_heads": [0, 2]}, ValueError, r"grid: bad sweep values:\n  - num_heads = 0"),
    ({"num_heads": [2, 2]}, ValueError, r"grid\['num_heads'\]: 2 is listed twice"),
    ({"num_heads": 2}, TypeError, r"grid\['num_heads'\]: expected a list of values such as \[1, 2, 4\], got an int"),
    ({"num_heads": "12"}, TypeError, r"grid\['num_heads'\]: expected a list of values .* got a str"),
    ([("num_heads", [1])], TypeError, r"grid: expected a dict of config field path -> list of values"),
    ({}, ValueError, r"grid: nothing to sweep"),
])
def test_a_bad_grid_is_refused_before_anything_runs_naming_grid_and_the_axis(
        small: mha_cli.Config, grid: object, error: type[Exception], words: str, tmp_path: Path) -> None:
    with pytest.raises(error, match=words):
        mha_cli.run_sweep(small, grid, output_dir=tmp_path / "sweep")  # type: ignore[arg-type]
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize(("call", "keyword", "value", "error", "words"), [
    ("run_sweep", "output_dir", 123, TypeError, "output_dir: expected a str or a path-like such as pathlib.Path, got an int"),
    ("run_experiment", "output_dir", 123, TypeError, "output_dir: expected a str or a path-like"),
    ("run_sweep", "output_dir", "", ValueError, "output_dir: the path is empty"),
    ("run_sweep", "overwrite", "yes", TypeError, r"overwrite: expected True or False, got a str \('yes'\)"),
    ("run_experiment", "overwrite", 1, TypeError, "overwrite: expected True or False, got an int"),
    ("run_sweep", "progress", 3, TypeError, "progress: expected a function taking one message"),
    ("run_experiment", "progress", "loud", TypeError, "progress: expected a function taking one message"),
    ("run_sweep", "memory_limit", "4GiB", TypeError, r"memory_limit: expected a number of bytes \(an int\)"),
    ("run_experiment", "memory_limit", -1, ValueError, "memory_limit: must be a positive number of bytes"),
    ("explain", "memory_limit", 0, ValueError, "memory_limit: must be a positive number of bytes"),
    ("explain", "backward", "yes", TypeError, "backward: expected True or False"),
    ("run_experiment", "reprobe", None, TypeError, "reprobe: expected True or False, got None"),
])
def test_a_wrong_keyword_argument_is_a_type_or_value_error_naming_it(
        small: mha_cli.Config, call: str, keyword: str, value: object, error: type[Exception], words: str) -> None:
    args = (small, {"num_heads": [1]}) if call == "run_sweep" else (small,)
    with pytest.raises(error, match=words):
        getattr(mha_cli, call)(*args, **{keyword: value})


# --- output_dir, progress and what a failed call leaves behind ---------------------------------------------------

def test_run_sweep_takes_a_str_or_any_path_like_as_output_dir(small: mha_cli.Config, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    class Where:  # a path-like that is no pathlib.Path
        def __fspath__(self) -> str:
            return "as-path-like"

    for output_dir in ("as-str", Where(), tmp_path / "as-path"):
        summary = mha_cli.run_sweep(small, {"num_heads": [1]}, output_dir=output_dir)
        folder = tmp_path / os.fspath(output_dir)
        assert summary["counts"]["done"] == 1 and (folder / "points.jsonl").exists() and (folder / "summary.json").exists()


def test_run_sweep_takes_print_or_a_progress_object_as_progress(small: mha_cli.Config,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    mha_cli.run_sweep(small, {"num_heads": [1, 2]}, progress=print)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "sweep: 2 points"
    assert any(line.startswith("[1/2] num_heads=1: done in ") for line in printed), printed
    assert any(line.startswith("[2/2] num_heads=2: done in ") for line in printed), printed

    from mha_cli.sweep.runner import Progress

    class Counting(Progress):
        def __init__(self) -> None:
            self.events: list[tuple[object, ...]] = []

        def start(self, total: int, already_done: int) -> None:
            self.events.append(("start", total, already_done))

        def point_finished(self, point, record) -> None:  # type: ignore[no-untyped-def]
            self.events.append(("finished", point.label, record["status"]))

    counting = Counting()
    mha_cli.run_sweep(small, {"num_heads": [1, 2]}, progress=counting)
    assert counting.events == [("start", 2, 0), ("finished", "num_heads=1", "done"), ("finished", "num_heads=2", "done")]

    class OnlyFinished:  # not a Progress subclass: the methods it has are called, the others skipped
        def __init__(self) -> None:
            self.labels: list[str] = []

        def point_finished(self, point, record) -> None:  # type: ignore[no-untyped-def]
            self.labels.append(point.label)

    only = OnlyFinished()
    mha_cli.run_sweep(small, {"num_heads": [1]}, progress=only)
    assert only.labels == ["num_heads=1"]


def test_a_folder_with_results_is_refused_naming_the_python_parameter(small: mha_cli.Config, tmp_path: Path) -> None:
    mha_cli.run_sweep(small, {"num_heads": [1]}, output_dir=tmp_path / "sweep")
    mha_cli.run_experiment(small, output_dir=tmp_path / "run")
    for call, args in ((mha_cli.run_sweep, (small, {"num_heads": [2]})), (mha_cli.run_experiment, (small,))):
        for folder in (tmp_path / "sweep", tmp_path / "run"):
            with pytest.raises(mha_cli.MhaError, match="already holds results") as refused:
                call(*args, output_dir=folder)  # type: ignore[operator]
            assert "overwrite=True" in str(refused.value) and "--overwrite" not in str(refused.value)
    summary = mha_cli.run_sweep(small, {"num_heads": [2]}, output_dir=tmp_path / "sweep", overwrite=True)
    assert summary["counts"]["done"] == 1
    assert mha_cli.run_experiment(small, output_dir=tmp_path / "run", overwrite=True).ok
    (tmp_path / "file").write_text("")
    with pytest.raises(mha_cli.MhaError, match="is a file, not a folder; choose another output_dir$"):
        mha_cli.run_experiment(small, output_dir=tmp_path / "file")


def test_a_sweep_stopped_by_a_config_error_at_its_first_point_can_be_retried(tmp_path: Path) -> None:
    broken = mha_cli.load_config(None, [*SMALL, "impls=[sdpa,mine]", "implementations={mine: tests.your_impls:wrong_shape}"])
    for folder in (tmp_path / "new", tmp_path / "empty"):
        if folder.name == "empty":
            folder.mkdir()
        for _ in range(2):  # the retry meets the same error, not a refusal of the folder
            with pytest.raises(mha_cli.MhaError, match="returned shape"):
                mha_cli.run_sweep(broken, {"num_heads": [1, 2]}, output_dir=folder)
        assert not folder.exists() if folder.name == "new" else [p.name for p in folder.iterdir()] == [".mha.lock"]
    fixed = mha_cli.load_config(None, SMALL)
    assert mha_cli.run_sweep(fixed, {"num_heads": [1, 2]}, output_dir=tmp_path / "new")["counts"]["done"] == 2


def test_a_sweep_interrupted_before_measuring_leaves_nothing_and_one_after_keeps_its_points(
        small: mha_cli.Config, tmp_path: Path) -> None:
    def interrupt_at(text: str):  # type: ignore[no-untyped-def]
        def progress(message: str) -> None:
            if message.startswith(text):
                raise KeyboardInterrupt
        return progress

    folder = tmp_path / "sweep"
    with pytest.raises(KeyboardInterrupt):
        mha_cli.run_sweep(small, {"num_heads": [1, 2]}, output_dir=folder, progress=interrupt_at("checking num_heads=2"))
    assert not folder.exists()
    # Interrupted in the second round of repetitions: both points have a time, and are kept.
    with pytest.raises(KeyboardInterrupt):
        mha_cli.run_sweep(small, {"num_heads": [1, 2]}, output_dir=folder, progress=interrupt_at("repetition 2/2"))
    kept = (folder / "points.jsonl").read_text().splitlines()
    assert len(kept) == 2
    with pytest.raises(mha_cli.MhaError, match="overwrite=True"):
        mha_cli.run_sweep(small, {"num_heads": [1, 2]}, output_dir=folder)
    assert (folder / "points.jsonl").read_text().splitlines() == kept


def test_a_run_that_fails_leaves_no_half_written_folder(small: mha_cli.Config, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(message: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        mha_cli.run_experiment(small, output_dir=tmp_path / "run", progress=interrupted)
    assert not (tmp_path / "run").exists()

    import errno

    import mha_cli.report.files as files

    write = files.write_atomic

    def full_after_the_first(path: Path, text: str) -> None:
        if path.name != "config.yaml":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        write(path, text)

    monkeypatch.setattr(files, "write_atomic", full_after_the_first)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's own")
    for folder in (tmp_path / "run", mine):
        with pytest.raises(OSError, match="No space left"):
            mha_cli.run_experiment(small, output_dir=folder)
    assert not (tmp_path / "run").exists()
    assert sorted(p.name for p in mine.iterdir()) == [".mha.lock", "notes.txt"]
    monkeypatch.setattr(files, "write_atomic", write)
    assert mha_cli.run_experiment(small, output_dir=mine).ok and (mine / "results.json").exists()


def test_a_report_in_which_every_implementation_was_skipped_is_not_ok() -> None:
    config = mha_cli.load_config(None, ["impls=[torch]", "timing.scope=core", "timing.repetitions=1",
                                        "timing.min_run_time=0.01"])
    report = mha_cli.run_experiment(config)
    assert [result.status for result in report.results] == ["skipped"]
    assert not report.ok and "no separate core" in report.results[0].reason


def test_load_config_takes_a_shipped_example_by_name() -> None:
    config = mha_cli.load_config("example:local_window", ["local.window=16"])
    assert config.variant == "local" and config.local is not None and config.local.window == 16


def test_a_sweep_summary_says_whether_it_passed_as_mha_sweep_would(small: mha_cli.Config) -> None:
    def broken(q, k, v, spec):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom")

    good = mha_cli.run_sweep(small, {"num_heads": [1, 2]})
    assert good["ok"] and good["problem"] is None
    config = small.model_copy(update={"impls": ["sdpa", "mine"], "implementations": {"mine": broken}})
    bad = mha_cli.run_sweep(config, {"num_heads": [1, 2]})
    assert bad["status"] == "complete" and not bad["ok"] and "mine failed the reference check or crashed" in bad["problem"]
