"""Your own implementation (implementation.py's contract) behind the interface every built-in has.

The named object is imported once per run (user_code.py: every problem is a
config error naming it, exit 2), checked for its form, and wrapped: a core
function is called with the spec on every timed call, a factory builds its
core once. The layer scope runs the same projections and weights around it as
sdpa and blocked. Its code never ends mha: sys.exit inside it is an error like
any exception, and at core scope it gets its own copies of q, k and v, so an
in-place change cannot reach the rows of the other implementations.
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
from ..user_code import a_kind, config_problem, failure, import_target, reference_of, takes_positional
from ..workload import Workload
from . import Forward
from .layer import layer_around


class UserCodeExited(RuntimeError):
    """Code the config names called sys.exit: the row's error, never the end of mha."""


@dataclass(frozen=True)
class Yours:
    """One implementation you bring: a core function, or a factory with build(spec)."""

    name: str
    target: Any  # the core function, or the factory object
    origin: str  # the reference, and who offers it
    field: str  # where its problems are reported: implementations.NAME, or the entry point that offers it
    source: str = "config"
    built: Core | None = None  # the core probe() built and checked, kept for the row
    portable: bool = True  # named by a reference a fresh process can import (not an object handed over from Python)

    @property
    def is_factory(self) -> bool:
        return hasattr(self.target, "build")

    def problem(self, message: str) -> Exception:
        return config_problem(self.field, message, self.source)

    def unsupported(self, experiment: Experiment) -> str | None:
        says = getattr(self.target, "unsupported", None)
        if says is None:
            return None
        try:
            reason = says(experiment)
        except (Exception, SystemExit) as error:  # noqa: BLE001 - the user's code: name it, do not crash the run
            raise self.problem(f"its unsupported(experiment) failed: {failure(error)}") from None
        return None if reason is None else str(reason)

    def memory_bytes(self, experiment: Experiment) -> int | None:
        says = getattr(self.target, "memory_bytes", None)
        if says is None:
            return None
        try:
            value = says(experiment)
        except (Exception, SystemExit) as error:  # noqa: BLE001
            raise self.problem(f"its memory_bytes(experiment) failed: {failure(error)}") from None
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise self.problem(f"its memory_bytes(experiment) returned {value!r}, not a count of bytes")
        return value

    def core(self, spec: AttentionSpec) -> Core:
        """The call to time on q, k, v: the factory's core, or the function with the spec bound."""
        if self.is_factory:
            built = _calling(self.name, lambda: self.target.build(spec))
            if not callable(built):
                raise self.problem(f"its build(spec) returned {a_kind(built)}, not a function core(q, k, v) -> out")
            if not takes_positional(built, 3):
                raise self.problem("the core its build(spec) returns must take (q, k, v): the spec is the factory's")
            return built
        function = self.target
        return lambda q, k, v: function(q, k, v, spec)

    def probe(self, work: Workload) -> Yours:
        """Build the core once and call it on the projected inputs, before anything is measured: a wrong
        output is a config error (exit 2). Returns this implementation with that core kept for the row.
        Unsupported (or NotImplementedError) skips the row; any other exception is the row's error."""
        core = self.core(work.spec)
        q, k, v = (x.clone() for x in work.inputs.projected())  # its own copies: an in-place change stays its own
        with torch.inference_mode():
            out = _calling(self.name, lambda: core(q, k, v))
        self.check_output(out, tuple(q.shape), q.dtype, q.device)
        return replace(self, built=core)

    def build(self, work: Workload) -> Forward:
        reason = self.unsupported(work.experiment)
        if reason is not None:
            raise Unsupported(reason)
        # The core probe() built reads the run's spec; a training pass's spec holds a learned score mod's table as
        # a leaf that requires grad, which only a core built from that spec reaches.
        trained = work.score_mod is not None and work.score_mod.trained
        core = self.built if self.built is not None and not trained else self.core(work.spec)
        if work.experiment.timing.scope == "core":
            # Its own copies of q, k, v (leaves kept for a training pass): whatever it does to them in place
            # cannot change what the other implementations read.
            work = work.with_inputs(work.inputs.with_projected(*(_own_copy(x) for x in work.inputs.projected())))

        def trainable(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            out = core(q, k, v)
            if torch.is_grad_enabled() and any(x.requires_grad for x in (q, k, v)) and not out.requires_grad:
                # At layer scope the output projection would hide it: the gradients would just be wrong.
                raise Unsupported(f"its output does not require grad, so timing.pass: {work.experiment.timing.pass_} "
                                  "cannot train through it (is it computed under no_grad, or detached?)")
            return out

        forward = layer_around(trainable, work)
        return lambda: _calling(self.name, forward)

    def check_output(self, got: Any, expected_shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> None:
        """A wrong output is a config error (exit 2, nothing measured): the contract is (N, H, L, d), the run's
        dtype and device."""
        if not isinstance(got, torch.Tensor):
            raise self.problem(f"returned {a_kind(got)}, not a tensor (N, H, L, d)")
        if tuple(got.shape) != expected_shape:
            raise self.problem(f"returned shape {tuple(got.shape)}; the core must return (N, H, L, d) = {expected_shape}")
        if got.dtype != dtype:
            raise self.problem(f"returned {got.dtype}; the core must return the run's dtype, {dtype}")
        if got.device != device:
            raise self.problem(f"returned a tensor on {got.device}; the core must return it on the run's device, {device}")


def _own_copy(x: torch.Tensor) -> torch.Tensor:
    """A copy of its own, still differentiable to the original (the training pass's leaf)."""
    return x.clone()


def _calling(name: str, call: Callable[[], Any]) -> Any:
    """The call, with NotImplementedError turned into Unsupported (the contract: both skip the row), and
    sys.exit into an error of the row (code the config names must not end mha, nor its exit code)."""
    try:
        return call()
    except NotImplementedError as error:
        raise Unsupported(str(error) or f"{name} raised NotImplementedError") from None
    except SystemExit as error:
        raise UserCodeExited(f"{name} {failure(error)}") from None


def load(name: str, given: Any, origin: str, offered_by: str | None = None) -> Yours:
    """The implementation a reference names (or, from Python, the object itself), checked for its form: a
    config error on implementations.NAME, or on the entry point `offered_by` a distribution, otherwise."""
    reference = reference_of(given)
    field, source = ("", f"entry point {name!r} of {offered_by}") if offered_by else (f"implementations.{name}", "config")
    yours = Yours(name, None, origin, field, source)
    target = import_target(given, field, source) if isinstance(given, str) else given
    if inspect.isclass(target) and hasattr(target, "build"):
        try:
            target = target()
        except (Exception, SystemExit) as error:  # noqa: BLE001
            raise yours.problem(f"{reference!r} is a class with build(); creating it with no arguments "
                                f"failed: {failure(error)}") from None
    if hasattr(target, "build"):
        if not callable(target.build) or not takes_positional(target.build, 1):
            raise yours.problem(f"{reference!r}: its build must take one argument, build(spec)")
    elif not callable(target):
        raise yours.problem(f"{reference!r} is {a_kind(target)}, not an attention function "
                            "(q, k, v, spec) -> out or a factory with build(spec)")
    elif not takes_positional(target, 4):
        raise yours.problem(f"{reference!r} must take (q, k, v, spec), the attention core's signature "
                            "(or be a factory with build(spec))")
    return replace(yours, target=target, portable=isinstance(given, str))
