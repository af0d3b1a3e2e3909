"""Your own attention implementation in the harness: the contract `mha` holds it to.

Name it in a config (or offer it from an installed package, below) and `mha`
runs it beside the built-in ones on the same inputs and weights, checks it
against the float64 reference (gradients too, for training passes), times it,
measures its memory, counts its FLOPs, sweeps it and gates it in `mha compare`.

    impls: [sdpa, blocked, mine]
    implementations:
      mine: my_kernels.attention:banded_attention   # module:attribute, or path/to/file.py:attribute

The named object is one of two things:

- a core function `attention(q, k, v, spec) -> out`: q (N, H, L, d), k and v
  (N, H_kv, S, d) in the run's dtype and device, out (N, H, L, d); `spec` is an
  AttentionSpec (the mask in every form, the scale, the experiment). This call
  is what is timed. H_kv = H unless `num_kv_heads` groups the heads
  (grouped-query attention): query head h then reads key/value head
  spec.kv_head_of(h) = h // (H / H_kv).
- a factory, for one-off work (compiling, planning) outside the timed call:
  an object with `build(spec) -> core`, where core(q, k, v) -> out is what is
  timed. `@mha_cli.factory` turns a function `build(spec)` into one; a class
  with a `build` method works too (it is instantiated with no arguments).
  A factory may also say, cheaply and before anything is built, why it cannot
  run an experiment (`unsupported(experiment) -> str | None`) and how many
  bytes it needs at most (`memory_bytes(experiment) -> int`, for the memory
  guard; otherwise it is estimated as the dense textbook layer).

With a `score_mod:` in the config, spec.score_mod says how to change the
scores (AttentionSpec below); an implementation that cannot apply it raises
Unsupported saying so, or its output fails the check against float64.

Raise `mha_cli.Unsupported("why")` (or NotImplementedError) from either to skip
the row with that reason. At layer scope `mha` runs the same projections and
weights around your core. Installed packages offer implementations through the
entry-point group `mha.implementations` (name = module:attribute); then
`impls: [sdpa, their_name]` needs nothing else in the config.

This imports and runs the code it names (as sparse.mask_mod does): only run
configs you trust. `mha validate` never imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .errors import Unsupported
from .experiment import Experiment
from .sizes import Sizes

if TYPE_CHECKING:
    import torch

    from .score_mods.applied import AppliedMod

__all__ = ["AttentionMask", "AttentionSpec", "Core", "CoreFunction", "Factory", "Unsupported", "factory"]

# (b, h, q_idx, kv_idx) -> bool tensor, True = may attend: FlexAttention's mask_mod signature.
MaskMod = Callable[["torch.Tensor", "torch.Tensor", "torch.Tensor", "torch.Tensor"], "torch.Tensor"]


@dataclass(frozen=True)
class AttentionMask:
    """The experiment's mask in every form an implementation may want. One meaning everywhere:
    True = the query MAY attend the key (nn.MultiheadAttention's bool masks mean the opposite)."""

    mask_mod: MaskMod  # the rule on broadcasting index tensors on the run device: the single definition
    masked: bool  # False: every pair is allowed, no mask is needed at all
    is_causal: bool  # exactly causal, aligned upper left (j <= i), and nothing else: SDPA's is_causal
    causal: bool  # the causal mask is part of it (perhaps with a prefix, documents or padding beside it)
    prefix: int  # with causal: keys j < prefix are visible to every query too
    key_lengths: tuple[int, ...] | None  # valid keys per batch item (key padding), or None
    document_lengths: tuple[int, ...] | None  # packed documents, or None
    pattern: str | None  # "local", "bigbird", "strided", "custom"; None for full attention
    pattern_settings: dict[str, Any]  # the pattern's settings, as in the config
    groups: tuple[int, int]  # (batch, heads) of dense(): N or 1, H or 1 (1 where the mask is the same)
    _dense: Callable[[], torch.Tensor] = field(repr=False, compare=False)
    _made: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    # With causal: query i sees keys j <= i + query_offset; 0 upper-left aligned, S - L lower-right aligned
    # (mask.causal_alignment: lower_right, query i at position S - L + i).
    query_offset: int = 0
    # Decoding: keys from this index on are the new tokens', never padding (key_lengths are the cache's); else None.
    new_keys_from: int | None = None

    def dense(self) -> torch.Tensor:
        """(N, 1 or H, L, S) bool on the run device, True = may attend. Built on first call, then kept:
        it is L x S per batch item, so kernels that can do without it should."""
        if "dense" not in self._made:
            self._made["dense"] = self._dense()
        return self._made["dense"]


@dataclass(frozen=True)
class AttentionSpec:
    """Everything a core gets besides q, k and v."""

    mask: AttentionMask
    scale: float  # multiply q k^T by this: 1 / sqrt(d)
    experiment: Experiment  # the whole experiment: sizes, dtype, device, timing (scope, pass), seed, ...
    # The config's score_mod, or None: apply it to the scores (q k^T * scale) of the allowed pairs before the
    # softmax. score_mod.score_mod is FlexAttention's form (score, b, h, q_idx, kv_idx) -> score, to pass to
    # flex_attention as is; for a bias (score_mod.is_bias), score_mod.bias(b, h, q_idx, kv_idx) is the added
    # term, with q_idx a key position (row + score_mod.query_offset). Ignoring it fails the check.
    score_mod: AppliedMod | None = None

    @property
    def sizes(self) -> Sizes:
        """N (batch_size), H (num_heads), L (seq_len), S (source_len), E, d (head_dim), H_kv (kv_heads)."""
        return self.experiment.sizes

    @property
    def kv_heads(self) -> int:
        """H_kv: the heads of k and v (H unless grouped)."""
        return self.experiment.sizes.kv_heads

    def kv_head_of(self, head: int) -> int:
        """The key/value head query head `head` reads: head // (H / H_kv)."""
        return head // self.experiment.sizes.group_size


Core = Callable[["torch.Tensor", "torch.Tensor", "torch.Tensor"], "torch.Tensor"]  # what a factory builds
CoreFunction = Callable[["torch.Tensor", "torch.Tensor", "torch.Tensor", AttentionSpec], "torch.Tensor"]


class Factory(Protocol):
    """An implementation with one-off work: build(spec) returns the core that is timed."""

    def build(self, spec: AttentionSpec) -> Core: ...


@dataclass(frozen=True)
class _FunctionFactory:
    function: Callable[[AttentionSpec], Core]

    def build(self, spec: AttentionSpec) -> Core:
        return self.function(spec)


def factory(build: Callable[[AttentionSpec], Core]) -> Factory:
    """Mark `build(spec) -> core` as a factory: it runs once per experiment, outside the timed call.

    Example:

        >>> import mha_cli
        >>> @mha_cli.factory
        ... def compiled(spec):
        ...     return lambda q, k, v: q  # one-off work here; the lambda is what is timed
        >>> hasattr(compiled, "build")
        True
    """
    return _FunctionFactory(build)
