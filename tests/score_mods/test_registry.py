"""One module per score mod: the registry holds every mod in score_mods/, and no other file names one."""

from __future__ import annotations

import io
import tokenize
from pathlib import Path

import pytest

from mha_cli.patterns import PATTERNS
from mha_cli.score_mods import SCORE_MODS, ScoreMod

PACKAGE = Path(__file__).resolve().parents[2] / "mha_cli"
OWN = ("words", "brief")  # what each mod must say for itself; function or bias_function: one of them


def test_every_score_mod_module_is_registered_and_complete() -> None:
    modules = {p.stem for p in (PACKAGE / "score_mods").glob("*.py")} - {"__init__", "base", "applied"}
    assert {SCORE_MODS[name].__module__.rsplit(".", 1)[1] for name in SCORE_MODS} == modules
    for name, mod in SCORE_MODS.items():
        assert issubclass(mod, ScoreMod) and mod.NAME == name and mod.FORMULA
        missing = [method for method in OWN if method not in vars(mod)]
        assert not missing, f"{mod.__module__} does not define {missing}"
        assert "function" in vars(mod) or "bias_function" in vars(mod)


@pytest.mark.parametrize("path", sorted(p for p in PACKAGE.rglob("*.py") if "score_mods" not in p.parts))
def test_no_other_module_names_a_score_mod(path: Path) -> None:
    own = [name for name in SCORE_MODS if name not in PATTERNS]  # "custom" is a pattern's name too
    names = {f'"{name}"' for name in own} | {f"'{name}'" for name in own}
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline)
    named = [t.string for t in tokens if t.type == tokenize.STRING and t.string in names]
    assert not named, f"{path.relative_to(PACKAGE)} names {named}: that belongs in its score mod's module"
