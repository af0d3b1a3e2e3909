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

from .config import Config
from .errors import UsageError
from .patterns import pattern_of

DTYPE_BYTES = {"float64": 8, "float32": 4, "bfloat16": 2, "float16": 2}
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


def reference_row_count(config: Config) -> int:
    """How many query rows the float64 reference checks (all of them for small runs)."""
    per_row = config.batch_size * config.num_heads * config.source_length
    return max(1, min(config.seq_len, REFERENCE_ELEMENTS // per_row))


def blocked_keys_per_query(config: Config, run_user_code: bool = True) -> int:
    """Keys each query reads in the blocked implementation: its pattern's upper bound, or for packed
    documents under the generic plan the longest document plus its largest block on each side.

    A rule the config names (custom) is only known by evaluating it: without run_user_code
    (`mha validate`), the least a plan can read, so that validation never refuses what a run accepts."""
    pattern = pattern_of(config)
    if pattern is not None and pattern.RUNS_USER_CODE and not run_user_code:
        return min(config.source_length, MIN_GENERIC_BLOCK)
    if pattern is not None:
        return pattern.keys_per_query(config)
    documents = config.document_lengths
    assert documents is not None, "full attention reads every key"
    # A document can straddle one more block on each side. Not imported from block_plan (torch):
    # `mha validate` estimates without torch; a test keeps the two equal.
    largest = GENERIC_LARGEST_BLOCK
    return min(config.source_length + largest, max(documents) + 2 * largest)


TRAINING_FACTOR = {"torch": 2.0, "manual": 2.0}  # training peak / forward peak; the fused kernels: 1.5
GENERIC_LARGEST_BLOCK = 512  # = max(block_plan.GENERIC_BLOCKS)
MIN_GENERIC_BLOCK = 64  # = min(block_plan.GENERIC_BLOCKS)


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


def estimate(config: Config, run_user_code: bool = True) -> MemoryEstimate:
    """Peak bytes per implementation. run_user_code=False: do not import a rule the config names."""
    n, h, e = config.batch_size, config.num_heads, config.embed_dim
    length, source = config.seq_len, config.source_length
    b = DTYPE_BYTES[config.dtype]
    scores = n * h * length * source  # one (N, H, L, S) tensor, in elements
    inputs = n * length * e if config.attention == "self" else n * (length * e + source * (config.key_dim + config.value_dim))
    projected = n * (length + 2 * source) * e
    output = n * length * e
    mask = n * length * source  # bool, one byte each
    weights = 2 * e * e + e * (config.key_dim + config.value_dim) + 4 * e

    shared = (b + 8) * (inputs + weights)
    # Scores, masked scores and softmax are alive together in a textbook forward.
    dense_forward = projected + 3 * scores + output
    # The pattern as a dense mask: (N, 1, L, S) bool, and per head for nn.MultiheadAttention.
    dense_full_mask = config.mask.key_padding is not None or not config.mask.only_causal_and_padding
    pattern_mask = mask if (config.variant != "full" or dense_full_mask) else 0
    per_impl = {
        # nn.MultiheadAttention also merges its masks into an (N, H, L, S) float mask.
        "torch": b * (dense_forward + scores) + mask + (h * mask if config.variant != "full" or dense_full_mask else 0),
        "manual": b * dense_forward + mask,
        # A fused kernel needs no L x S buffer, but `auto` may fall back to math.
        "sdpa": b * dense_forward + mask,
    }
    if config.variant == "full" and config.document_lengths is None:
        per_impl["blocked"] = b * (projected + 2 * output) + pattern_mask
        per_impl["flex"] = b * (projected + 2 * output) + mask
    else:
        keys = blocked_keys_per_query(config, run_user_code)
        # Masks per batch item with key padding; a rule the config names may also differ per item and head.
        pattern = pattern_of(config)
        user_rule = pattern is not None and pattern.RUNS_USER_CODE
        mask_batch = (n if config.mask.key_padding is not None or user_rule else 1) * (h if user_rule else 1)
        # Masks (bool + additive, and the int64 positions they are built from), the
        # projected tensors, padded and gathered keys, and one output per piece.
        per_impl["blocked"] = mask_batch * length * keys * (1 + b) + 24 * length * keys + b * (6 * projected + 4 * output)
        if pattern is not None:
            per_impl["blocked"] += b * pattern.extra_blocked_elements(config)  # e.g. BigBird's gathered random blocks
        else:  # the generic plan gathers its key blocks for every query block
            per_impl["blocked"] += b * 2 * n * length * keys * config.head_dim
        # FlexAttention: its block mask plus compiled kernels' buffers of O(L * d).
        per_impl["flex"] = b * (projected + 4 * output) + 4 * mask_batch * (length // 128 + 1) * (source // 128 + 1) * 4
    if config.timing.pass_ != "forward":
        # Training keeps the forward's tensors for the backward and makes gradients beside them.
        # Autograd through a plain softmax (torch, manual) holds the L x S probabilities and one
        # gradient of that size per head; the fused kernels recompute instead and mostly add the
        # gradients of q, k, v (and of the mask's pieces for blocked).
        per_impl = {name: int(need * TRAINING_FACTOR.get(name, 1.5)) for name, need in per_impl.items()}
    rows = reference_row_count(config)
    row_scores = n * h * rows * source
    reference_forward = n * (rows + 2 * source) * e + 3 * row_scores + n * rows * e
    reference = 8 * reference_forward + b * reference_forward + n * rows * source
    return MemoryEstimate(
        shared=shared,
        reference=reference,
        per_impl=per_impl,
        largest_term=(
            f"attention scores N*H*L*S = {n}*{h}*{length}*{source}"
            if scores >= inputs
            else f"inputs N*(L*E + S*kdim + S*vdim) = {inputs:,} elements"
        ),
    )


def resolve_memory_limit(max_memory: int | None) -> tuple[int, str]:
    """The limit every command judges against, and how to name it in a message."""
    if max_memory is not None:
        return max_memory, "allowed by --max-memory"
    return available_host_bytes(), "available on this machine"


def required_bytes(config: Config, found: MemoryEstimate, together: tuple[str, ...] | None = None) -> int:
    """What a command needs at least: the reference, and the smallest of config.impls (run, sweep),
    or the given implementations alive together (explain runs manual beside nn.MultiheadAttention)."""
    if together is not None:
        return found.reference_peak + sum(found.per_impl[name] for name in together)
    return max(found.reference_peak, min(found.peak(name) for name in config.impls))


def check_fits(
    config: Config, limit_bytes: int, limit_source: str, together: tuple[str, ...] | None = None, run_user_code: bool = True
) -> MemoryEstimate:
    """Refuse (exit 2) what cannot fit: for a run, when the reference or every implementation would not;
    the rest is decided per implementation. One estimate for every command, `mha validate` included
    (which passes run_user_code=False: a custom rule is not imported there)."""
    found = estimate(config, run_user_code)
    need = required_bytes(config, found, together)
    if need > limit_bytes:
        what = "even for its smallest implementation" if together is None else f"for {' and '.join(together)}"
        raise UsageError(
            f"this would need about {format_bytes(need)} {what} "
            f"(dominated by the {found.largest_term}), "
            f"but only {format_bytes(limit_bytes)} is {limit_source}. "
            "Lower seq_len (and source_len), batch_size or num_heads, use a local or sparse variant "
            "with the blocked implementation, or set a different limit with --max-memory."
        )
    return found
