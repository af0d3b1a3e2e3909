"""The building blocks of config models: frozen sections that refuse unknown keys, and checked numbers.

Shared by config.py and by each pattern's settings model in patterns/. No torch.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, Strict

# Strict integers: YAML `true` or `4.0` is not a count of heads. Bounds keep every
# number inside what torch and JSON can hold (the memory guard judges the sizes).
PositiveInt = Annotated[int, Strict(), Field(gt=0, le=2**40)]
NonNegativeInt = Annotated[int, Strict(), Field(ge=0, le=2**40)]
Seed = Annotated[int, Strict(), Field(ge=0, le=2**63 - 1)]
Threads = Annotated[int, Strict(), Field(gt=0, le=4096)]
Seconds = Annotated[float, Strict(), Field(gt=0, le=3600, allow_inf_nan=False)]
Fraction = Annotated[float, Strict(), Field(gt=0, le=1, allow_inf_nan=False)]
Repetitions = Annotated[int, Strict(), Field(ge=1, le=100)]
# Strict booleans too: YAML `1` or "yes" (a string) is not `true`; only true and false are.
StrictBool = Annotated[bool, Strict()]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
