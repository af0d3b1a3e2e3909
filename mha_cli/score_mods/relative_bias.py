"""A relative position bias (T5-style): score + table[h, clip(kv_idx - q_idx, -D, D)], one row per head.

The table (H, 2D + 1) is drawn from the experiment's seed, like the weights:
its numbers are part of the experiment. Distances beyond D share the last
entry, as T5's largest bucket does (T5 also buckets by log distance; this one
keeps one entry per distance). With `learned: true` (the default) the table is
a parameter of the layer: training passes check its gradient as well.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from ..config_fields import PositiveInt, Section, StrictBool
from .base import BiasFunction, ScoreMod, Tables

if TYPE_CHECKING:
    import torch

# The table's draw: a generator of its own, seed + TABLE_SEED_OFFSET (the inputs take the seed, the upstream
# gradient seed + 1), so that adding the mod changes no other number of the experiment.
TABLE_SEED_OFFSET = 2


class RelativeBiasSettings(Section):
    kind: Literal["relative_bias"] = "relative_bias"
    max_distance: PositiveInt = 128  # distances beyond this (either way) share the table's last entry
    learned: StrictBool = True  # a parameter of the layer: training passes check its gradient


class RelativeBias(ScoreMod):
    NAME = "relative_bias"
    Settings = RelativeBiasSettings
    RELATIVE = True
    FLOPS_PER_SCORE = 1  # an add (the table look-up is not counted)
    FORMULA = "S' = S + B[h, clip(j - i, -D, D)]"

    @property
    def is_bias(self) -> bool:
        return True

    @property
    def learned(self) -> bool:
        return bool(self.settings.learned)

    def tables(self, dtype: torch.dtype) -> Tables:
        import torch

        distance = self.settings.max_distance
        generator = torch.Generator().manual_seed(self.seed + TABLE_SEED_OFFSET)
        table = torch.randn(self.sizes.num_heads, 2 * distance + 1, dtype=torch.float64, generator=generator)
        return {"table": table.to(dtype)}

    def bias_function(self, loaded: Any, tables: Tables) -> BiasFunction:
        table, distance = tables["table"], self.settings.max_distance
        return lambda b, h, i, j: table[h, (j - i).clamp(-distance, distance) + distance]

    def varies(self, loaded: Any) -> tuple[bool, bool]:
        return False, True

    def words(self) -> str:
        d = self.settings.max_distance
        learned = "learned" if self.learned else "fixed"
        return (f"score + B[h, clip(j - i, -{d}, {d})], a relative position bias per head ({learned}, "
                f"{2 * d + 1} entries per head drawn from the seed)")

    @classmethod
    def brief(cls, settings: Any) -> str:
        return f"relative_bias (max distance {settings.max_distance})"
