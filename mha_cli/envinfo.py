"""Which machine and software made a result (recorded with every run)."""

from __future__ import annotations

import functools
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

from . import __version__


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.lru_cache(maxsize=1)
def source_commit() -> str | None:
    """The git commit of the mha source that ran, with -dirty for uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def _software() -> dict[str, Any]:
    """What every environment record starts with."""
    import torch

    return {
        "mha": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
    }


def run_env(device: str, num_threads: int) -> dict[str, Any]:
    """The `env` block of a results document."""
    import torch

    return {
        **_software(),
        "device": device,
        "device_name": torch.cuda.get_device_name(0) if device.startswith("cuda") else cpu_model(),
        "num_threads": num_threads,
        "commit": source_commit(),
    }


def machine_report() -> dict[str, Any]:
    """What `mha env` prints: enough to tell why two machines time differently."""
    import torch

    config = torch.__config__.show()
    blas = re.search(r"BLAS_INFO=(\w+)", config)
    cuda = torch.cuda.is_available()
    try:
        import matplotlib

        plotting = matplotlib.__version__
    except ImportError:
        plotting = None
    return {
        **_software(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "num_threads": torch.get_num_threads(),
        "blas": blas.group(1) if blas else None,
        "cuda_available": cuda,
        "cuda_version": torch.version.cuda,
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "mps_available": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
        "matplotlib": plotting,
        "commit": source_commit(),
        "implementations": available_implementations(),
    }


def available_implementations() -> list[dict[str, str]]:
    """Every implementation `impls` may name without a config's own `implementations:`: the built-in ones,
    then those installed distributions offer (entry-point group mha.implementations), with who offers them."""
    from .registry import BUILTIN_IMPLS, installed, unusable

    found = [{"name": name, "origin": "built in"} for name in BUILTIN_IMPLS]
    found += [{"name": offer.name, "origin": f"{offer.distribution}: {offer.reference}"} for offer in installed().values()]
    found += [{"name": offer.name, "origin": f"{offer.distribution}: {offer.reference} (not used: {why})"}
              for offer, why in unusable()]
    return found
