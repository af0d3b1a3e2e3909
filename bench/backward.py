"""blocked's backward pass (groundwork for issue 11), measured on the attention core alone.

CPU, float32, all threads, N=2, H=8, d=64, upstream gradient seeded. For each pattern at L=8192:
forward (inference), forward + backward of `blocked` (torch.utils.benchmark), and one
forward + backward of `F.scaled_dot_product_attention` with the dense bool mask (one call: it
takes seconds). Issue 11's targets on this core: local w=128 forward+backward >= 8x faster than
dense-masked sdpa and backward / forward <= 3; BigBird and strided >= 5x. Then local w=128 at
L=65536, N=1: forward + backward peak memory (torch's allocator, via mha's peak_memory_bytes)
under 4 GiB, where the dense L x S mask alone would be 4 GiB per batch item.

These are not yet `mha run` rows: `timing.pass` is still to come (issue 11).

    python bench/backward.py [--min-run-time 2]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
import torch.nn.functional as F
from torch.utils import benchmark

from mha_cli.attention.blocked import _sparse_core
from mha_cli.block_plan import plan_for
from mha_cli.config import load_config
from mha_cli.masks import allowed_mask
from mha_cli.measure import peak_memory_bytes
from mha_cli.memory import format_bytes

BASE = ["embed_dim=512", "num_heads=8", "mask.key_padding=null"]
PATTERNS = {
    "local window 128": (["variant=local", "local.window=128"], 8),
    "bigbird defaults": (["variant=sparse", "sparse.pattern=bigbird"], 5),
    "strided, stride 128": (["variant=sparse", "sparse.pattern=strided", "sparse.stride=128"], 5),
}


def tensors(n: int, length: int) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    q, k, v, g = (torch.randn(n, 8, length, 64, generator=generator) for _ in range(4))
    return q.requires_grad_(), k.requires_grad_(), v.requires_grad_(), g


def timed(fn, min_run_time: float) -> float:  # type: ignore[no-untyped-def]
    return benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads()).blocked_autorange(
        min_run_time=min_run_time).median


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--min-run-time", type=float, default=2.0)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, core, N=2 H=8 d=64")
    verdicts: list[tuple[str, bool]] = []
    for name, (overrides, target) in PATTERNS.items():
        config = load_config(None, BASE + overrides + ["batch_size=2", "seq_len=8192"])
        core = _sparse_core(plan_for(config), config, torch.float32, torch.device("cpu"))
        q, k, v, g = tensors(2, 8192)

        def forward() -> None:
            with torch.no_grad():
                core(q, k, v)

        def training() -> None:
            torch.autograd.grad(core(q, k, v), (q, k, v), g)

        mask = allowed_mask(config)

        def dense() -> None:
            torch.autograd.grad(F.scaled_dot_product_attention(q, k, v, attn_mask=mask), (q, k, v), g)

        fwd, both = timed(forward, args.min_run_time), timed(training, args.min_run_time)
        start = time.perf_counter()
        dense()
        dense_s = time.perf_counter() - start
        print(f"  {name}: forward {fwd * 1e3:.1f} ms, forward+backward {both * 1e3:.1f} ms "
              f"(backward {(both - fwd) * 1e3:.1f} ms); dense-masked sdpa forward+backward {dense_s:.2f} s", flush=True)
        verdicts.append((f"{name}: forward+backward {dense_s / both:.1f}x faster than dense-masked sdpa (target >= {target}x)",
                         dense_s / both >= target))
        if name.startswith("local"):
            ratio = (both - fwd) / fwd
            verdicts.append((f"{name}: backward / forward = {ratio:.1f} (target <= 3)", ratio <= 3))

    config = load_config(None, BASE + PATTERNS["local window 128"][0] + ["batch_size=1", "seq_len=65536"])
    core = _sparse_core(plan_for(config), config, torch.float32, torch.device("cpu"))
    q, k, v, g = tensors(1, 65536)
    peak = peak_memory_bytes(lambda: torch.autograd.grad(core(q, k, v), (q, k, v), g), torch.device("cpu"))
    verdicts.append((f"local window 128, L=65536, N=1: forward+backward peak {format_bytes(peak)} (target < 4 GiB)",
                     peak < 4 * 2**30))

    print("\nverdicts:")
    for text, ok in verdicts:
        print(f"  [{'PASS' if ok else 'MISS'}] {text}")
    return 0 if all(ok for _, ok in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
