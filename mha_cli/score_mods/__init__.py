"""Score modifications (`score_mod:`): one module per mod, and the registry that maps kinds to them.

Adding one is adding a module with a ScoreMod subclass (score_mods/base.py says
what it provides) and one line in SCORE_MODS. Masks (patterns, causal, padding)
decide which pairs attend; a mod changes the scores of those that do, before
the softmax, and combines with every variant and mask. applied.AppliedMod is a
mod bound to its numbers on a device: what implementations call.
"""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Discriminator, Tag

from .alibi import Alibi
from .base import BiasFunction, ScoreFunction, ScoreMod, Tables
from .custom import CustomMod
from .relative_bias import RelativeBias
from .softcap import Softcap

SCORE_MODS: dict[str, type[ScoreMod]] = {mod.NAME: mod for mod in (Alibi, Softcap, RelativeBias, CustomMod)}
SCORE_MOD_SETTINGS: dict[str, Any] = {name: mod.Settings for name, mod in SCORE_MODS.items()}

__all__ = ["SCORE_MODS", "SCORE_MOD_SETTINGS", "BiasFunction", "ScoreFunction", "ScoreMod", "ScoreModConfig", "Tables",
           "brief", "shorthand"]


def _kind(value: Any) -> str | None:
    if isinstance(value, dict):
        kind = value.get("kind")
        return kind if kind in SCORE_MODS else None
    return getattr(value, "kind", None)


# Each mod has only its own fields: a field of another mod is an unknown key there.
ScoreModConfig = Annotated[
    Union[tuple(Annotated[model, Tag(name)] for name, model in SCORE_MOD_SETTINGS.items())],  # noqa: UP007
    Discriminator(_kind, custom_error_type="score_mod_kind",
                  custom_error_message=(f"kind must be one of: {', '.join(SCORE_MODS)} "
                                        "(score_mod=alibi is short for score_mod.kind=alibi)")),
]


def shorthand(value: Any) -> Any:
    """`score_mod: alibi` for {kind: alibi}; `score_mod: my_mods.py:bias` for your own (kind: custom)."""
    if isinstance(value, str):
        code = ":" in value or value.endswith(".py") or "/" in value  # a reference, perhaps missing its :attribute
        return {"kind": CustomMod.NAME, "function": value} if code else {"kind": value}
    return value


def brief(section: dict[str, Any] | None) -> str:
    """A saved config's `score_mod:` section in a few words ("none" without one)."""
    if not section:
        return "none"
    mod = SCORE_MODS.get(section.get("kind", ""))
    return mod.brief(mod.Settings.model_validate(section)) if mod is not None else str(section.get("kind"))
