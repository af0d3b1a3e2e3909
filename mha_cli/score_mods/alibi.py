"""ALiBi (Press et al., "Train Short, Test Long"): score + m_h * (kv_idx - q_idx), one slope per head.

The slopes are the paper's: for H a power of two, the geometric sequence
m_h = 2^(-8 (h + 1) / H); for any other H, those of the power of two below it,
then every other slope of twice that power until there are H (the paper's
reference code does the same). Keys before the query are penalised linearly with
their distance; without causal masking keys after it get the same term with the
opposite sign, as attention-gym's alibi score_mod does.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

from ..config_fields import Section
from .base import BiasFunction, ScoreMod, Tables

if TYPE_CHECKING:
    import torch


class AlibiSettings(Section):
    kind: Literal["alibi"] = "alibi"


def alibi_slopes(heads: int) -> list[float]:
    """The paper's slope of each of `heads` heads, largest first."""
    def geometric(count: int) -> list[float]:
        return [2.0 ** (-8.0 * (h + 1) / count) for h in range(count)]

    below = 2 ** int(math.floor(math.log2(heads)))
    if below == heads:
        return geometric(heads)
    return geometric(below) + alibi_slopes(2 * below)[0::2][: heads - below]


class Alibi(ScoreMod):
    NAME = "alibi"
    Settings = AlibiSettings
    RELATIVE = True
    FLOPS_PER_SCORE = 2  # a multiply and an add
    FORMULA = "S' = S + m_h (j - i)"

    @property
    def is_bias(self) -> bool:
        return True

    def tables(self, dtype: torch.dtype) -> Tables:
        import torch

        return {"slopes": torch.tensor(alibi_slopes(self.sizes.num_heads), dtype=torch.float64).to(dtype)}

    def bias_function(self, loaded: Any, tables: Tables) -> BiasFunction:
        slopes = tables["slopes"]
        return lambda b, h, i, j: slopes[h] * (j - i)

    def varies(self, loaded: Any) -> tuple[bool, bool]:
        return False, True

    def words(self) -> str:
        slopes = alibi_slopes(self.sizes.num_heads)
        shown = ", ".join(f"{s:.4g}" for s in slopes[:4]) + (", ..." if len(slopes) > 4 else "")
        return f"score + m_h * (j - i), ALiBi's slope m_h per head ({shown})"

    @classmethod
    def brief(cls, settings: Any) -> str:
        return "alibi"
