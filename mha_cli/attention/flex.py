"""`flex`: torch.nn.attention.flex_attention, compiled, with a BlockMask of the pattern.

The mask_mod is the experiment's combined rule (masks.pair_rule), the same
definition every other implementation is checked against. Compilation happens
in `build` and is timed there (reported as compile_s, never mixed into the
median); every new shape compiles again. FlexAttention without torch.compile is
an unfused O(L * S) fallback, so it is not offered. On the CPU it runs inference only.
"""

from __future__ import annotations

import time
import warnings

import torch

from ..errors import Unsupported, first_line
from ..experiment import Experiment
from ..inputs import resolve_device
from ..workload import Workload
from . import Forward
from .layer import layer_around


# Every build compiles (seconds, even from torch's cache): its repetitions are timed in the process that built it.
COMPILES = True


def unsupported(experiment: Experiment) -> str | None:
    try:
        import torch.nn.attention.flex_attention  # noqa: F401
    except ImportError as error:
        return f"FlexAttention is not in torch {torch.__version__}: {error}"
    if resolve_device(experiment.device).type == "cpu":
        if experiment.timing.trains:
            return "FlexAttention does not support backward on CPU (PyTorch raises NotImplementedError)"
        if torch.backends.cpu.get_cpu_capability() == "DEFAULT":
            return "FlexAttention on the CPU needs AVX2 or better; this CPU reports none"
    return None


def build(work: Workload) -> Forward:
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    sizes, mask = work.experiment.sizes, work.mask
    batched, per_head = mask.groups[0] > 1, mask.groups[1] > 1
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # compile chatter; failures raise below
            # device is passed explicitly: with None, a CUDA build picks "cuda" even without a GPU.
            block_mask = create_block_mask(
                mask.mask_mod, sizes.batch_size if batched else None, sizes.num_heads if per_head else None,
                sizes.seq_len, sizes.source_len, device=work.device, _compile=True,
            )
            compiled = torch.compile(flex_attention, dynamic=False)

            grouped = sizes.grouped  # FlexAttention maps query head h to K/V head h // G itself
            # The score mod goes in as flex's own score_mod: the same function the reference applies.
            score_mod = work.score_mod.score_mod if work.score_mod is not None else None

            def core(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
                return compiled(q, k, v, score_mod=score_mod, block_mask=block_mask, enable_gqa=grouped)

            forward = layer_around(core, work)
            with torch.no_grad():  # no backward for FlexAttention on the CPU
                forward()
    except Exception as error:  # noqa: BLE001 - any compiler failure means "cannot run here"
        raise Unsupported(f"FlexAttention could not compile here: {first_line(error)}") from None
    forward.compile_s = time.perf_counter() - start  # type: ignore[attr-defined]
    return forward
