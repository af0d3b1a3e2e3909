"""Memory guard: estimate peak bytes before anything is allocated.

Estimates are deliberately simple and conservative (they count every live
L x S tensor an implementation makes) so that a run that cannot fit is refused
in milliseconds instead of swapping the machine to a halt. No torch import:
`seq_len: 1000000` must be refused before torch has even loaded.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from .dtypes import DTYPE_BYTES
from .errors import UsageError
from .experiment import Experiment
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9, "t": 10**12, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(text: str) -> int:
    """'2GiB' -> 2147483648, '500MB' -> 500000000, '1024' -> 1024."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS:
        raise UsageError(f"--max-memory: cannot read {text!r} as a size; write e.g. 2GiB, 500MB or 1073741824")
    return int(float(match.group(1)) * _UNITS[unit])


def parse_max_memory(text: str | None) -> int | None:
    """--max-memory SIZE in bytes, or None when the option was not given (the memory available now)."""
    return parse_bytes(text) if text is not None else None


def format_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(count) < 1024 or unit == "PiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def available_host_bytes() -> int:
    """Memory the OS can give us now (MemAvailable), falling back to free pages."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


# The float64 reference is checked on every query row while one (N, H, rows, S)
# tensor stays under this many elements (32 MiB); beyond, on evenly spread rows.
REFERENCE_ELEMENTS = 2**22


def reference_row_count(experiment: Experiment) -> int:
    """How many query rows the float64 reference checks (all of them for small runs)."""
    sizes = experiment.sizes
    per_row = sizes.batch_size * sizes.num_heads * sizes.source_len
    return max(1, min(sizes.seq_len, REFERENCE_ELEMENTS // per_row))


def blocked_keys_bound(experiment: Experiment) -> int | None:
    """An upper bound on the keys each query reads in the blocked implementation, known without torch:
    its pattern's, or for packed documents under the generic plan the longest document plus its largest
    block on each side. None for a rule the config names: only evaluating it tells (Prepared does)."""
    pattern = experiment.pattern
    if pattern is not None:
        return pattern.keys_per_query()
    documents = experiment.mask.document_lengths
    assert documents is not None, "full attention reads every key"
    # A document can straddle one more block on each side. Not imported from block_plan (torch):
    # `mha validate` estimates without torch; a test keeps the two equal.
    largest = GENERIC_LARGEST_BLOCK
    return min(experiment.sizes.source_len + largest, max(documents) + 2 * largest)


DECODE_MAX_QUERIES = 64  # = attention.blocked.DECODE_MAX_QUERIES (no torch here; a test keeps them equal)
CACHE_SLICE = 2**16  # = attention.reference.CACHE_SLICE
TRAINING_FACTOR = {"torch": 2.0, "manual": 2.0}  # training peak / forward peak; the fused kernels: 1.5
GENERIC_LARGEST_BLOCK = 512  # = max(block_plan.GENERIC_BLOCKS)
MIN_GENERIC_BLOCK = 64  # = min(block_plan.GENERIC_BLOCKS)
MOD_BIAS_BYTES = 256 * 2**20  # = attention.blocked.MOD_BIAS_BYTES


@dataclass(frozen=True)
class MemoryEstimate:
    shared: int  # inputs in the run dtype and their float64 master copies
    reference: int  # the float64 oracle plus its same-dtype twin
    per_impl: dict[str, int]
    largest_term: str  # what dominates, named for the error message

    def peak(self, impl: str) -> int:
        return self.shared + self.per_impl[impl]

    @property
    def reference_peak(self) -> int:
        return self.shared + self.reference


def estimate(experiment: Experiment, blocked_keys: int | None = None, declared: dict[str, int] | None = None) -> MemoryEstimate:
    """Peak bytes per implementation: every built-in one, and those of experiment.impls.

    blocked_keys: the keys each query reads in blocked when evaluating the rule told (Prepared); without
    it, blocked_keys_bound, or for a rule the config names (`mha validate` never imports it) the least a
    plan can read, so that validation never refuses what a run accepts. declared: bytes your own
    implementations say they need; the others are estimated as the dense textbook layer."""
    sizes, b = experiment.sizes, DTYPE_BYTES[experiment.dtype]
    n, h, e = sizes.batch_size, sizes.num_heads, sizes.embed_dim
    length, source = sizes.seq_len, sizes.source_len
    scores = sizes.scores  # one (N, H, L, S) tensor, in elements
    inputs = n * length * e if experiment.attention == "self" else n * (length * e + source * (sizes.kdim + sizes.vdim))
    projected = n * (length * e + 2 * source * sizes.kv_width)  # K and V have H_kv heads (grouped: fewer)
    output = n * length * e
    mask = n * length * source  # bool, one byte each
    weights = 2 * e * e + e * (sizes.kdim + sizes.vdim) + 4 * e

    shared = (b + 8) * (inputs + weights)
    if experiment.decoding:  # the cache, in the run dtype only, made once and shared
        shared += b * 2 * n * source * sizes.kv_width
    # Scores, masked scores and softmax are alive together in a textbook forward.
    dense_forward = projected + 3 * scores + output
    # The pattern as a dense mask: (N, 1, L, S) bool, and per head for nn.MultiheadAttention.
    pattern_mask = mask if experiment.mask_form.needs_dense else 0
    per_impl = {
        # nn.MultiheadAttention also merges its masks into an (N, H, L, S) float mask.
        "torch": b * (dense_forward + scores) + mask + h * pattern_mask,
        "manual": b * dense_forward + mask,
        # A fused kernel needs no L x S buffer, but `auto` may fall back to math. With grouped heads PyTorch's
        # enable_gqa repeats K and V for every query head (on the CPU): H heads of S keys each.
        "sdpa": b * (dense_forward + 2 * n * source * e * sizes.grouped) + mask,
    }
    if not experiment.needs_plan:
        per_impl["blocked"] = b * (projected + 2 * output) + pattern_mask
        per_impl["flex"] = b * (projected + 2 * output) + mask
    else:
        per_impl.update(_planned(experiment, blocked_keys, projected, output))
    mod = experiment.score_mod
    if mod is not None:
        # The modified scores are one more L x S tensor of the textbook forward (manual, the reference).
        per_impl["manual"] += b * scores
        if mod.is_bias:
            # A bias reaches the dense kernels as an additive float mask (N or 1, H, L, S), per item with key
            # padding; nn.MultiheadAttention's is (N * H, L, S). blocked's pieces hold it per head for the keys
            # each query reads, at most MOD_BIAS_BYTES together (beyond, each chunk makes its own).
            additive = (n if experiment.mask.key_lengths is not None else 1) * h * length * source
            per_impl["torch"] += b * scores
            per_impl["sdpa"] += b * additive
            if not experiment.needs_plan:
                per_impl["blocked"] += b * additive
            else:
                keys = blocked_keys or blocked_keys_bound(experiment) or min(source, MIN_GENERIC_BLOCK)
                per_impl["blocked"] += min(MOD_BIAS_BYTES, b * (n if experiment.mask.key_lengths else 1) * h * length * keys)
    if experiment.decoding and length <= DECODE_MAX_QUERIES:
        # blocked's decode path: views of the cache, and a bias, scores and weights over the keys it reads
        keys = min(source, blocked_keys or blocked_keys_bound(experiment) or source) if experiment.pattern else source
        per_impl["blocked"] = b * (n * h * length * e // max(h, 1) * 2 + 3 * n * h * length * keys) + mask
    for name in experiment.impls:
        if name not in per_impl:  # your own: what it declares, else the dense layer it most likely is
            per_impl[name] = (declared or {}).get(name, per_impl["manual"])
    if experiment.timing.trains:
        # Training keeps the forward's tensors for the backward and makes gradients beside them.
        # Autograd through a plain softmax (torch, manual) holds the L x S probabilities and one
        # gradient of that size per head; the fused kernels recompute instead and mostly add the
        # gradients of q, k, v (and of the mask's pieces for blocked).
        per_impl = {name: int(need * TRAINING_FACTOR.get(name, 1.5)) for name, need in per_impl.items()}
    rows = reference_row_count(experiment)
    row_scores = n * h * rows * source
    # The reference projects the keys and values (decoding: only the new tokens', the cache is given), holds
    # K and V of H_kv heads, and the scores of the rows it checks.
    projected_rows = length if experiment.decoding else source
    cached = 2 * n * source * sizes.kv_width  # K and V of H_kv heads
    row_tensors = 3 if mod is None else 4  # scores, (modified,) masked, weights
    reference_forward = n * (rows + 2 * projected_rows) * e + row_tensors * row_scores + n * rows * e
    reference = 8 * reference_forward + b * reference_forward + n * rows * source
    # Decoding: the reference reads the cache a slice of CACHE_SLICE keys at a time (attention/reference.py).
    reference += (8 + b) * (min(cached, 2 * n * sizes.kv_width * CACHE_SLICE) if experiment.decoding else cached)
    return MemoryEstimate(
        shared=shared,
        reference=reference,
        per_impl=per_impl,
        largest_term=(
            f"KV cache N*H_kv*S*d = {n}*{sizes.kv_heads}*{source}*{sizes.head_dim} and the float64 reference reading it"
            if experiment.decoding
            else f"attention scores N*H*L*S = {n}*{h}*{length}*{source}"
            if scores >= inputs
            else f"inputs N*(L*E + S*kdim + S*vdim) = {inputs:,} elements"
        ),
    )


def _planned(experiment: Experiment, blocked_keys: int | None, projected: int, output: int) -> dict[str, int]:
    """blocked's and flex's bytes when blocked plans blocks (a pattern, or packed documents)."""
    sizes, b, pattern = experiment.sizes, DTYPE_BYTES[experiment.dtype], experiment.pattern
    n, h, length, source = sizes.batch_size, sizes.num_heads, sizes.seq_len, sizes.source_len
    keys = blocked_keys if blocked_keys is not None else blocked_keys_bound(experiment)
    if keys is None:  # a rule the config names, not evaluated here: the least a plan can read
        keys = min(source, MIN_GENERIC_BLOCK)
    # Masks per batch item with key padding; a rule the config names is not known until evaluated, so it is
    # taken to differ per batch item and head.
    unknown_rule = pattern is not None and pattern.IMPORTS_USER_CODE
    mask_batch = (n if experiment.mask.key_lengths is not None or unknown_rule else 1) * (h if unknown_rule else 1)
    # Masks (bool + additive, and the int64 positions they are built from), the
    # projected tensors, padded and gathered keys, and one output per piece.
    blocked = mask_batch * length * keys * (1 + b) + 24 * length * keys + b * (6 * projected + 4 * output)
    if pattern is not None:
        blocked += b * pattern.extra_blocked_elements()  # e.g. BigBird's gathered random blocks
    else:  # the generic plan gathers its key blocks for every query block
        blocked += b * 2 * n * length * keys * sizes.head_dim
    # FlexAttention: its block mask plus compiled kernels' buffers of O(L * d).
    flex = b * (projected + 4 * output) + 4 * mask_batch * (length // 128 + 1) * (source // 128 + 1) * 4
    return {"blocked": blocked, "flex": flex}


def resolve_memory_limit(max_memory: int | None) -> tuple[int, str]:
    """The limit every command judges against, and how to name it in a message."""
    if max_memory is not None:
        return max_memory, "allowed by --max-memory"
    return available_host_bytes(), "available on this machine"


def required_bytes(experiment: Experiment, found: MemoryEstimate, together: tuple[str, ...] | None = None) -> int:
    """What a command needs at least: the reference, and the smallest of experiment.impls (run, sweep),
    or the given implementations alive together (explain runs manual beside nn.MultiheadAttention)."""
    if together is not None:
        return found.reference_peak + sum(found.per_impl[name] for name in together)
    return max(found.reference_peak, min(found.peak(name) for name in experiment.impls))


def check_fits(
    experiment: Experiment, limit_bytes: int, limit_source: str, together: tuple[str, ...] | None = None,
    blocked_keys: int | None = None, declared: dict[str, int] | None = None,
) -> MemoryEstimate:
    """Refuse (exit 2) what cannot fit: for a run, when the reference or every implementation would not;
    the rest is decided per implementation. One estimate for every command, `mha validate` included
    (which gives no blocked_keys: a rule the config names is not imported there); see estimate()."""
    found = estimate(experiment, blocked_keys, declared)
    need = required_bytes(experiment, found, together)
    if need > limit_bytes:
        what = "even for its smallest implementation" if together is None else f"for {' and '.join(together)}"
        raise UsageError(
            f"this would need about {format_bytes(need)} {what} "
            f"(dominated by the {found.largest_term}), "
            f"but only {format_bytes(limit_bytes)} is {limit_source}. "
            "Lower seq_len (and source_len, or decode.cache_len), batch_size or num_heads, use a local or sparse variant "
            "with the blocked implementation, or set a different limit with --max-memory."
        )
    return found
