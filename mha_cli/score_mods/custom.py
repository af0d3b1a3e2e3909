"""Your own score modification: a FlexAttention score_mod named in the config, such as attention-gym's mods.

    score_mod:
      kind: custom
      function: attn_gym.mods:generate_tanh_softcap   # module:attribute or path/to/file.py:attribute
      args: {soft_cap: 30}                            # given: function(**args) is the score_mod
      bias: false                                     # true: it only adds a term of the positions

The function has FlexAttention's signature, (score, b, h, q_idx, kv_idx) ->
score, on broadcasting tensors. q_idx is the query's position among the keys
(i + S - L when aligned lower right), as for a mask_mod. Declared a bias
(`bias: true`: score + f(b, h, q_idx, kv_idx)), it also reaches sdpa, torch and
blocked as an additive term; `mha run` checks the declaration on a few scores.
Like sparse.mask_mod, this imports and runs the code the config names
(user_code.py): only run configs you trust. `mha validate` checks the
reference's form without importing it; every problem (no module, no attribute,
wrong signature, wrong result) is a config error on `score_mod.function`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from ..config_fields import Section, StrictBool
from ..user_code import REFERENCE_PATTERN, a_kind, config_problem, failure, import_function, takes_positional
from .base import BiasFunction, ScoreFunction, ScoreMod, Tables

if TYPE_CHECKING:
    import torch

FIELD = "score_mod.function"
ARGS_FIELD = "score_mod.args"


class CustomModSettings(Section):
    kind: Literal["custom"] = "custom"
    # Where the score_mod lives: "module.path:attribute" or "path/to/file.py:attribute" (from the working folder).
    function: str = Field(pattern=REFERENCE_PATTERN, max_length=500, description=(
        "a reference to a score_mod: write module.path:attribute or path/to/file.py:attribute"))
    # When given, function(**args) returns the score_mod (attention-gym's generate_* functions).
    args: dict[str, Any] | None = None
    # Declared a pure additive bias: score + f(b, h, q_idx, kv_idx), which additive float masks can carry too.
    bias: StrictBool = False


def load_score_mod(reference: str, args: dict[str, Any] | None) -> ScoreFunction:
    """The score_mod a reference (and its arguments) names, checked to take (score, b, h, q_idx, kv_idx)."""
    target = import_function(reference, args, FIELD, "score_mod.args",
                             "a score_mod function (score, b, h, q_idx, kv_idx) -> score", args_field=ARGS_FIELD)
    if not takes_positional(target, 5):
        hint = " (is it a generator that needs score_mod.args?)" if args is None else ""
        hint += " (a mask_mod takes four: name it as sparse.mask_mod)" if takes_positional(target, 4) else ""
        raise config_problem(FIELD, f"the score_mod must take (score, b, h, q_idx, kv_idx), FlexAttention's score_mod "
                             f"signature{hint}")
    return target


def probe(function: ScoreFunction, sizes: Any, declared_bias: bool) -> tuple[bool, bool]:
    """Call the score_mod on random scores at the first and last positions of every batch item and head: a
    ConfigError unless it returns a float tensor of the broadcast shape (and, declared a bias, adds the same
    term to any score); else (differs by batch item, by head), read from the dimensions its result kept."""
    import torch

    def ends(total: int) -> torch.Tensor:
        return torch.unique(torch.cat([torch.arange(min(total, 8)), torch.arange(max(0, total - 8), total)]))

    q, kv = ends(sizes.seq_len), ends(sizes.source_len)
    expected = (sizes.batch_size, sizes.num_heads, len(q), len(kv))
    b = torch.arange(sizes.batch_size)[:, None, None, None]
    h = torch.arange(sizes.num_heads)[None, :, None, None]
    i, j = q[None, None, :, None], kv[None, None, None, :]
    generator = torch.Generator().manual_seed(0)
    scores = [torch.randn(expected, generator=generator) for _ in range(2)]

    def call(score: torch.Tensor) -> torch.Tensor:
        try:
            with torch.no_grad():
                result = function(score, b, h, i, j)
        except (Exception, SystemExit) as error:  # noqa: BLE001
            raise config_problem(FIELD, f"calling the score_mod on scores and index tensors failed: {failure(error)}") from None
        if not isinstance(result, torch.Tensor):
            raise config_problem(FIELD, f"the score_mod returned {a_kind(result)}, not a tensor of scores")
        if not result.is_floating_point():
            raise config_problem(FIELD, f"the score_mod returned a {result.dtype} tensor; a score_mod returns the "
                                 "scores (float)")
        full = score.dim() > 0  # a score per pair: the result has its shape (a score of 0 leaves the term's own)
        try:
            fits = torch.broadcast_shapes(result.shape, expected) == expected and result.dim() <= 4
        except RuntimeError:
            fits = False
        if not fits or (full and tuple(result.shape) != expected):
            raise config_problem(FIELD, f"the score_mod returned shape {tuple(result.shape)} for scores of shape "
                                 f"{expected}: it must return one score per score it gets")
        if full and bool((result.isnan() | (result == float("inf"))).any()):
            raise config_problem(FIELD, "the score_mod returned NaN or +inf for finite scores (-inf is allowed: it "
                                 "masks a pair)")
        return result

    first, second = (call(score) for score in scores)
    if not declared_bias:
        return False, False  # only a bias has dense forms (additive masks) that keep a dimension per item or head
    if not torch.allclose(first - scores[0], second - scores[1], rtol=1e-4, atol=1e-4):
        raise config_problem(FIELD, "declared a bias (score_mod.bias: true), but what it adds depends on the score: "
                             "a bias returns score + f(b, h, q_idx, kv_idx); set bias: false")
    # On scores of 0 the result is the term alone.
    term = call(torch.zeros(expected))
    by_batch = bool((term != term[:1]).any()) if term.shape[0] > 1 else False
    by_head = bool((term != term[:, :1]).any()) if term.shape[1] > 1 else False
    return by_batch, by_head


def _call(settings: CustomModSettings) -> str:
    if settings.args is None:
        return settings.function
    args = ", ".join(f"{key}={value!r}" for key, value in settings.args.items())
    return f"{settings.function}({args})"


class CustomMod(ScoreMod):
    NAME = "custom"
    Settings = CustomModSettings
    FLOPS_PER_SCORE = 1  # unknown: counted as one
    FORMULA = "S' = f(S, b, h, i, j)"
    IMPORTS_USER_CODE = True

    @property
    def is_bias(self) -> bool:
        return bool(self.settings.bias)

    def load(self) -> ScoreFunction:
        """Imports the named code and probes it: call once per experiment (prepared.Prepared keeps it)."""
        function = load_score_mod(self.settings.function, self.settings.args)
        probe(function, self.sizes, self.is_bias)
        return function

    def function(self, loaded: Any, tables: Tables) -> ScoreFunction:
        return loaded

    def tables(self, dtype: torch.dtype) -> Tables:
        import torch

        return {"zero": torch.zeros((), dtype=dtype)}  # the score a bias is read off: its term in this dtype

    def bias_function(self, loaded: Any, tables: Tables) -> BiasFunction | None:
        if not self.is_bias:
            return None
        import torch

        dtype = tables["zero"].dtype

        def bias(b: torch.Tensor, h: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
            # Scores of 0 of the pairs' shape (not one 0-d zero): a mod that adds in place still works.
            zero = torch.zeros(torch.broadcast_shapes(b.shape, h.shape, i.shape, j.shape), dtype=dtype, device=i.device)
            return loaded(zero, b, h, i, j)

        return bias

    def varies(self, loaded: Any) -> tuple[bool, bool]:
        return probe(loaded, self.sizes, self.is_bias)

    def words(self) -> str:
        kind = "a bias: score + f(b, h, i, j)" if self.is_bias else "a function of the score"
        return f"the score_mod {_call(self.settings)} applied to every score ({kind})"

    @classmethod
    def brief(cls, settings: CustomModSettings) -> str:
        return _call(settings)
