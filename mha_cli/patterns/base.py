"""What a pattern module provides. Each module in patterns/ defines these names; the registry
(patterns/__init__.py) maps pattern names to modules, and no other file names a pattern.

- NAME: the pattern's name ("local", "bigbird", ...); SECTION: the config section holding its
  settings ("local", or "sparse" with `pattern: NAME`).
- RUNS_USER_CODE: its rule is code the config names (custom): `mha validate` must not import it.
- Settings: its pydantic settings model (defaults are the documented defaults).
- rule(config): the single definition of the pattern, (b, h, i, j) -> may query i of batch item b
  and head h attend key j, on broadcasting integer tensors (FlexAttention's mask_mod signature).
  Every dense mask, blocked's pieces and flex's mask_mod derive from it.
- varies(config): (by batch item, by head): whether the rule reads b or h, so masks that do not
  keep a dimension of 1 there.
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

PatternRule = Callable[["torch.Tensor", "torch.Tensor", "torch.Tensor", "torch.Tensor"], "torch.Tensor"]


class PatternModule(Protocol):
    NAME: str
    SECTION: str
    RUNS_USER_CODE: bool
    Settings: type[Section]

    def rule(self, config: Config) -> PatternRule: ...

    def varies(self, config: Config) -> tuple[bool, bool]: ...

    def words(self, config: Config) -> str: ...

    def brief(self, settings: Any) -> str: ...

    def problems(self, config: Config) -> list[tuple[str, str]]: ...

    def plan(self, config: Config) -> BlockPlan: ...

    def keys_per_query(self, config: Config) -> int: ...

    def extra_blocked_elements(self, config: Config) -> int: ...
