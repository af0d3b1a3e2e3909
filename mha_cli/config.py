"""The experiment config: pydantic models, YAML + override loading, semantic checks.

`load_config(path, overrides)` is the one entry point. Every problem is
collected and raised together as a ConfigError, each naming the file (or the
override), the field path, the YAML line and what is allowed.
Nothing here imports torch.
"""

from __future__ import annotations

import math
import os
import re
import types
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    PlainValidator,
    Tag,
    ValidationError,
    BeforeValidator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from .config_fields import (
    Fraction,
    NonNegativeInt,
    PositiveInt,
    Repetitions,
    StrictBool,
    Seconds,
    Section,
    Seed,
    Threads,
)
from .dtypes import DType
from .arguments import ArgumentTypeError, a_type, check_overrides, check_path
from .errors import ConfigError, MhaError, Problem
from .mask_spec import MaskSpec
from .patterns import DEFAULT_SPARSE_PATTERN, SPARSE_SETTINGS, pattern_class
from .patterns.local import LocalSettings
from .registry import BUILTIN_IMPLS, USABLE_NAME
from .score_mods import SCORE_MOD_SETTINGS, ScoreModConfig, shorthand
from .sizes import Sizes
from .user_code import REFERENCE_PATTERN, reference_of
from .yaml_source import (
    PathKey,
    YamlDocument,
    format_path,
    load_yaml_file,
    load_yaml_text,
    parse_path,
    parse_value,
)

Variant = Literal["full", "local", "sparse"]
Device = Literal["cpu", "cuda", "mps", "auto"]
SdpaBackend = Literal["auto", "math", "flash", "efficient", "cudnn"]

DEFAULT_CONFIG_NAME = "quickstart.yaml"
DEFAULT_SOURCE = "built-in default (example:quickstart)"

# An implementation's name in `impls`: a built-in one, one of `implementations:`, or an installed entry point.
ImplName = Annotated[str, Field(pattern=rf"^{USABLE_NAME}$", max_length=60, description=(
    "an implementation name: letters, digits, '_' and '-', starting with a letter"))]
# Where your own implementation lives, in the same forms as sparse.mask_mod.
ImplReference = Annotated[str, Field(pattern=REFERENCE_PATTERN, max_length=500, description=(
    "a reference to an implementation: write module.path:attribute or path/to/file.py:attribute"))]


def _implementation_given(value: Any) -> Any:
    """A reference (checked for its form, never imported here), or from Python the function or factory itself."""
    if isinstance(value, str):
        if len(value) > 500 or not re.fullmatch(REFERENCE_PATTERN, value):
            raise PydanticCustomError("string_pattern_mismatch", "not a reference")
        return value
    if callable(value) or hasattr(value, "build"):
        return value
    raise PydanticCustomError("implementation_type", "{got} is neither a reference (module.path:attribute or "
                              "path/to/file.py:attribute) nor an attention function or factory", {"got": type(value).__name__})


# In YAML a reference; from Python also the function or factory object (written down as module:name).
ImplGiven = Annotated[Any, PlainValidator(_implementation_given), PlainSerializer(reference_of, return_type=str)]


class LengthsOrFractions(Section):
    """Sizes given one of two ways: exact `lengths`, or `fractions` of a total that any override keeps right."""

    lengths: list[PositiveInt] | None = Field(None, min_length=1)
    fractions: list[Fraction] | None = Field(None, min_length=1)

    def form_problems(self, field: str, lengths_are: str, fractions_are: str) -> list[tuple[str, str]]:
        """The one rule both forms share: exactly one of them is given."""
        if (self.lengths is None) == (self.fractions is None):
            return [(field, f"give either `lengths` ({lengths_are}) or `fractions` ({fractions_are}), not both or neither")]
        return []


class KeyPadding(LengthsOrFractions):
    """Which keys of each batch item are real; keys at positions >= its length are padding.

    `lengths` gives exact counts, one per batch item. `fractions` gives shares of
    the key length S, repeated over the batch (item n takes fractions[n % len]),
    so the same config works for any batch_size and any S.
    """

    def lengths_for(self, batch_size: int, source: int) -> list[int]:
        """Valid key count per batch item; a fraction rounds half up and keeps at least one key."""
        if self.lengths is not None:
            return list(self.lengths)
        assert self.fractions is not None  # the config rules require one of the two
        return [max(1, math.floor(self.fractions[n % len(self.fractions)] * source + 0.5)) for n in range(batch_size)]


class Documents(LengthsOrFractions):
    """Packed sequences: query i and key j must lie in the same document.

    `lengths` gives the documents' lengths in positions, summing to the sequence length;
    `fractions` gives shares of it (summing to 1), rounded so that the lengths sum exactly.
    """

    def lengths_for(self, total: int) -> list[int]:
        if self.lengths is not None:
            return list(self.lengths)
        assert self.fractions is not None  # the config rules require one of the two
        # Cumulative rounding: the documents tile the sequence exactly, none empty when possible.
        edges, running = [0], 0.0
        for share in self.fractions:
            running += share
            edges.append(min(total, max(edges[-1] + 1, math.floor(running * total + 0.5))))
        edges[-1] = total
        return [b - a for a, b in zip(edges, edges[1:], strict=False)]


class MaskSection(Section):
    causal: StrictBool = False
    # Where the causal diagonal sits when L != S: upper_left (query i sees keys j <= i: nn.MultiheadAttention's
    # and SDPA's is_causal) or lower_right (query i sits at position S - L + i: FlashAttention since 2.1,
    # decoding against a cache). The same when L == S.
    # null: upper_left, or lower_right when decoding.
    causal_alignment: Literal["upper_left", "lower_right"] | None = None
    # With causal: keys j < prefix are visible to every query as well (a prefix LM: the prefix is
    # read bidirectionally, the rest causally).
    prefix: NonNegativeInt | None = None
    key_padding: KeyPadding | None = None
    # Packed sequences (self attention): query and key must be in the same document; with causal,
    # causal within each document.
    documents: Documents | None = None


Pass = Literal["forward", "backward", "forward_backward"]


class DecodeSection(Section):
    """Decoding against a KV cache: the seq_len new tokens attend to cache_len keys and values already
    projected (filled once, outside the timed call) and to their own; S = cache_len + seq_len."""

    cache_len: PositiveInt


class TimingSection(Section):
    # `pass` is a Python keyword: the field is pass_ in Python and `pass` in YAML, JSON and overrides.
    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)
    min_run_time: Seconds = 0.2  # seconds of measurement per implementation, shared by its repetitions
    # Independent repetitions, each in a fresh process (1: in this one); what mha compare's rank test reads.
    repetitions: Repetitions = 15
    # The most seconds one implementation's repetitions may take at one point: slow calls get fewer.
    max_row_time: Seconds = 60.0
    threads: Threads | None = None
    # layer: projections + attention; core: attention on already-projected q, k, v
    scope: Literal["layer", "core"] = "layer"
    # what is timed: the forward pass, the backward alone (on a kept forward graph), or both per call
    pass_: Pass = Field("forward", alias="pass")


def _sparse_pattern(value: Any) -> str | None:
    # `sparse:` without `pattern:` is the default sparse pattern.
    if isinstance(value, dict):
        name = value.get("pattern", DEFAULT_SPARSE_PATTERN)
        return name if name in SPARSE_SETTINGS else None
    return getattr(value, "pattern", None)


# Each pattern has only its own fields: a field of another pattern is an unknown key there.
SparseConfig = Annotated[
    Union[tuple(Annotated[model, Tag(name)] for name, model in SPARSE_SETTINGS.items())],  # noqa: UP007
    Discriminator(_sparse_pattern, custom_error_type="sparse_pattern",
                  custom_error_message=f"pattern must be one of: {', '.join(SPARSE_SETTINGS)}"),
]


class Config(Section):
    """One experiment, valid whenever it exists (frozen; change it through overrides or model_copy(update=...)).

    Example:

        >>> from mha_cli import Config
        >>> config = Config(embed_dim=64, num_heads=4, seq_len=128, variant="local", local={"window": 16})
        >>> config.head_dim, config.local_settings.window, config.attention
        (16, 16, 'self')
    """

    name: str = Field("experiment", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=80)
    embed_dim: PositiveInt = 64
    num_heads: PositiveInt = 2
    # Grouped-query attention: K and V have this many heads, each shared by num_heads / num_kv_heads query
    # heads (1: multi-query). Left out: num_heads, plain multi-head attention.
    num_kv_heads: PositiveInt | None = None
    batch_size: PositiveInt = 5
    seq_len: PositiveInt = 10
    source_len: PositiveInt | None = None
    # Left out: cross when source_len, kdim or vdim is given (they only mean something there), else self.
    attention: Literal["self", "cross"] = "self"
    kdim: PositiveInt | None = None
    vdim: PositiveInt | None = None
    batch_first: StrictBool = False
    bias: StrictBool = True
    dtype: DType = "float32"
    device: Device = "cpu"
    seed: Seed = 0
    need_weights: StrictBool = True
    average_attn_weights: StrictBool = True
    mask: MaskSection = MaskSection()
    variant: Variant = "full"
    # Decoding: the layer projects only the seq_len new tokens and attends over the cache and them.
    decode: DecodeSection | None = None
    local: LocalSettings | None = None  # only with variant: local (defaults apply when left out)
    sparse: SparseConfig | None = None  # only with variant: sparse
    # A score modification beside the masks (alibi, softcap, relative_bias, or your own score_mod): changes the
    # scores of the pairs that may attend, before the softmax. `score_mod: alibi` is short for {kind: alibi}.
    score_mod: Annotated[ScoreModConfig | None, BeforeValidator(shorthand)] = None
    impls: list[ImplName] = Field(default_factory=lambda: ["torch", "manual", "sdpa"], min_length=1)
    # Your own implementations by name (imported by `mha run`, never by `mha validate`); list them in impls.
    implementations: dict[ImplName, ImplGiven] = Field(default_factory=dict)
    sdpa_backend: SdpaBackend = "auto"
    timing: TimingSection = TimingSection()
    # For `mha sweep`: dotted field path -> values; the grid is their Cartesian product.
    sweep: dict[str, list[Any]] | None = None

    @model_validator(mode="before")
    @classmethod
    def _attention_from_sizes(cls, data: Any) -> Any:
        # `mha run source_len=20` on the default config means cross attention: no other reading
        # of a key length that differs from the query's exists. Given explicitly, `self` stays self
        # and a source_len beside it is the error it is.
        if isinstance(data, dict) and data.get("attention") is None:
            sized = any(data.get(name) is not None for name in ("source_len", "kdim", "vdim"))
            return {**data, "attention": "cross" if sized else "self"}
        return data

    @model_validator(mode="after")
    def _cross_field_rules(self) -> Config:
        # Every rule runs here, so any Config that exists is valid, however it was made
        # (load_config, Config(...), model_copy): no half-checked config reaches torch.
        errors = [
            InitErrorDetails(
                type=PydanticCustomError(RULE_ERROR, "{message}", {"message": message, "reads": ",".join(fields)}),
                loc=parse_path(field_path),
                input=None,
            )
            for fields, rule in _RULES
            for field_path, message in rule(self)
        ]
        if errors:
            raise ValidationError.from_exception_data("Config", errors)
        return self

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Config:
        """A copy with `update` applied and validated again (pydantic's own copy skips validation);
        ConfigError listing every problem, as load_config raises."""
        if not update:
            return super().model_copy(deep=deep)
        origins: dict[PathKey, tuple[str, int | None]] = {(key,): (f"Config.model_copy(update={{{key!r}: ...}})", None)
                                                          for key in update}
        return validate_data({**self.model_dump(), **update}, origins, "Config.model_copy", note_unset=False)

    # Derived sizes, named as in nn.MultiheadAttention and the README.
    @property
    def source_length(self) -> int:
        """S: the key/value length (L for self attention; the cache and the new tokens when decoding)."""
        if self.decode is not None:
            return self.decode.cache_len + self.seq_len
        return self.source_len if self.source_len is not None else self.seq_len

    @property
    def key_dim(self) -> int:
        return self.kdim if self.kdim is not None else self.embed_dim

    @property
    def value_dim(self) -> int:
        return self.vdim if self.vdim is not None else self.embed_dim

    @property
    def document_lengths(self) -> list[int] | None:
        """The documents' lengths when sequences are packed, or None."""
        documents = self.mask.documents
        return None if documents is None else documents.lengths_for(self.seq_len)

    @property
    def key_lengths(self) -> list[int] | None:
        """Valid key count per batch item under key padding, or None without padding."""
        padding = self.mask.key_padding
        # Decoding: the lengths are each item's cache length (its new tokens are always there).
        keys = self.decode.cache_len if self.decode is not None else self.source_length
        return None if padding is None else padding.lengths_for(self.batch_size, keys)

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def causal_alignment(self) -> str:
        """Where the causal diagonal sits: as set, else lower right when decoding (the new tokens come after the
        cache) and upper left otherwise (nn.MultiheadAttention's and SDPA's is_causal)."""
        if self.mask.causal_alignment is not None:
            return self.mask.causal_alignment
        return "lower_right" if self.decode is not None else "upper_left"

    @property
    def kv_heads(self) -> int:
        """H_kv: the key/value heads (num_heads unless grouped)."""
        return self.num_kv_heads if self.num_kv_heads is not None else self.num_heads

    @property
    def sizes(self) -> Sizes:
        """N, H, L, S, E, kdim, vdim, H_kv with every default resolved."""
        return Sizes(self.batch_size, self.num_heads, self.seq_len, self.source_length, self.embed_dim,
                     self.key_dim, self.value_dim, self.kv_heads)

    @property
    def mask_spec(self) -> MaskSpec:
        """The masks beside the pattern, with key padding and documents resolved to lengths."""
        key_lengths, documents = self.key_lengths, self.document_lengths
        lower_right = self.causal_alignment == "lower_right"
        return MaskSpec(
            causal=self.mask.causal, prefix=self.mask.prefix or 0,
            key_lengths=tuple(key_lengths) if key_lengths is not None else None,
            document_lengths=tuple(documents) if documents is not None else None,
            causal_alignment=self.causal_alignment,
            new_keys_from=self.decode.cache_len if self.decode is not None else None,
            query_offset=self.source_length - self.seq_len if lower_right else 0,
        )

    @property
    def local_settings(self) -> LocalSettings:
        return self.local if self.local is not None else LocalSettings()

    @property
    def sparse_settings(self) -> Any:
        """The `sparse:` settings, or the default sparse pattern's defaults (a model from patterns/)."""
        return self.sparse if self.sparse is not None else SPARSE_SETTINGS[DEFAULT_SPARSE_PATTERN]()

    @property
    def pattern_settings(self) -> Any:
        """The settings of the variant's pattern (None for full attention)."""
        return {"full": None, "local": self.local_settings}.get(self.variant, self.sparse_settings)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# --------------------------------------------------------------------------- semantic rules
RULE_ERROR = "config_rule"  # the pydantic error type of a broken cross-field rule
# Each rule names the top-level fields it reads; it is skipped when one of them
# already failed validation, so it never reports a consequence of another error.

Rule = Callable[[Config], list[tuple[str, str]]]
_RULES: list[tuple[tuple[str, ...], Rule]] = []


def _rule(*fields: str) -> Callable[[Rule], Rule]:
    def register(function: Rule) -> Rule:
        _RULES.append((fields, function))
        return function

    return register


@_rule("embed_dim", "num_heads")
def _heads_divide_width(c: Config) -> list[tuple[str, str]]:
    if c.embed_dim % c.num_heads:
        divisors = [h for h in range(1, min(c.embed_dim, 64) + 1) if c.embed_dim % h == 0]
        return [
            (
                "num_heads",
                f"embed_dim {c.embed_dim} is not divisible by num_heads {c.num_heads}; "
                f"num_heads must divide embed_dim (e.g. {', '.join(map(str, divisors[-6:]))})",
            )
        ]
    return []


@_rule("num_heads", "num_kv_heads")
def _kv_heads_divide_heads(c: Config) -> list[tuple[str, str]]:
    if c.num_kv_heads is None or c.num_heads % c.num_kv_heads == 0:
        return []
    divisors = [h for h in range(1, c.num_heads + 1) if c.num_heads % h == 0]
    return [("num_kv_heads", f"num_kv_heads {c.num_kv_heads} does not divide num_heads {c.num_heads}: each key/value "
             f"head serves a whole group of query heads (choose from {', '.join(map(str, divisors))})")]


@_rule("decode", "attention", "mask", "need_weights", "timing")
def _decode_is_self_attention_inference(c: Config) -> list[tuple[str, str]]:
    if c.decode is None:
        return []
    problems = []
    if c.attention != "self":
        problems.append(("decode", "decoding is self attention over the cache and the new tokens: remove "
                                   "attention: cross (and source_len, kdim, vdim); S is decode.cache_len + seq_len"))
    if c.mask.documents is not None:
        problems.append(("mask.documents", "packed documents are not defined against a KV cache; remove them"))
    if c.mask.causal_alignment == "upper_left" and c.mask.causal:
        problems.append(("mask.causal_alignment", "decoding aligns causal lower right (the new tokens come after "
                                                  "the cache); remove causal_alignment or set lower_right"))
    if c.need_weights:
        problems.append(("need_weights", "a decode step returns no attention weights: set need_weights: false"))
    if c.timing.pass_ != "forward":
        problems.append(("timing.pass", "decoding is inference: timing.pass must be forward"))
    unshiftable = _not_shiftable(c)
    if unshiftable:
        problems.append((f"{c.variant}", f"{unshiftable}: it has no meaning against a cache; decode with another pattern"))
    return problems


def _not_shiftable(c: Config) -> str:
    """Why the config's pattern cannot be placed after a cache (patterns/base.Pattern.NOT_SHIFTABLE), or ""."""
    if c.variant == "full":
        return ""
    pattern = pattern_class(c.variant, getattr(c.pattern_settings, "pattern", None))
    return pattern.NOT_SHIFTABLE if pattern is not None else ""


@_rule("attention", "source_len", "kdim", "vdim")
def _cross_only_fields(c: Config) -> list[tuple[str, str]]:
    if c.attention == "cross":
        return []
    return [
        (name, f"{name} is only used with `attention: cross` (self attention takes key and value from the query)")
        for name in ("source_len", "kdim", "vdim")
        if getattr(c, name) is not None
    ]


@_rule("mask", "batch_size", "seq_len", "source_len", "attention", "decode")
def _key_padding_lengths(c: Config) -> list[tuple[str, str]]:
    padding = c.mask.key_padding
    if padding is None:
        return []
    form = padding.form_problems("mask.key_padding", "exact key counts, one per batch item",
                                 "shares of the key length, e.g. [1.0, 0.5], repeated over the batch")
    if form or padding.lengths is None:
        return form
    problems = []
    if len(padding.lengths) != c.batch_size:
        problems.append(
            (
                "mask.key_padding.lengths",
                f"needs one length per batch item: batch_size is {c.batch_size}, got {len(padding.lengths)} lengths "
                "(or give `fractions` of the key length, which repeat over any batch size)",
            )
        )
    s = c.source_length if c.decode is None else c.decode.cache_len
    what = "the key length S" if c.decode is None else "the cache, decode.cache_len"
    for index, length in enumerate(padding.lengths):
        if length > s:
            problems.append(
                (f"mask.key_padding.lengths[{index}]", f"{length} is longer than {what}={s}; allowed 1..{s}")
            )
    return problems


@_rule("mask", "variant", "sparse", "seq_len", "source_len", "attention")
def _alignment_needs_causal(c: Config) -> list[tuple[str, str]]:
    if c.mask.causal_alignment is not None and not c.mask.causal:
        return [("mask.causal_alignment", "the alignment places the causal mask's diagonal: it only means something "
                 "with mask.causal: true; set mask.causal=true or remove it")]
    shifted = c.mask.causal_alignment == "lower_right" and c.source_length != c.seq_len
    unshiftable = _not_shiftable(c) if shifted and c.decode is None else ""
    if unshiftable:
        return [("mask.causal_alignment", f"{unshiftable} (use upper_left, or another pattern)")]
    return []


@_rule("mask", "seq_len", "source_len", "attention")
def _prefix_needs_causal(c: Config) -> list[tuple[str, str]]:
    prefix = c.mask.prefix
    if prefix is None:
        return []
    if not c.mask.causal:
        return [("mask.prefix", "a prefix only means something with mask.causal: true (without it every key is "
                 "visible already); set mask.causal=true or remove the prefix")]
    if prefix > c.source_length:
        return [("mask.prefix", f"{prefix} is longer than the key length S={c.source_length}; allowed 0..{c.source_length}")]
    return []


@_rule("mask", "seq_len", "attention")
def _documents_tile_the_sequence(c: Config) -> list[tuple[str, str]]:
    documents = c.mask.documents
    if documents is None:
        return []
    form = documents.form_problems("mask.documents", "positions per document, summing to seq_len", "shares summing to 1")
    if form:
        return form
    if c.attention != "self":
        return [("mask.documents", "packed documents need self attention (queries and keys share positions)")]
    if documents.lengths is not None and sum(documents.lengths) != c.seq_len:
        return [("mask.documents.lengths", f"sum to {sum(documents.lengths)}, but seq_len is {c.seq_len}; "
                 "the documents must tile the sequence exactly")]
    if documents.fractions is not None:
        if abs(sum(documents.fractions) - 1.0) > 1e-6:
            return [("mask.documents.fractions", f"sum to {sum(documents.fractions):g}; shares of the sequence must sum to 1")]
        if len(documents.fractions) > c.seq_len:
            return [("mask.documents.fractions", f"{len(documents.fractions)} documents cannot fit in seq_len {c.seq_len}")]
    return []


@_rule("variant", "local", "sparse")
def _sections_match_variant(c: Config) -> list[tuple[str, str]]:
    problems = []
    for section in ("local", "sparse"):
        if getattr(c, section) is not None and c.variant != section:
            problems.append(
                (section, f"the `{section}:` section only applies to `variant: {section}` (this config has variant: {c.variant})")
            )
    return problems


@_rule("variant", "local", "sparse", "seq_len", "source_len", "attention")
def _pattern_fits_the_sizes(c: Config) -> list[tuple[str, str]]:
    settings = c.pattern_settings
    pattern = pattern_class(c.variant, getattr(settings, "pattern", None))
    return pattern.problems(settings, c.sizes) if pattern is not None else []


@_rule("sweep")
def _sweep_lists(c: Config) -> list[tuple[str, str]]:
    problems = []
    for path, values in (c.sweep or {}).items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", path):
            problems.append(("sweep", f"{path!r} is not a dotted field path such as local.window"))
        elif path.split(".")[0] == "sweep":
            problems.append(("sweep", "a sweep cannot sweep its own `sweep:` section"))
        if not values:
            problems.append((f"sweep.{path}", "needs at least one value"))
    return problems


@_rule("impls")
def _impls_unique(c: Config) -> list[tuple[str, str]]:
    repeated = sorted({name for name in c.impls if c.impls.count(name) > 1})
    return [("impls", f"lists {', '.join(repeated)} more than once; list each implementation once")] if repeated else []


@_rule("implementations")
def _implementations_keep_builtin_names(c: Config) -> list[tuple[str, str]]:
    return [(f"implementations.{name}", f"{name!r} is a built-in implementation; give yours another name (it may not "
             "shadow one of " + ", ".join(BUILTIN_IMPLS) + ")") for name in c.implementations if name in BUILTIN_IMPLS]


@_rule("impls", "implementations")
def _impls_known(c: Config) -> list[tuple[str, str]]:
    unknown = [(index, name) for index, name in enumerate(c.impls) if name not in BUILTIN_IMPLS and name not in c.implementations]
    if not unknown:
        return []
    import difflib

    from .registry import installed  # reads every distribution's entry points: only when a name is not built in

    offered = installed()
    known = [*BUILTIN_IMPLS, *c.implementations, *offered]
    problems = []
    for index, name in ((i, n) for i, n in unknown if n not in offered):
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        problems.append((f"impls[{index}]", f"{name!r} is not an implementation here: choose from {', '.join(known)}, or name "
                         f"your own under `implementations:` (e.g. implementations: {{{name}: my_module:my_attention}}){hint}"))
    return problems


# --------------------------------------------------------------------------- loading


def _default_document() -> YamlDocument:
    from .shipped_examples import EXAMPLES_DIR

    text = (EXAMPLES_DIR / DEFAULT_CONFIG_NAME).read_text(encoding="utf-8")
    return load_yaml_text(text, DEFAULT_SOURCE)


def _file_document(path: Path) -> YamlDocument:
    """A config file; a missing one named like a shipped example says how to name or copy the example."""
    from .shipped_examples import examples

    if not path.exists() and path.stem in {example.name for example in examples()}:
        raise ConfigError([Problem(str(path), "", f"no such file; the shipped example of that name is "
                                   f"example:{path.stem} (`mha examples copy {path.stem}` puts a copy in configs/)")])
    return load_yaml_file(path)


def _example_document(reference: str) -> YamlDocument:
    """A shipped example named as example:NAME, its own code files found beside it."""
    from .shipped_examples import PREFIX, find, with_own_code_found

    try:
        example = find(reference)
    except MhaError as error:
        raise ConfigError([Problem(reference, "", error.message)]) from None
    text = example.path.read_text(encoding="utf-8")
    document = load_yaml_text(text, f"{PREFIX}{example.name}")
    with_own_code_found(document.data)
    return document


# Fields that say the same thing two ways: an override of one replaces the other,
# so `mask.key_padding.lengths=[4,2]` works on a config that gave fractions.
ALTERNATIVES: dict[PathKey, PathKey] = {
    ("mask", section, given): ("mask", section, other)
    for section in ("key_padding", "documents")  # the LengthsOrFractions sections of MaskSection
    for given, other in (("lengths", "fractions"), ("fractions", "lengths"))
}


def _apply_override(
    data: dict[str, Any], origins: dict[PathKey, tuple[str, int | None]], arg: str
) -> Problem | None:
    source = f"override `{arg}`"
    if "=" not in arg:
        return Problem(source, "", "an override is KEY=VALUE and this has no `=` (e.g. num_heads=4 or mask.causal=true)")
    key, _, raw_value = arg.partition("=")
    parts = key.strip().split(".")
    if not all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", p) for p in parts):  # '-': implementation names may hold one
        return Problem(source, key, "the key must be a dotted field path such as mask.causal")
    try:
        value = parse_value(raw_value, source)
    except ConfigError as error:
        return error.problems[0]
    node: Any = data
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if depth == 0 and part in _SHORTHANDS and isinstance(child, str):  # `score_mod: softcap`, then score_mod.cap=5
            child = node[part] = _SHORTHANDS[part](child)
        if not isinstance(child, dict):
            return Problem(source, ".".join(parts[: depth + 1]), "is not a section, so it has no sub-keys")
        node = child
    node[parts[-1]] = value
    path = tuple(parts)
    other = ALTERNATIVES.get(path)
    if other is not None:
        node.pop(other[-1], None)
    for stale in [p for p in origins if p[: len(path)] == path]:
        del origins[stale]
    origins[path] = (source, None)
    return None


def _origin(loc: PathKey, origins: dict[PathKey, tuple[str, int | None]], default_source: str) -> tuple[str, int | None]:
    if loc in origins:
        return origins[loc]
    # Set below the failing path (`mask.documents.lengths=[4,4]` for a problem with mask.documents, or an unknown
    # section `foo.bar=1`): where it was set, an override before a file line.
    below = [origin for path, origin in origins.items() if len(path) > len(loc) and path[: len(loc)] == loc]
    if below:
        return min(below, key=lambda origin: (not origin[0].startswith("override"), origin[1] or 0))
    for end in range(len(loc) - 1, 0, -1):
        if loc[:end] in origins:
            return origins[loc[:end]]
    # A field nobody set, missing because of a sibling someone did set (`sparse.pattern=custom` needs
    # sparse.mask_mod): the sibling's source is where to look, an override before a file line.
    siblings = [origin for path, origin in origins.items() if len(loc) > 1 and path[: len(loc) - 1] == loc[:-1]]
    if siblings:
        return min(siblings, key=lambda origin: (not origin[0].startswith("override"), origin[1] or 0))
    return default_source, None


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through Optional, unions and Annotated)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _models_in(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [model for member in get_args(annotation) for model in _models_in(member)]
    return [annotation] if isinstance(annotation, type) and issubclass(annotation, BaseModel) else []


def _models_at(parent: PathKey) -> list[type[BaseModel]]:
    """The models whose fields may live at `parent`: one, or each member of a union (`sparse`).

    A tag in the path (pydantic's loc for the union: ("sparse", "strided", ...)) picks its member.
    """
    models: list[type[BaseModel]] = [Config]
    for index, part in enumerate(parent):
        members = _UNION_SECTIONS.get(parent[index - 1], {}) if index else {}
        if part in members and members[part] in models:
            models = [members[part]]
            continue
        fields = [model.model_fields[part] for model in models if isinstance(part, str) and part in model.model_fields]
        models = [model for field in fields for model in _models_in(field.annotation)]
        if not models:
            return []
    return models


# Sections that are one of several models, chosen by a tag: the settings of each pattern and of each score mod.
_UNION_SECTIONS: dict[str, dict[str, Any]] = {"sparse": SPARSE_SETTINGS, "score_mod": SCORE_MOD_SETTINGS}
_TAG_KEYS = {"sparse": "pattern", "score_mod": "kind"}
# Sections that may be written as one string, and the section it stands for (`score_mod: alibi`).
_SHORTHANDS: dict[str, Callable[[Any], Any]] = {"score_mod": shorthand}


def without_tags(loc: PathKey) -> PathKey:
    """pydantic's loc for a union member carries its tag (sparse.strided.stride); a user writes sparse.stride."""
    return tuple(part for index, part in enumerate(loc)
                 if not (index and part in _UNION_SECTIONS.get(loc[index - 1], {})))


def tag_choices(path: str) -> list[str] | None:
    """The names a union section's tag may take ("sparse.pattern": the patterns, "score_mod.kind": the mods), or
    None when `path` is no such tag: each member's own field allows only its own name."""
    section, _, key = path.partition(".")
    if section in _UNION_SECTIONS and key == _TAG_KEYS[section]:
        return list(_UNION_SECTIONS[section])
    return None


def field_at(path: str) -> Any:
    """The pydantic FieldInfo at a dotted path such as "local.window" or "sparse.stride", or None."""
    *parents, name = path.split(".")
    for model in _models_at(tuple(parents)):
        for field_name, info in model.model_fields.items():
            if name in (field_name, info.alias):
                return info
    return None


def field_paths() -> list[str]:
    """Every dotted field path one level deep into the sections ("mask.causal", "sparse.stride", ...)."""
    paths = []
    for name, info in Config.model_fields.items():
        paths.append(name)
        for member in _models_in(info.annotation):
            subs = [info.alias or sub for sub, info in member.model_fields.items()]
            paths += [f"{name}.{sub}" for sub in subs if f"{name}.{sub}" not in paths]
    return paths


def _form_described(loc: PathKey) -> str | None:
    """What form the string at `loc` must have, as its field describes it (None: the field does not say)."""
    if loc[:1] == ("impls",) or (loc[:1] == ("implementations",) and loc[-1] in ("[key]", "key")):
        return _description(ImplName)
    if loc[:1] == ("implementations",):
        return _description(ImplReference)
    info = field_at(".".join(str(part) for part in loc))
    return info.description if info is not None else None


def _description(annotated: Any) -> str:
    return next(meta.description for meta in get_args(annotated)[1:] if getattr(meta, "description", None))


def describe_error(error: dict[str, Any]) -> str:
    """One pydantic error as mha words it: lower case, with what was given (sweep values share it)."""
    import difflib  # only on the error path

    loc = tuple(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        members = _UNION_SECTIONS.get(loc[0], {}) if len(loc) == 3 else {}
        if loc[1:2] and loc[1] in members:
            tag = _TAG_KEYS[loc[0]]
            owner = next((name for name, model in members.items() if key in model.model_fields), None)
            if owner is not None:
                return f"{key} belongs to {tag}: {owner}, not {tag}: {loc[1]}; remove it or change the {tag}"
        models = _models_at(loc[:-1])
        valid = [info.alias or name for name, info in models[0].model_fields.items()] if len(models) == 1 else []
        close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'?" if close else f"valid keys here: {', '.join(valid)}"
        return f"unknown key '{key}'; {hint}"
    if kind == "literal_error":
        allowed = re.findall(r"'([^']*)'", error.get("ctx", {}).get("expected", ""))
        close = difflib.get_close_matches(str(error["input"]), allowed, n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"{error['input']!r} is not allowed; choose one of: {', '.join(allowed)}{hint}"
    if kind == "missing":
        return "is required"
    if kind == "list_type" and isinstance(error["input"], str) and "," in error["input"]:
        return f"must be a list: write [{error['input']}] (got the string {error['input']!r})"
    if kind == "bool_type":  # strict: YAML's 1, 0 and quoted strings are not booleans
        return f"must be true or false (got {error['input']!r})"
    if kind == "string_pattern_mismatch":
        described = _form_described(without_tags(loc))
        if described:  # the field says what its form is
            return f"{error['input']!r} is not {described}"
        return f"{error['input']!r} may only hold letters, digits, '.', '_' and '-' (it names the output folder)"
    message = error["msg"][0].lower() + error["msg"][1:]
    section = {"sparse_pattern": "sparse", "score_mod_kind": "score_mod"}.get(kind)
    if section is not None and isinstance(error["input"], dict):  # a union section's tag: name it, suggest one
        given = error["input"].get(_TAG_KEYS[section])
        if given is None:
            return f"{message} (no {_TAG_KEYS[section]} given)"
        close = difflib.get_close_matches(str(given), list(_UNION_SECTIONS[section]), n=1, cutoff=0.6)
        return f"{message} (got {given!r})" + (f"; did you mean '{close[0]}'?" if close else "")
    if kind == "model_type" or kind == "dict_type":
        return f"{message} (a section of keys, e.g. `causal: true`), got {type(error['input']).__name__}"
    return f"{message} (got {error['input']!r})"


def validate_data(
    data: Any, origins: dict[PathKey, tuple[str, int | None]], source: str, *, note_unset: bool = True
) -> Config:
    """Validate already-merged raw data into a Config, or raise ConfigError listing every problem.

    note_unset: say when a problem lies in a field nobody set (its pydantic default);
    off where the data is an already resolved config (a sweep's base), where every field was set.
    """
    if not isinstance(data, dict):
        got = "a list" if isinstance(data, list) else type(data).__name__
        raise ConfigError(
            [Problem(source, "", f"the top level must be a mapping of config keys (e.g. `embed_dim: 64`), got {got}")]
        )
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        errors = error.errors()
    field_errors = [e for e in errors if e["type"] != RULE_ERROR]
    rule_errors = [e for e in errors if e["type"] == RULE_ERROR]
    failed_fields = {str(e["loc"][0]) for e in field_errors if e["loc"]}
    if field_errors:
        # Validate again without the broken fields so the cross-field rules still report on
        # everything that is fine; a rule reading a broken field would only repeat its error.
        try:
            Config.model_validate({k: v for k, v in data.items() if k not in failed_fields})
        except ValidationError as again:
            rule_errors = [e for e in again.errors() if e["type"] == RULE_ERROR]
    problems: list[Problem] = []
    for item in field_errors:
        loc = without_tags(tuple(item["loc"]))
        origin_source, line = _origin(loc, origins, source)
        # A bad key of a mapping: the mapping is where it is wrong (the message names the key).
        shown = loc[:-2] if loc[-1:] == ("[key]",) else loc
        problems.append(Problem(origin_source, format_path(shown), describe_error(item), line))
    for item in rule_errors:
        if failed_fields.intersection(item["ctx"]["reads"].split(",")):
            continue
        path = tuple(item["loc"])
        origin_source, line = _origin(path, origins, source)
        message = item["ctx"]["message"]
        if note_unset and not any(known[: len(path)] == path or path[: len(known)] == known for known in origins):
            message += " (this field was not set: that is its default value)"
        problems.append(Problem(origin_source, format_path(path), message, line))
    raise ConfigError(problems)


def _origins_from(document: YamlDocument) -> dict[PathKey, tuple[str, int | None]]:
    return {path: (document.source, line) for path, line in document.lines.items()}


def load_config(path: Path | str | None = None, overrides: Sequence[str] = ()) -> Config:
    """Read a config file (or the built-in default, example:quickstart), apply dotted overrides, validate.

    path: a YAML file (str or path-like), or a str "example:NAME" naming a shipped example (`mha examples`
    lists them; a Path is always a file). overrides: a list of "KEY=VALUE" strings.
    Raises ConfigError listing every problem, each with its file (or override), line and field.

    Example:

        >>> from mha_cli import load_config
        >>> config = load_config("configs/local_window.yaml", ["local.window=32", "mask.causal=true"])
        >>> config.local.window, config.head_dim
        (32, 64)
    """
    from .shipped_examples import is_example_reference

    overrides = check_overrides(overrides)
    if is_example_reference(path):
        document = _example_document(str(path))
    else:
        file = check_path("path", path)
        document = _default_document() if file is None else _file_document(file)
    data = document.data
    origins = _origins_from(document)
    problems: list[Problem] = []
    if isinstance(data, dict):
        for arg in overrides:
            problem = _apply_override(data, origins, arg)
            if problem is not None:
                problems.append(problem)
    try:
        config = validate_data(data, origins, document.source)
    except ConfigError as error:
        problems += error.problems
    if problems:
        # File problems first, in line order; then the overrides as given.
        problems.sort(key=lambda p: (p.source != document.source, p.line or 0))
        raise ConfigError(problems)
    return config


def check_config(config: Any) -> None:
    """A public function's `config` argument: a Config, or a TypeError saying how to get one."""
    if isinstance(config, Config):
        return
    hint = ""
    if isinstance(config, (str, os.PathLike)):
        hint = f"; load the file first: mha_cli.load_config({os.fspath(config)!r})"
    elif isinstance(config, Mapping):
        hint = "; turn settings into one with mha_cli.load_config(None, ['num_heads=4', ...])"
    raise ArgumentTypeError(f"config: expected a Config (from mha_cli.load_config), got {a_type(config)}{hint}")


def config_to_yaml(config: Config) -> str:
    import yaml

    return yaml.safe_dump(config.to_dict(), sort_keys=False)
