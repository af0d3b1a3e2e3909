"""This machine's memory bandwidth: the yardstick GB/s are shown against, as the matmul peak is for GFLOP/s.

Attention that reads a long KV cache for a few queries (decoding) does little arithmetic per byte: its
speed is how fast it reads K and V. The probe times a plain copy of a buffer far larger than the caches
(torch.utils.benchmark, about half a second) and counts the bytes read and written, as STREAM's copy does.
It is cached beside the matmul peak (peak.py: per CPU or GPU model, torch version and thread count), and
`--reprobe` measures both again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .clock import utc_now_iso
from .peak import cached_probe, device_model

PROBE_BYTES = {"cpu": 256 * 2**20, "cuda": 1024 * 2**20}  # far beyond any cache, short to copy
PROBE_SECONDS = 0.3
CACHE_FILE = "bandwidth.json"


@dataclass(frozen=True)
class Bandwidth:
    gb_per_s: float  # bytes read + bytes written per second, in 1e9
    device: str
    torch: str
    threads: int
    size: int  # bytes copied per call
    measured: str
    cached: bool = False

    def describe(self) -> str:
        when = f"cached from {self.measured[:10]}" if self.cached else "measured now"
        return (f"{self.gb_per_s:.1f} GB/s (a copy of {self.size // 2**20} MiB, read + write, {self.threads} "
                f"thread{'s' if self.threads != 1 else ''} on {self.device}, torch {self.torch}; {when})")


def measure_bandwidth(threads: int, device: Any) -> float:
    """GB/s of a copy: (bytes read + bytes written) / the median time of one copy."""
    import torch

    from .measure import time_call

    size = PROBE_BYTES["cuda" if device.type == "cuda" else "cpu"]
    source = torch.ones(size // 4, dtype=torch.float32, device=device)
    target = torch.empty_like(source)

    def copy() -> None:
        target.copy_(source)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    copy()  # warm-up: both buffers touched, their pages mapped
    with torch.inference_mode():
        timing = time_call(copy, threads=threads, min_run_time=PROBE_SECONDS, label="memory bandwidth")
    return 2 * size / timing.median_s / 1e9


def bandwidth(threads: int, device: Any, *, reprobe: bool = False, probing: Callable[[], None] = lambda: None) -> Bandwidth:
    """The cached bandwidth for this device model, torch and thread count; probed when absent or asked."""
    import torch

    model = device_model(device)

    def measured() -> Bandwidth:
        return Bandwidth(measure_bandwidth(threads, device), model, torch.__version__, threads,
                         PROBE_BYTES["cuda" if device.type == "cuda" else "cpu"], utc_now_iso())

    return cached_probe(CACHE_FILE, f"{model} | torch {torch.__version__} | {threads} threads", Bandwidth, measured,
                        reprobe=reprobe, probing=probing)
