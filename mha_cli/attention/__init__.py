"""Implementations of one attention layer, all sharing the same weights, behind one interface.

Each built-in implementation lives in its own module and never imports another.
A module says first, cheaply and before anything is built, whether it can run an
experiment (`unsupported(experiment) -> reason or None`: device, dtype, pattern,
pass, scope), as xformers' ops do; then `build(work) -> Forward` does the one-off
work (masks, backend choice, compilation) so that the returned zero-argument
Forward is exactly what gets timed. With `timing.scope: core` the Forward runs
only the attention core on already-projected q, k, v and returns (N, H, L, d).
Your own implementations (implementation.py) get the same interface in yours.py.
Modules are imported on first use: some (FlexAttention) are slow to import.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Protocol

from ..errors import Unsupported
from ..registry import BUILTIN_IMPLS

if TYPE_CHECKING:
    import torch

    from ..experiment import Experiment
    from ..workload import Workload


class AttentionOutput(NamedTuple):
    output: torch.Tensor  # layer: same layout as the query; core: (N, H, L, d)
    weights: torch.Tensor | None  # as nn.MultiheadAttention would return them, or None


Forward = Callable[[], AttentionOutput]


class Implementation(Protocol):
    name: str
    origin: str  # "built in", or where it came from (the config's reference, an installed distribution)

    @property
    def portable(self) -> bool:
        """Whether a fresh process can build it from the config alone, cheaply (timed in repetitions' own
        processes); not for code handed over from Python, nor for what compiles on every build (flex)."""

    def unsupported(self, experiment: Experiment) -> str | None:
        """Why it cannot run this experiment here, found without building anything; None when it can."""

    def build(self, work: Workload) -> Forward:
        """The call to time (raises Unsupported when it cannot run after all)."""

    def memory_bytes(self, experiment: Experiment) -> int | None:
        """The most bytes it needs, when it says; None: the memory guard estimates it."""


@dataclass(frozen=True)
class Builtin:
    """A built-in implementation: a module under mha_cli.attention with unsupported() and build()."""

    name: str
    origin: str = "built in"

    @property
    def module(self):  # type: ignore[no-untyped-def]
        return importlib.import_module(f"{__name__}.{BUILTIN_IMPLS[self.name]}")

    @property
    def portable(self) -> bool:
        return not getattr(self.module, "COMPILES", False)

    def unsupported(self, experiment: Experiment) -> str | None:
        return self.module.unsupported(experiment)

    def build(self, work: Workload) -> Forward:
        reason = self.unsupported(work.experiment)
        if reason is not None:
            raise Unsupported(reason)
        return self.module.build(work)

    def memory_bytes(self, experiment: Experiment) -> int | None:
        return None  # memory.estimate knows every built-in


def builtin(name: str) -> Builtin:
    """The built-in implementation of that name (KeyError for another name)."""
    if name not in BUILTIN_IMPLS:
        raise KeyError(name)
    return Builtin(name)


def implementations_for(experiment: Experiment) -> dict[str, Implementation]:
    """Every implementation the experiment lists, in its order: built in, named under `implementations:`
    (imported now), or offered by an installed distribution. Import problems are ConfigErrors on
    implementations.NAME (exit 2, before anything is measured)."""
    from ..registry import installed
    from ..user_code import config_problem, reference_of
    from . import yours

    found: dict[str, Implementation] = {}
    offered = None
    for name in experiment.impls:
        if name in BUILTIN_IMPLS:
            found[name] = Builtin(name)
            continue
        given = experiment.implementations.get(name)
        if given is not None:  # a reference to import, or (from Python) the function or factory itself
            found[name] = yours.load(name, given, origin=f"the config's implementations.{name}: {reference_of(given)}")
            continue
        offered = installed() if offered is None else offered
        offer = offered.get(name)
        if offer is None:
            raise config_problem("impls", f"{name!r} is not installed in this environment (no entry point {name} in the "
                                 "group mha.implementations); install the package that offers it, or name it under implementations:")
        found[name] = yours.load(name, offer.reference, origin=f"{offer.distribution}: {offer.reference}",
                                 offered_by=offer.distribution)
    return found
