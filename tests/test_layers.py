"""The design's layering, read from the code's own import statements: no module of mha_cli imports
one that imports it back, counting imports inside functions and under TYPE_CHECKING, and nothing
below the runner takes a Config."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "mha_cli"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, known: set[str]) -> set[str]:
    """The mha_cli modules one file imports, wherever the statement is (functions, TYPE_CHECKING blocks)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            targets = [module, *(f"{module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            # A module using its own package's names (from . import X) does not depend on the package's other modules.
            if target and target != name and not name.startswith(target + "."):
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    files = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: imports(path, set(files)) for name, path in files.items()}


def test_no_import_cycle() -> None:
    try:
        tuple(graphlib.TopologicalSorter(graph()).static_order())
    except graphlib.CycleError as error:
        raise AssertionError(f"import cycle: {' -> '.join(error.args[1])}") from None


def test_the_finder_sees_a_cycle_when_there_is_one() -> None:
    edges = graph()
    edges["mha_cli.sizes"] = {*edges["mha_cli.sizes"], "mha_cli.runner"}  # what a careless import would do
    try:
        tuple(graphlib.TopologicalSorter(edges).static_order())
    except graphlib.CycleError:
        return
    raise AssertionError("a cycle through sizes and runner went unseen")


# Below the runner: what the resolved experiment feeds. They read an Experiment, never a Config.
BELOW_THE_RUNNER = ["masks", "block_plan", "pieces", "prepared", "inputs", "workload", "check", "training", "measure",
                    "memory", "shapes", "mask_grid", "backward_steps", "patterns", "attention", "report"]


def test_nothing_below_the_runner_imports_the_config() -> None:
    edges = graph()
    below = [name for name in edges if any(name == f"mha_cli.{b}" or name.startswith(f"mha_cli.{b}.") for b in BELOW_THE_RUNNER)]
    offenders = [name for name in below if "mha_cli.config" in edges[name]]
    assert not offenders, f"{offenders} import mha_cli.config: resolve the config once (experiment.resolve) instead"
