"""What every pattern is: a class bound to its own settings and the experiment's sizes.

Each module in patterns/ defines one subclass of Pattern; the registry
(patterns/__init__.py) maps pattern names to them. A pattern never sees the
whole config: it gets its settings, the sizes and the seed, and for its block
plan a PlanContext (block_plan.py) that carries the combined rule.

Modules import torch and the block-plan machinery inside their methods only:
`mha validate` reads the settings models and checks their problems without torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from ..sizes import Sizes

if TYPE_CHECKING:
    import torch

    from ..block_plan import BlockPlan, PlanContext

# (b, h, q_idx, kv_idx) -> may attend, on broadcasting integer tensors: FlexAttention's mask_mod.
PatternRule = Callable[["torch.Tensor", "torch.Tensor", "torch.Tensor", "torch.Tensor"], "torch.Tensor"]


class Pattern(NamedTuple):
    """One pattern with its settings, for one experiment's sizes (and seed, for random blocks). Immutable.

    Each subclass sets, as plain class attributes: NAME ("local", "bigbird", ...); SECTION, the config
    section holding its settings ("local", or "sparse" with `pattern: NAME`); Settings, its pydantic
    settings model (defaults are the documented defaults)."""

    settings: Any  # an instance of Settings
    sizes: Sizes
    seed: int = 0

    NAME = ""
    SECTION = ""
    Settings = None  # the pattern's pydantic settings model (a class attribute: annotated, it would be a field)
    # Its rule is code the config names (custom): only known by importing and evaluating it, which
    # `mha validate` never does.
    IMPORTS_USER_CODE = False
    # Why the pattern has no meaning when its queries sit after a KV cache (aligned lower right: query i at key
    # position S - L + i), or "" when it has one: a rule of positions shifts, a table laid over the L queries does not.
    NOT_SHIFTABLE = ""

    def rule(self) -> PatternRule:
        """The single definition of the pattern; every dense mask, blocked's pieces and flex's mask_mod derive from it."""
        raise NotImplementedError

    def varies(self, rule: PatternRule) -> tuple[bool, bool]:
        """(by batch item, by head): whether the rule reads b or h, so masks keep a dimension there."""
        return False, False

    def words(self) -> str:
        """The exact rule in words."""
        raise NotImplementedError

    @classmethod
    def brief(cls, settings: Any) -> str:
        """The settings in a few words: "window 128"."""
        raise NotImplementedError

    @classmethod
    def problems(cls, settings: Any, sizes: Sizes) -> list[tuple[str, str]]:
        """(field path, message) for settings that cannot work with these sizes."""
        return []

    def plan(self, context: PlanContext) -> BlockPlan:
        """blocked's pieces for this pattern under the context's combined rule."""
        raise NotImplementedError

    def keys_per_query(self) -> int | None:
        """An upper bound on the keys blocked reads per query, for the memory guard; None when only
        evaluating the rule can tell (PlanContext.generic_blocks does)."""
        raise NotImplementedError

    def extra_blocked_elements(self) -> int:
        """Elements blocked copies beyond its masks and outputs (BigBird's gathered random blocks)."""
        return 0
