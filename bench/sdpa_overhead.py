"""Does `mha run` report the time the sdpa call really takes?

Target: the median `mha` reports for `sdpa` is within 10% of a direct
torch.utils.benchmark measurement of the same layer (in-projections,
F.scaled_dot_product_attention, output projection) at L=2048, N=2, E=512, H=8.
Both are measured in this one process, as direct, mha, direct in every round
(so a drift of the machine's speed hits both sides alike); each round's ratio
is mha / mean(direct before, direct after), and the median ratio is judged.

    python bench/sdpa_overhead.py [--rounds 7] [--min-run-time 1.0]
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch
import torch.nn.functional as F
from torch.utils import benchmark

from mha_cli.config import load_config
from mha_cli.runner import run_experiment

L, N, E, H = 2048, 2, 512, 8
TOLERANCE = 0.10


def direct_layer() -> callable:
    """The same computation written straight against torch, with no mha code involved."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(L, N, E, generator=generator)  # (L, N, E), sequence first like the config
    w_in = torch.randn(3 * E, E, generator=generator) / E**0.5
    b_in = torch.zeros(3 * E)
    w_out = torch.randn(E, E, generator=generator) / E**0.5
    b_out = torch.zeros(E)
    w_q, w_k, w_v = w_in.split(E)
    b_q, b_k, b_v = b_in.split(E)
    d = E // H

    def layer() -> torch.Tensor:
        xb = x.transpose(0, 1)  # (N, L, E)
        q = F.linear(xb, w_q, b_q).view(N, L, H, d).transpose(1, 2)
        k = F.linear(xb, w_k, b_k).view(N, L, H, d).transpose(1, 2)
        v = F.linear(xb, w_v, b_v).view(N, L, H, d).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v)
        return F.linear(y.transpose(1, 2).reshape(N, L, E), w_out, b_out).transpose(0, 1)

    return layer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--min-run-time", type=float, default=1.0)
    args = parser.parse_args()
    threads = torch.get_num_threads()
    config = load_config(
        None,
        [
            "name=bench-sdpa", f"embed_dim={E}", f"num_heads={H}", f"batch_size={N}", f"seq_len={L}",
            "mask.key_padding=null", "need_weights=false", "impls=[sdpa]",
            f"timing.min_run_time={args.min_run_time}", f"timing.threads={threads}",
        ],
    )
    layer = direct_layer()
    timer = benchmark.Timer(stmt="layer()", globals={"layer": layer}, num_threads=threads)
    print(f"L={L} N={N} E={E} H={H} float32, {threads} threads, torch {torch.__version__}")
    print(f"{'round':>5} {'direct':>10} {'mha sdpa':>10} {'direct':>10} {'ratio':>7}")
    ratios = []

    def direct() -> float:
        with torch.inference_mode():
            return timer.blocked_autorange(min_run_time=args.min_run_time).median

    for index in range(1, args.rounds + 1):
        before = direct()
        reported = run_experiment(config).results[0]
        assert reported.status == "ok", reported.reason
        after = direct()
        ratios.append(reported.median_s / ((before + after) / 2))
        print(f"{index:>5} {before * 1e3:>8.2f}ms {reported.median_s * 1e3:>8.2f}ms {after * 1e3:>8.2f}ms {ratios[-1]:>7.3f}")
    median_ratio = statistics.median(ratios)
    ok = abs(median_ratio - 1) <= TOLERANCE
    print(f"median ratio mha/direct = {median_ratio:.3f} (target within 1 ± {TOLERANCE}): {'ok' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
