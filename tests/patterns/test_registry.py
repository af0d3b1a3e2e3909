"""One module per pattern: the registry holds every pattern in patterns/, and no other file names a pattern."""

from __future__ import annotations

import io
import tokenize
from pathlib import Path

import pytest

from mha_cli.patterns import PATTERNS, Pattern
from mha_cli.score_mods import SCORE_MODS

PACKAGE = Path(__file__).resolve().parents[2] / "mha_cli"
# What each pattern must say for itself; the rest (varies, problems, extra_blocked_elements) has defaults.
OWN = ("rule", "words", "brief", "plan", "keys_per_query")


def test_every_pattern_module_is_registered_and_complete() -> None:
    modules = {p.stem for p in (PACKAGE / "patterns").glob("*.py")} - {"__init__", "base"}
    assert modules == set(PATTERNS)
    for name, pattern in PATTERNS.items():
        assert issubclass(pattern, Pattern) and pattern.NAME == name
        assert pattern.__module__ == f"mha_cli.patterns.{name}"
        missing = [method for method in OWN if method not in vars(pattern)]
        assert not missing, f"patterns/{name}.py does not define {missing}"


@pytest.mark.parametrize("path", sorted(p for p in PACKAGE.rglob("*.py") if "patterns" not in p.parts))
def test_no_other_module_names_a_pattern(path: Path) -> None:
    # A score mod of the same kind ("custom": your own code) names itself in its own module.
    shared = set(SCORE_MODS) if "score_mods" in path.parts else set()
    own = [name for name in PATTERNS if name != "local" and name not in shared]
    names = {f'"{name}"' for name in own} | {f"'{name}'" for name in own}
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline)
    named = [t.string for t in tokens if t.type == tokenize.STRING and t.string in names]
    assert not named, f"{path.relative_to(PACKAGE)} names {named}: that belongs in its pattern module"
