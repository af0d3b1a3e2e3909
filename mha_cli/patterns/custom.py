"""Your own rule: a FlexAttention mask_mod named in the config, such as attention-gym's masks.

    sparse:
      pattern: custom
      mask_mod: attn_gym.masks:generate_dilated_sliding_window   # module:attribute or path/to/file.py:attribute
      mask_mod_args: {window_size: 128, dilation: 2}             # given: mask_mod(**args) is the rule

The rule has FlexAttention's signature, (b, h, q_idx, kv_idx) -> bool tensor on
broadcasting integer tensors, so it may differ per batch item or head. This
imports and runs the code the config names (user_code.py): only run configs you
trust. `mha validate` checks the reference's form without importing it; `mha
run` imports it, calls it once on a few positions, and makes every problem (no
module, no attribute, wrong signature, wrong result) a config error on
`sparse.mask_mod`. blocked runs it with the generic block-sparse plan.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from ..config_fields import Section
from ..user_code import REFERENCE_PATTERN, a_kind, config_problem, failure, import_function, takes_positional
from .base import Pattern

if TYPE_CHECKING:
    from ..block_plan import BlockPlan, PlanContext
    from .base import PatternRule

FIELD = "sparse.mask_mod"


class CustomSettings(Section):
    pattern: Literal["custom"] = "custom"
    # Where the rule lives: "module.path:attribute" or "path/to/file.py:attribute" (relative to the working folder).
    mask_mod: str = Field(pattern=REFERENCE_PATTERN, max_length=500, description=(
        "a reference to a mask_mod: write module.path:attribute or path/to/file.py:attribute"))
    # When given, mask_mod(**mask_mod_args) returns the rule (attention-gym's generate_* functions).
    mask_mod_args: dict[str, Any] | None = None


def load_mask_mod(reference: str, args: dict[str, Any] | None) -> PatternRule:
    """The rule a reference (and its arguments) names, checked to be callable with (b, h, q_idx, kv_idx)."""
    target = import_function(reference, args, FIELD, "mask_mod_args",
                             "a mask_mod function (b, h, q_idx, kv_idx) -> bool tensor")
    if not takes_positional(target, 4):
        hint = " (is it a generator that needs mask_mod_args?)" if args is None else ""
        raise config_problem(FIELD, f"the rule must take (b, h, q_idx, kv_idx), FlexAttention's mask_mod signature{hint}")
    return target


def probe(rule: PatternRule, batch_size: int, num_heads: int, length: int, source: int) -> tuple[bool, bool]:
    """Call the rule once on the first and last positions of every batch item and head: a ConfigError
    unless it returns a bool tensor of the broadcast shape; else (differs by batch item, by head),
    read from which of b's and h's dimensions its result kept."""
    import torch

    def ends(total: int) -> torch.Tensor:
        return torch.unique(torch.cat([torch.arange(min(total, 8)), torch.arange(max(0, total - 8), total)]))

    q, kv = ends(length), ends(source)
    expected = (batch_size, num_heads, len(q), len(kv))
    b = torch.arange(batch_size)[:, None, None, None]
    h = torch.arange(num_heads)[None, :, None, None]
    try:
        with torch.no_grad():
            result = rule(b, h, q[None, None, :, None], kv[None, None, None, :])
    except (Exception, SystemExit) as error:  # noqa: BLE001
        raise config_problem(FIELD, f"calling the rule on index tensors failed: {failure(error)}") from None
    if not isinstance(result, torch.Tensor):
        raise config_problem(FIELD, f"the rule returned {a_kind(result)}, not a bool tensor")
    if result.dtype != torch.bool:
        raise config_problem(FIELD, f"the rule returned a {result.dtype} tensor; a mask_mod returns bool (True = may attend)")
    try:
        shape = torch.broadcast_shapes(result.shape, expected)
    except RuntimeError:
        shape = None
    if shape != expected:
        raise config_problem(FIELD, f"the rule returned shape {tuple(result.shape)} for index tensors broadcasting to {expected}")
    padded = (1,) * (4 - result.dim()) + tuple(result.shape)
    return padded[0] > 1, padded[1] > 1


def _call(settings: CustomSettings) -> str:
    if settings.mask_mod_args is None:
        return settings.mask_mod
    args = ", ".join(f"{key}={value!r}" for key, value in settings.mask_mod_args.items())
    return f"{settings.mask_mod}({args})"


class Custom(Pattern):  # its fields and frozen behaviour are Pattern's
    NAME = "custom"
    SECTION = "sparse"
    Settings = CustomSettings
    IMPORTS_USER_CODE = True

    def rule(self) -> PatternRule:
        """Imports the named code: call once per experiment (prepared.Prepared keeps it)."""
        return load_mask_mod(self.settings.mask_mod, self.settings.mask_mod_args)

    def varies(self, rule: PatternRule) -> tuple[bool, bool]:
        sizes = self.sizes
        return probe(rule, sizes.batch_size, sizes.num_heads, sizes.seq_len, sizes.source_len)

    def words(self) -> str:
        return f"query i attends key j when the mask_mod {_call(self.settings)} allows (b, h, i, j)"

    @classmethod
    def brief(cls, settings: CustomSettings) -> str:
        return _call(settings)

    def plan(self, context: PlanContext) -> BlockPlan:
        from ..block_plan import generic_plan

        return generic_plan(context)

    def keys_per_query(self) -> None:
        return None  # exact only by evaluating the rule: PlanContext.generic_keys_per_query
