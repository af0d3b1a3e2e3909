"""One experiment, resolved once from a Config: everything below the runner reads this, never a Config.

`resolve(config)` fills in every default and derived value (the sizes, the
masks as lengths, the pattern bound to its own settings) into one immutable,
torch-free object. Config stays the boundary type (loading, validation, dumping,
the Python API's input); nothing derived from an experiment (rules, masks,
plans) lives here: prepared.Prepared computes that once per run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from .mask_spec import MaskForm, MaskSpec
from .patterns import Pattern, pattern_class
from .score_mods import SCORE_MODS, ScoreMod
from .sizes import Sizes

if TYPE_CHECKING:
    from .config import Config


class TimingSettings(NamedTuple):
    min_run_time: float  # seconds of measurement per implementation, over every repetition
    threads: int | None  # torch threads while measuring (None: torch's default)
    scope: str  # "layer" (projections + attention) or "core" (attention on projected q, k, v)
    pass_: str  # "forward", "backward" (alone, on a kept graph) or "forward_backward"
    repetitions: int = 5  # each in a fresh process (1: in this one)
    max_row_time: float = 60.0  # seconds one implementation's repetitions may take at one point

    @property
    def trains(self) -> bool:
        """A backward is timed, so gradients are checked."""
        return self.pass_ != "forward"


class Experiment(NamedTuple):
    """Immutable; `experiment._replace(field=value)` makes a changed copy."""

    name: str
    sizes: Sizes
    attention: str  # "self" (key and value are the query) or "cross"
    batch_first: bool
    bias: bool
    dtype: str
    device: str  # as asked for: cpu, cuda, mps or auto (inputs.resolve_device picks)
    seed: int
    need_weights: bool  # what nn.MultiheadAttention is asked to return
    average_attn_weights: bool
    variant: str  # full, local or sparse
    pattern: Pattern | None  # the variant's pattern with its settings; None for full attention
    mask: MaskSpec
    impls: tuple[str, ...]
    implementations: dict[str, Any]  # your own: name -> module:attr or file.py:attr (from Python: the object itself)
    sdpa_backend: str
    timing: TimingSettings
    config: dict[str, Any]  # the Config as JSON: what results record
    # Decoding: keys and values already in the KV cache (S = cache_len + L); None when not decoding.
    cache_len: int | None = None
    # A score modification beside the masks (score_mods/), bound to its settings; None when scores are left as they are.
    score_mod: ScoreMod | None = None

    @property
    def decoding(self) -> bool:
        return self.cache_len is not None

    @property
    def mask_form(self) -> MaskForm:
        """How the mask reaches a kernel: no mask, is_causal, nn.MultiheadAttention's own masks, or dense."""
        return MaskForm.of(self.mask, self.pattern is not None)

    @property
    def needs_plan(self) -> bool:
        """blocked plans blocks: for a pattern, or for full attention over packed documents (which SDPA
        cannot skip blocks of); other full attention defers to SDPA's fused kernel."""
        return self.pattern is not None or self.mask.document_lengths is not None

    def rule_in_words(self) -> str:
        """The exact rule, causal, documents and padding included (`mha mask`, docs/variants.md)."""
        words = self.pattern.words() if self.pattern is not None else "every query attends every key"
        return " ".join([words, *self.mask.words()])

    def masks_in_words(self, batch: int | None = None) -> str:
        """Every mask that removes pairs, briefly: the pattern, causal, documents, key padding (of one item)."""
        from .patterns import brief

        pattern = [brief(self.variant, self.config.get(self.variant))] if self.pattern is not None else []
        return ", ".join(pattern + self.mask.names(self.sizes.source_len, batch)) or "none"


def resolve(config: Config) -> Experiment:
    """The experiment a config describes, with every default resolved."""
    sizes = config.sizes
    settings = config.pattern_settings
    pattern_type = pattern_class(config.variant, getattr(settings, "pattern", None))
    timing = config.timing
    return Experiment(
        name=config.name,
        sizes=sizes,
        attention=config.attention,
        batch_first=config.batch_first,
        bias=config.bias,
        dtype=config.dtype,
        device=config.device,
        seed=config.seed,
        need_weights=config.need_weights,
        average_attn_weights=config.average_attn_weights,
        variant=config.variant,
        pattern=pattern_type(settings, sizes, config.seed) if pattern_type is not None else None,
        mask=config.mask_spec,
        impls=tuple(config.impls),
        implementations=dict(config.implementations),
        sdpa_backend=config.sdpa_backend,
        timing=TimingSettings(timing.min_run_time, timing.threads, timing.scope, timing.pass_, timing.repetitions,
                              timing.max_row_time),
        config=config.to_dict(),
        cache_len=config.decode.cache_len if config.decode is not None else None,
        score_mod=(SCORE_MODS[config.score_mod.kind](config.score_mod, sizes, config.seed)
                   if config.score_mod is not None else None),
    )
