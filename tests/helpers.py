"""Small configs that run in milliseconds, shared by the tests."""

from __future__ import annotations

from typing import Any

from mha_cli.config import Config

FAST_TIMING = {"min_run_time": 0.01, "threads": 1}
FAST_OVERRIDES = ["timing.min_run_time=0.01", "timing.threads=1"]


def small_config(**changes: Any) -> Config:
    """A tiny valid config; keyword arguments replace fields (validated)."""
    base: dict[str, Any] = {
        "name": "test",
        "embed_dim": 16,
        "num_heads": 2,
        "batch_size": 2,
        "seq_len": 5,
        "timing": FAST_TIMING,
    }
    base.update(changes)
    return Config.model_validate(base)
