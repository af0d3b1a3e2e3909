"""What every score modification is: a class bound to its own settings and the experiment's sizes.

A mask says which (query, key) pairs may attend; a score modification changes
the scores of those that do, before the softmax, in FlexAttention's score_mod
form: (score, b, h, q_idx, kv_idx) -> score, score being q.k / sqrt(d).
A mod that only adds a term of the positions, score + bias(b, h, q_idx, kv_idx)
(ALiBi, a relative position bias), is a *bias*: kernels that take an additive
float mask can apply it. Any other (soft-capping) needs the score itself.

q_idx is where the query sits among the keys: i, or i + S - L when the causal
diagonal is aligned lower right (decoding: the new tokens come after the cache),
the position every rule of the mask reads too.

Each module in score_mods/ defines one subclass of ScoreMod; the registry
(score_mods/__init__.py) maps names to them. Like patterns/, modules import
torch inside their methods only: `mha validate` reads the settings without it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from ..sizes import Sizes

if TYPE_CHECKING:
    import torch

# (score, b, h, q_idx, kv_idx) -> score on broadcasting tensors: FlexAttention's score_mod signature.
ScoreFunction = Callable[["torch.Tensor", "torch.Tensor", "torch.Tensor", "torch.Tensor", "torch.Tensor"], "torch.Tensor"]
# (b, h, q_idx, kv_idx) -> the term a bias mod adds to the score.
BiasFunction = Callable[["torch.Tensor", "torch.Tensor", "torch.Tensor", "torch.Tensor"], "torch.Tensor"]
Tables = dict[str, "torch.Tensor"]  # the numbers a mod reads (ALiBi's slopes, a relative bias's table), by name


class ScoreMod(NamedTuple):
    """One score modification with its settings, for one experiment's sizes and seed. Immutable.

    Each subclass sets, as plain class attributes: NAME (its `score_mod.kind`), Settings (its pydantic
    settings model) and FORMULA (what it does to a score, for explain and the docs)."""

    settings: Any  # an instance of Settings
    sizes: Sizes
    seed: int = 0

    NAME = ""
    Settings = None  # the settings model (a class attribute: annotated, it would be a field)
    FORMULA = ""
    FLOPS_PER_SCORE = 1  # floating-point operations per (query, key) score, as explain counts them
    # It reads the positions only through j - i (and b, h): the same term wherever a pair sits, so blocked makes
    # it once for all the windows of a band.
    RELATIVE = False
    # Its function is code the config names: only known by importing it, which `mha validate` never does.
    IMPORTS_USER_CODE = False

    @property
    def is_bias(self) -> bool:
        """Whether it only adds a term of the positions: score + bias(b, h, q_idx, kv_idx)."""
        return False

    @property
    def learned(self) -> bool:
        """Whether its tables are parameters of the layer: training passes check their gradient too."""
        return False

    def load(self) -> Any:
        """What the functions are made from (your own mod: imported and checked here); once per experiment."""
        return None

    def tables(self, dtype: torch.dtype) -> Tables:
        """Its numbers on the CPU in `dtype`, drawn from the seed where they are random (float64: the masters)."""
        return {}

    def function(self, loaded: Any, tables: Tables) -> ScoreFunction:
        """The single definition: score -> modified score, q_idx already the query's key position."""
        bias = self.bias_function(loaded, tables)
        assert bias is not None, f"{self.NAME} defines neither function() nor bias_function()"
        return lambda score, b, h, i, j: score + bias(b, h, i, j)

    def bias_function(self, loaded: Any, tables: Tables) -> BiasFunction | None:
        """The term a bias mod adds (None for a mod that is not a bias)."""
        return None

    def varies(self, loaded: Any) -> tuple[bool, bool]:
        """(by batch item, by head): whether it reads b or h, so its dense forms keep a dimension there."""
        return False, False

    def words(self) -> str:
        """What it does, exactly, with its settings: "score + m_h * (kv_idx - q_idx), ..."."""
        raise NotImplementedError

    @classmethod
    def brief(cls, settings: Any) -> str:
        """The mod and its settings in a few words: "softcap 30"."""
        raise NotImplementedError

    @classmethod
    def problems(cls, settings: Any, sizes: Sizes) -> list[tuple[str, str]]:
        """(field path, message) for settings that cannot work with these sizes."""
        return []
