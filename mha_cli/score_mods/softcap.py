"""Soft-capping (Gemma 2, Grok-1): cap * tanh(score / cap), every score squeezed into (-cap, cap).

Not a bias: the result depends on the score itself, so only kernels that run a
function on the scores (manual, flex, the reference) can apply it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, Strict

from ..config_fields import Section
from .base import ScoreFunction, ScoreMod, Tables


class SoftcapSettings(Section):
    kind: Literal["softcap"] = "softcap"
    # The largest |score| after capping; Gemma 2 caps its attention logits at 50.
    cap: Annotated[float, Strict(), Field(gt=0, le=1e6, allow_inf_nan=False)] = 50.0


class Softcap(ScoreMod):
    NAME = "softcap"
    Settings = SoftcapSettings
    FLOPS_PER_SCORE = 3  # a divide, the tanh and a multiply
    FORMULA = "S' = c tanh(S / c)"

    def function(self, loaded: Any, tables: Tables) -> ScoreFunction:
        import torch

        cap = float(self.settings.cap)
        return lambda score, b, h, i, j: cap * torch.tanh(score / cap)

    def words(self) -> str:
        return f"{self.settings.cap:g} * tanh(score / {self.settings.cap:g}) (soft-capping)"

    @classmethod
    def brief(cls, settings: Any) -> str:
        return f"softcap {settings.cap:g}"
