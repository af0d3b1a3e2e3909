"""Your own implementation (implementation.py's contract) behind the interface every built-in has.

The named object is imported once per run (user_code.py: every problem is a
config error on `implementations.NAME`, exit 2), checked for its form, and
wrapped: a core function is called with the spec on every timed call, a
factory builds its core once. The layer scope runs the same projections and
weights around it as sdpa and blocked.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from ..errors import Unsupported
from ..experiment import Experiment
from ..implementation import AttentionSpec, Core
from ..user_code import config_problem, import_target, reference_of, takes_positional
from ..workload import Workload
from . import Forward
from .layer import layer_around


def field_of(name: str) -> str:
    """Where a problem with implementation `name` is reported."""
    return f"implementations.{name}"


@dataclass(frozen=True)
class Yours:
    """One implementation you bring: a core function, or a factory with build(spec)."""

    name: str
    target: Any  # the core function, or the factory object
    origin: str  # the reference, and who offers it
    built: Core | None = None  # the core probe() built and checked, kept for the row

    @property
    def is_factory(self) -> bool:
        return hasattr(self.target, "build")

    def unsupported(self, experiment: Experiment) -> str | None:
        says = getattr(self.target, "unsupported", None)
        if says is None:
            return None
        try:
            reason = says(experiment)
        except Exception as error:  # noqa: BLE001 - the user's code: name it, do not crash the run
            raise config_problem(field_of(self.name), f"its unsupported(experiment) raised {type(error).__name__}: {error}") from None
        return None if reason is None else str(reason)

    def memory_bytes(self, experiment: Experiment) -> int | None:
        says = getattr(self.target, "memory_bytes", None)
        if says is None:
            return None
        value = says(experiment)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise config_problem(field_of(self.name), f"its memory_bytes(experiment) returned {value!r}, not a count of bytes")
        return value

    def core(self, spec: AttentionSpec) -> Core:
        """The call to time on q, k, v: the factory's core, or the function with the spec bound."""
        if self.is_factory:
            built = _calling(self.name, lambda: self.target.build(spec))
            if not callable(built):
                raise config_problem(field_of(self.name), f"its build(spec) returned a {type(built).__name__}, not a "
                                     "function core(q, k, v) -> out")
            return built
        function = self.target
        return lambda q, k, v: function(q, k, v, spec)

    def probe(self, work: Workload) -> Yours:
        """Build the core once and call it on the projected inputs, before anything is measured: a wrong
        output is a config error (exit 2). Returns this implementation with that core kept for the row.
        Unsupported (or NotImplementedError) skips the row; any other exception is the row's error."""
        core = self.core(work.spec)
        q, k, v = work.inputs.projected()
        with torch.inference_mode():
            out = _calling(self.name, lambda: core(q, k, v))
        check_output(self.name, out, tuple(q.shape), q.dtype)
        return replace(self, built=core)

    def build(self, work: Workload) -> Forward:
        reason = self.unsupported(work.experiment)
        if reason is not None:
            raise Unsupported(reason)
        core = self.built if self.built is not None else self.core(work.spec)

        def trainable(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            out = core(q, k, v)
            if torch.is_grad_enabled() and any(x.requires_grad for x in (q, k, v)) and not out.requires_grad:
                # At layer scope the output projection would hide it: the gradients would just be wrong.
                raise Unsupported(f"its output does not require grad, so timing.pass: {work.experiment.timing.pass_} "
                                  "cannot train through it (is it computed under no_grad, or detached?)")
            return out

        forward = layer_around(trainable, work)
        return lambda: _calling(self.name, forward)


def _calling(name: str, call: Callable[[], Any]) -> Any:
    """The call, with NotImplementedError turned into Unsupported (the contract: both skip the row)."""
    try:
        return call()
    except NotImplementedError as error:
        raise Unsupported(str(error) or f"{name} raised NotImplementedError") from None


def load(name: str, given: Any, origin: str) -> Yours:
    """The implementation a reference names (or, from Python, the object itself), checked for its form:
    a config error on implementations.NAME otherwise."""
    reference = reference_of(given)
    target = import_target(given, field_of(name)) if isinstance(given, str) else given
    if inspect.isclass(target) and hasattr(target, "build"):
        try:
            target = target()
        except Exception as error:  # noqa: BLE001
            raise config_problem(field_of(name), f"{reference!r} is a class with build(); creating it with no arguments "
                                 f"failed: {type(error).__name__}: {error}") from None
    if hasattr(target, "build"):
        if not callable(target.build) or not takes_positional(target.build, 1):
            raise config_problem(field_of(name), f"{reference!r}: its build must take one argument, build(spec)")
    elif not callable(target):
        raise config_problem(field_of(name), f"{reference!r} is a {type(target).__name__}, not an attention function "
                             "(q, k, v, spec) -> out or a factory with build(spec)")
    elif not takes_positional(target, 4):
        raise config_problem(field_of(name), f"{reference!r} must take (q, k, v, spec), the attention core's signature "
                             "(or be a factory with build(spec))")
    return Yours(name, target, origin)


def check_output(name: str, got: torch.Tensor, expected_shape: tuple[int, ...], dtype: torch.dtype) -> None:
    """A wrong output is a config error (exit 2, nothing measured): the contract is (N, H, L, d) in the run's dtype."""
    if not isinstance(got, torch.Tensor):
        raise config_problem(field_of(name), f"returned a {type(got).__name__}, not a tensor (N, H, L, d)")
    if tuple(got.shape) != expected_shape:
        raise config_problem(field_of(name), f"returned shape {tuple(got.shape)}; the core must return (N, H, L, d) = "
                             f"{expected_shape}")
    if got.dtype != dtype:
        raise config_problem(field_of(name), f"returned {got.dtype}; the core must return the run's dtype, {dtype}")
