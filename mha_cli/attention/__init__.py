"""Implementations of one attention layer, all sharing the same weights.

Each implementation lives in its own module with one function,
`build(inputs, config) -> Forward`, and never imports another implementation.
`build` does the one-off work (masks, backend choice, compilation) so that the
returned zero-argument `Forward` is exactly what gets timed. With
`timing.scope: core` the Forward runs only the attention core on
already-projected q, k, v and returns (N, H, L, d).
Modules are imported on first use: some (FlexAttention) are slow to import.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from ..errors import UsageError

if TYPE_CHECKING:
    import torch

    from ..config import Config
    from ..inputs import Inputs


class AttentionOutput(NamedTuple):
    output: torch.Tensor  # layer: same layout as the query; core: (N, H, L, d)
    weights: torch.Tensor | None  # as nn.MultiheadAttention would return them, or None


Forward = Callable[[], AttentionOutput]
Builder = Callable[["Inputs", "Config"], Forward]


class Unavailable(Exception):
    """This implementation cannot run here (missing backend, device, feature); the row is skipped."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# name -> module under mha_cli.attention; the order is the order of the tables.
IMPLS: dict[str, str] = {
    "torch": "torch_mha",
    "manual": "manual",
    "sdpa": "sdpa",
    "blocked": "blocked",
    "flex": "flex",
}


def get_impl(name: str) -> Builder:
    if name not in IMPLS:
        import difflib

        close = difflib.get_close_matches(name, list(IMPLS), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise UsageError(f"unknown implementation {name!r}; valid names: {', '.join(IMPLS)}.{hint}")
    module = importlib.import_module(f"{__name__}.{IMPLS[name]}")
    return module.build
