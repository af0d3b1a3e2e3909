"""This machine's matmul peak: the yardstick GFLOP/s are shown against.

A dense matrix product is the fastest work a device does in a given dtype and
thread count; attention kernels are judged as a share of it. The probe times one
square matmul (about half a second) with torch.utils.benchmark and keeps the
result in the user's cache folder, per CPU (or GPU) model, torch version, dtype
and thread count, so only the first run on a machine pays for it. `--reprobe`
measures again (after a BIOS change, a new BLAS, a noisy first probe).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from .clock import utc_now_iso
from .envinfo import cpu_model

PROBE_SIZE = {"cpu": 1024, "cuda": 4096}  # square matrix side: long enough to reach the peak, short to time
PROBE_SECONDS = 0.4
CACHE_FILE = "peak_gflops.json"


@dataclass(frozen=True)
class Peak:
    gflops: float
    device: str  # the CPU or GPU model
    torch: str
    dtype: str
    threads: int
    size: int  # the probe's matrix side
    measured: str  # when (UTC, ISO 8601)
    cached: bool = False  # read from the cache rather than measured now

    def describe(self) -> str:
        when = f"cached from {self.measured[:10]}" if self.cached else "measured now"
        return (f"{self.gflops:.1f} GFLOP/s ({self.dtype}, {self.threads} thread{'s' if self.threads != 1 else ''}, "
                f"{self.size}x{self.size} matmul on {self.device}, torch {self.torch}; {when})")


def cache_folder() -> Path:
    """$MHA_CACHE_DIR, else $XDG_CACHE_HOME/mha, else ~/.cache/mha."""
    if os.environ.get("MHA_CACHE_DIR"):
        return Path(os.environ["MHA_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mha"


def device_model(device: Any) -> str:
    import torch

    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()


def _probe_size(device: Any) -> int:
    return PROBE_SIZE["cuda" if device.type == "cuda" else "cpu"]


def _key(model: str, torch_version: str, dtype: str, threads: int) -> str:
    return f"{model} | torch {torch_version} | {dtype} | {threads} threads"


def read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # absent, unreadable or damaged: probe again and rewrite it
        return {}
    return data if isinstance(data, dict) else {}


def write_cache(path: Path, data: dict[str, Any]) -> None:
    """Best effort: a read-only or full cache folder costs a probe per run, never the run."""
    from .output_folder import write_atomic

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    except OSError:
        pass


def measure_peak(dtype_name: str, threads: int, device: Any) -> float:
    """GFLOP/s of one square matmul in this dtype at this thread count (the median of a short timing)."""
    import torch

    from .dtypes import torch_dtype
    from .measure import time_call

    size = _probe_size(device)
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=generator).to(device=device, dtype=torch_dtype(dtype_name)) for _ in range(2))
    out = torch.empty_like(a)

    def product() -> None:
        torch.mm(a, b, out=out)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    product()  # warm-up: BLAS picks its kernel and touches its buffers
    with torch.inference_mode():
        timing = time_call(product, threads=threads, min_run_time=PROBE_SECONDS, label="matmul peak")
    return 2 * size**3 / timing.median_s / 1e9


def peak_gflops(
    dtype_name: str, threads: int, device: Any, *, reprobe: bool = False, probing: Callable[[], None] = lambda: None
) -> Peak:
    """The cached peak for this device model, torch, dtype and thread count; probed (after calling
    `probing`, for a progress line) when absent or asked."""
    import torch

    model = device_model(device)

    def measured() -> Peak:
        return Peak(measure_peak(dtype_name, threads, device), model, torch.__version__, dtype_name, threads,
                    _probe_size(device), utc_now_iso())

    return cached_probe(CACHE_FILE, _key(model, torch.__version__, dtype_name, threads), Peak, measured,
                        reprobe=reprobe, probing=probing)


ProbeT = TypeVar("ProbeT")


def cached_probe(file: str, key: str, kind: Callable[..., ProbeT], measured: Callable[[], ProbeT], *,
                 reprobe: bool, probing: Callable[[], None]) -> ProbeT:
    """A probe's figure from the cache file (its `key` entry, as `kind(**entry, cached=True)`), or measured now
    (after calling `probing`, for a progress line) when absent, unreadable or asked for, and stored."""
    path = cache_folder() / file
    entry = read_cache(path).get(key)
    if not reprobe and isinstance(entry, dict):
        try:
            return kind(**{**entry, "cached": True})
        except TypeError:  # an entry from another version of this file: probe again
            pass
    probing()
    found = measured()
    fresh = read_cache(path)  # another process may have written meanwhile: keep its entries
    fresh[key] = {k: v for k, v in asdict(found).items() if k != "cached"}  # type: ignore[call-overload]
    write_cache(path, fresh)
    return found
