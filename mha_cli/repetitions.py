"""A point's repetitions, each timed in a fresh process, the implementations interleaved.

The spread between processes is real and larger than the spread within one
(bench/repetitions.py, docs/performance.md): repetitions that share a process
share its luck, and a gate comparing two processes by their own repetitions
cries wolf. So each repetition is a process of its own, forked from a server
that imported torch and mha once and never ran torch work (forking a process
that has run OpenMP work can hang it). The process rebuilds the point's inputs
and implementations, times each in turn, in an order rotated by one every
repetition so that drift hits all alike, reads the machine's load around each,
and hands back one median per implementation.

The parent checks every implementation first (float64, gradients, memory):
a repetition's process only times, and skips the one-off probes the parent
already ran. Rows that cannot go to another process (code handed over from
Python as an object) and rows whose build compiles (flex) are timed in this
process, in the same rounds.
"""

from __future__ import annotations

import atexit
import contextlib
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from .machine_load import Load, load_between, snapshot

# What the fork server imports once, so that a repetition's process starts with it: torch, what it imports lazily
# on a layer's first call (~0.4 s each time otherwise), and every mha module a repetition uses. Imports only:
# the server never runs torch work, so its forks start clean.
SERVER_MODULES = ["mha_cli.runner", "mha_cli.attention.torch_mha", "mha_cli.attention.manual", "mha_cli.attention.sdpa",
                  "mha_cli.attention.blocked", "torch.utils.benchmark", "torch._meta_registrations",
                  "torch.fx.experimental.symbolic_shapes"]  # nn.MultiheadAttention's first call imports it (sympy)


# A repetition's share of timing.min_run_time holds one call of a millisecond-scale layer, and one call carries
# all of its call-to-call noise: a repetition measures at least 3 calls when they take under 0.1 s together.
AT_LEAST = (3, 0.1)


class Slice(NamedTuple):
    """One implementation timed in one repetition."""

    median_s: float
    runs: int
    iqr_s: float  # within the repetition (what a single repetition's row shows)
    wall_s: float  # what the slice cost, calls to size the timer and tries made again included
    load: Load | None  # the rest of the machine meanwhile (None: unknown)
    retried: int = 0  # times it was timed again because the machine was busy meanwhile


# A slice timed while other processes used the CPUs is timed again, up to this many times: a load that comes and
# goes (measured: one process 1 s on, 1 s off) otherwise lands on some slices of a pair and not on the other,
# and a 19% slowdown of 0.3 s calls was caught in 0-2 compares of 20. Its last try stands, busy or not. Only
# slices long enough for /proc/stat's 10 ms ticks to tell: on shorter ones a quiet machine reads busy by chance.
BUSY_RETRIES = 3
RETRY_SLICES_FROM = 0.2  # seconds


def rotated(names: Sequence[str], index: int) -> list[str]:
    """The order of repetition `index`: ABC, BCA, CAB, ..."""
    if not names:
        return []
    shift = index % len(names)
    return [*names[shift:], *names[:shift]]


def time_slice(timed: Callable[[], object], *, threads: int, budget: float, label: str, trains: bool,
               device: Any) -> Slice:
    """One implementation timed for `budget` seconds (at least one measured call), with the load meanwhile."""
    import torch

    from .measure import time_call

    start, began = snapshot(), time.perf_counter()
    with contextlib.nullcontext() if trains else torch.inference_mode():
        timing = time_call(timed, threads=threads, min_run_time=budget, label=label, at_least=AT_LEAST)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return Slice(timing.median_s, timing.runs, timing.iqr_s, time.perf_counter() - began, load_between(start, snapshot()))


# --------------------------------------------------------------------------- a repetition's own process


def time_repetition(request: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: rebuild the point from its config and time request["order"] one after another.
    Returns {impl: Slice as a dict} or {impl: {"error": why}} per implementation."""
    from .attention import implementations_for
    from .config import Config
    from .errors import first_line
    from .experiment import resolve
    from .inputs import make_inputs, resolve_device
    from .measure import measuring_threads
    from .prepared import Prepared
    from .training import timed_pass, training_workload, upstream_gradient
    from .workload import make_workload

    began = snapshot()
    experiment = resolve(Config.model_validate(request["config"]))
    implementations = implementations_for(experiment)
    device = resolve_device(experiment.device)
    out: dict[str, Any] = {}
    with contextlib.redirect_stdout(sys.stderr), measuring_threads(experiment.timing.threads) as threads:
        work = make_workload(Prepared(experiment), make_inputs(experiment, device), checked_before=True)
        trains = experiment.timing.trains
        upstream = upstream_gradient(experiment, device) if trains else None
        for name in request["order"]:
            try:
                each, leaves = training_workload(work) if trains else (work, None)
                forward = implementations[name].build(each)
                timed = timed_pass(experiment, forward, leaves, upstream) if trains else forward  # type: ignore[arg-type]
                found = last = time_slice(timed, threads=threads, budget=request["budget"], label=name,
                                          trains=trains, device=device)
                while (last.load is not None and last.load.busy and last.wall_s >= RETRY_SLICES_FROM
                       and found.retried < BUSY_RETRIES):
                    last = time_slice(timed, threads=threads, budget=request["budget"], label=name, trains=trains,
                                      device=device)
                    # The last try's times; the wall time of every try, which timing.max_row_time caps.
                    found = last._replace(retried=found.retried + 1, wall_s=found.wall_s + last.wall_s)
                out[name] = found._asdict()  # its load: the point's, below
            except Exception as error:  # noqa: BLE001 - the row says it; the others still run
                out[name] = {"error": first_line(error)}
            finally:
                forward = timed = None  # one implementation's tensors alive at a time, as the memory guard judged
    # The load over the whole repetition of the point, given to each of its slices: /proc/stat counts in 10 ms
    # ticks, as coarse as a microsecond layer's whole slice (a quiet machine read up to 16% busy per slice).
    point_load = load_between(began, snapshot())
    for found in out.values():
        if "load" in found:
            found["load"] = list(point_load) if point_load is not None else None
    return out


# --------------------------------------------------------------------------- the server (python -m mha_cli.repetitions)


def serve() -> None:
    """The fork server: import once, then for each line of requests fork a child that times them and sends one
    result line per request; the child's pid first, a "done" line last. What any code prints goes to stderr.
    It ends quietly when its parent is gone (stdin at its end, or nobody reading its stdout)."""
    import os

    try:
        _serve()
    except BrokenPipeError:
        os._exit(0)  # the command ended first: nothing to say, and nobody to say it to


def _serve() -> None:
    import importlib
    import json
    import os
    import signal

    for module in SERVER_MODULES:
        importlib.import_module(module)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C ends the repetition's child and the command, not the server
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    out.write("ready\n")
    out.flush()
    for line in sys.stdin:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the repetition's own process
            os.close(read)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            try:
                _child(json.loads(line), os.fdopen(write, "w"))
            finally:
                os._exit(0)  # never back into the server's loop, whatever happened
        os.close(write)
        out.write(json.dumps({"pid": pid}) + "\n")
        out.flush()
        with os.fdopen(read) as results:
            for result in results:
                out.write(result)
                out.flush()
        _, status = os.waitpid(pid, 0)
        out.write(json.dumps({"done": os.waitstatus_to_exitcode(status)}) + "\n")
        out.flush()


def keep_freed_memory() -> None:
    """glibc: keep what is freed in the process (no trimming of the heap's top; the mmap threshold at its most),
    so that calls after the warm-up do not fault the same pages in again. A fresh process otherwise faults
    them in call after call for as long as its heap keeps shrinking back: measured at configs/local_window.yaml,
    L=1024, `blocked` took ~2,100 page faults and 6-7 ms a call in some fresh processes, none and 3.4-4 ms in
    others, and how long that lasted varied from process to process. A long-running process settles where
    this starts. Elsewhere (no mallopt) nothing changes."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's <malloc.h>
    mallopt(m_trim_threshold, 1 << 30)
    mallopt(m_mmap_threshold, 32 << 20)  # glibc's largest (its dynamic threshold stops there too)


def _child(round_: dict[str, Any], results: Any) -> None:
    """Take on the parent's working folder, path and environment as they are now, then time every request."""
    import importlib
    import json
    import os

    from .errors import first_line

    keep_freed_memory()
    os.chdir(round_["cwd"])
    sys.path[:] = round_["sys_path"]
    os.environ.clear()
    os.environ.update(round_["env"])
    importlib.invalidate_caches()
    for request in round_["requests"]:
        try:
            result: dict[str, Any] = time_repetition(request)
        except BaseException as error:  # noqa: BLE001 - whatever ends a point is that point's reason
            result = {"__error__": first_line(error)}
        results.write(json.dumps(result) + "\n")
        results.flush()


# --------------------------------------------------------------------------- the parent's side


class _Server:
    """The one fork server of this process, started on first use and kept until the process ends."""

    process: subprocess.Popen[str] | None = None
    ready = False
    stop_registered = False

    @classmethod
    def start(cls) -> subprocess.Popen[str]:
        if cls.process is None or cls.process.poll() is not None:
            import os

            cls.process = subprocess.Popen([sys.executable, "-m", "mha_cli.repetitions"], stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE, text=True, start_new_session=True,
                                           env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
            cls.ready = False
            if not cls.stop_registered:  # however the command ends (Ctrl-C between repetitions too), the server goes
                atexit.register(cls.stop)
                cls.stop_registered = True
        return cls.process

    @classmethod
    def ready_process(cls) -> subprocess.Popen[str]:
        process = cls.start()
        if not cls.ready:
            line = process.stdout.readline()  # type: ignore[union-attr]
            if line.strip() != "ready":
                cls.stop()
                raise RuntimeError("the repetitions' fork server did not start")
            cls.ready = True
        return process

    @classmethod
    def stop(cls) -> None:
        if cls.process is not None:
            import os
            import signal

            with contextlib.suppress(ProcessLookupError):
                os.killpg(cls.process.pid, signal.SIGKILL)  # the server and the repetition it runs
            cls.process.wait()
            cls.process = None


def can_fork_server() -> bool:
    return hasattr(__import__("os"), "fork")


def start_server() -> None:
    """Start the fork server now (it imports torch, about a second and a half) so that it is ready when the first
    repetition needs it; idempotent."""
    _Server.start()


def repetitions_in_a_process(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One repetition of several points: a process forked from the server times each request in turn (a point's
    config, order and budget). One result per request, or why it had none."""
    import json
    import os

    try:
        process = _Server.ready_process()
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(json.dumps({"requests": requests, "cwd": os.getcwd(), "sys_path": sys.path,
                                        "env": dict(os.environ)}) + "\n")
        process.stdin.flush()
        results: list[dict[str, Any]] = []
        while True:
            line = process.stdout.readline()
            if not line:
                _Server.stop()
                why = "the repetitions' fork server ended"
                break
            message = json.loads(line)
            if "done" in message:
                why = f"its process ended without a result (exit code {message['done']})"
                break
            if "pid" not in message:
                results.append(message)
    except BaseException:
        _Server.stop()  # Ctrl-C or SIGTERM: the repetition goes with the command
        raise
    return results + [{"__error__": why}] * (len(requests) - len(results))


class Samples:
    """One implementation's repetitions at one point, as they arrive."""

    def __init__(self) -> None:
        self.slices: dict[int, Slice] = {}  # by repetition
        self.lost: dict[int, str] = {}  # why a repetition has no value
        self.capped_at: int | None = None  # the repetitions left out by max_row_time start here

    @property
    def spent(self) -> float:
        return sum(s.wall_s for s in self.slices.values())

    def add(self, index: int, found: Slice | dict[str, Any]) -> None:
        if isinstance(found, dict):
            if "error" in found:
                self.lost[index] = found["error"]
                return
            load = Load(*found["load"]) if found.get("load") is not None else None
            found = Slice(**{**found, "load": load})
        self.slices[index] = found

    def fits(self, index: int, cap: float) -> bool:
        """Whether repetition `index` may run within the row's time cap (the first always does)."""
        if self.capped_at is not None:
            return False
        if self.slices and self.spent + max(s.wall_s for s in self.slices.values()) > cap:
            self.capped_at = index
            return False
        return True

    def medians(self) -> list[float]:
        return [self.slices[i].median_s for i in sorted(self.slices)]

    def by_repetition(self) -> list[float | None]:
        """One median per repetition that was asked for and reached, None where one was lost."""
        last = max([*self.slices, *self.lost], default=-1)
        return [self.slices[i].median_s if i in self.slices else None for i in range(last + 1)]

    def runs(self) -> int:
        return sum(s.runs for s in self.slices.values())

    def iqr(self) -> float | None:
        """Of the repetitions' medians; one repetition's own when there is one (None under MIN_RUNS calls)."""
        from .results import MIN_RUNS

        medians = self.medians()
        if len(medians) == 1:
            (only,) = self.slices.values()
            return only.iqr_s if only.runs >= MIN_RUNS else None
        if not medians:
            return None
        quartiles = statistics.quantiles(medians, n=4, method="inclusive")
        return quartiles[2] - quartiles[0]

    def load(self) -> Load | None:
        """The rest of the machine's share over every slice, weighted by their wall time."""
        known = [s for s in self.slices.values() if s.load is not None]
        wall = sum(s.wall_s for s in known)
        if not known or wall <= 0:
            return None
        return Load(sum(s.load.others * s.wall_s for s in known) / wall,  # type: ignore[union-attr]
                    sum(s.load.steal * s.wall_s for s in known) / wall)  # type: ignore[union-attr]

    def notes(self, asked: int, cap: float) -> list[str]:
        """What the row says about its repetitions: the ones lost, and the ones the time cap left out."""
        notes = [f"repetition {i + 1} lost: {why}" for i, why in sorted(self.lost.items())]
        retried = sum(1 for s in self.slices.values() if s.retried)
        if retried:
            notes.append(f"{retried} of {len(self.slices)} repetitions timed again: other processes used the CPUs "
                         "while they ran")
        if self.capped_at is not None:
            notes.append(f"{len(self.slices)} of {asked} repetitions: one takes {max(s.wall_s for s in self.slices.values()):.3g} s "
                         f"and timing.max_row_time is {cap:g} s")
        return notes


if __name__ == "__main__":
    serve()
