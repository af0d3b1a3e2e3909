"""One module per pattern: the registry holds every module in patterns/, and no other file names a pattern."""

from __future__ import annotations

import io
import tokenize
from pathlib import Path

import pytest

from mha_cli.patterns import REGISTRY, base

PACKAGE = Path(__file__).resolve().parents[2] / "mha_cli"
INTERFACE = [name for name in base.PatternModule.__annotations__] + [
    name for name in vars(base.PatternModule) if not name.startswith("_")
]


def test_every_pattern_module_is_registered_and_complete() -> None:
    modules = {p.stem for p in (PACKAGE / "patterns").glob("*.py")} - {"__init__", "base"}
    assert modules == set(REGISTRY)
    for name, module in REGISTRY.items():
        missing = [attribute for attribute in INTERFACE if not hasattr(module, attribute)]
        assert not missing, f"patterns/{name}.py lacks {missing}"
        assert module.NAME == name


@pytest.mark.parametrize("path", sorted(p for p in PACKAGE.rglob("*.py") if "patterns" not in p.parts))
def test_no_other_module_names_a_pattern(path: Path) -> None:
    names = {f'"{name}"' for name in REGISTRY if name != "local"} | {f"'{name}'" for name in REGISTRY if name != "local"}
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline)
    named = [t.string for t in tokens if t.type == tokenize.STRING and t.string in names]
    assert not named, f"{path.relative_to(PACKAGE)} names {named}: that belongs in its pattern module"
