"""What a pattern module provides. Each module in patterns/ defines these names; the registry
(patterns/__init__.py) maps pattern names to modules, and no other file names a pattern.

- NAME: the pattern's name ("local", "bigbird", ...); SECTION: the config section holding its
  settings ("local", or "sparse" with `pattern: NAME`).
- Settings: its pydantic settings model (defaults are the documented defaults).
- rule(config): the single definition of the pattern, (i, j) -> may query i attend key j, on
  broadcasting integer tensors. Every dense mask, blocked's pieces and flex's mask_mod derive from it.
- words(config): the exact rule in words; brief(settings): the settings in a few words.
- problems(config): (field path, message) for settings that cannot work with the config's sizes.
- plan(config): blocked's BlockPlan for it.
- keys_per_query(config), extra_blocked_elements(config): for the memory guard.

Modules import torch and the block-plan machinery inside their functions only:
`mha validate` reads the settings models without torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch

    from ..block_plan import BlockPlan
    from ..config import Config
    from ..config_fields import Section

PatternRule = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]


class PatternModule(Protocol):
    NAME: str
    SECTION: str
    Settings: type[Section]

    def rule(self, config: Config) -> PatternRule: ...

    def words(self, config: Config) -> str: ...

    def brief(self, settings: Any) -> str: ...

    def problems(self, config: Config) -> list[tuple[str, str]]: ...

    def plan(self, config: Config) -> BlockPlan: ...

    def keys_per_query(self, config: Config) -> int: ...

    def extra_blocked_elements(self, config: Config) -> int: ...
