"""Implementations the tests bring (`implementations: {NAME: tests/your_impls.py:ATTRIBUTE}`)."""

from __future__ import annotations

from pathlib import Path

import torch

import mha_cli

HERE = Path(__file__).resolve()


def reference(name: str) -> str:
    """The config value naming one of this file's implementations, by absolute path (any working folder)."""
    return f"{HERE}:{name}"


def dense_softmax(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """The textbook core, reading the dense mask (rows without an allowed key come out NaN, as manual's)."""
    scores = (q @ k.transpose(-2, -1)) * spec.scale
    if spec.mask.masked:
        scores = scores.masked_fill(~spec.mask.dense(), float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def from_the_rule(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """The same core, with the mask evaluated from the FlexAttention rule instead of the dense form."""
    sizes = spec.sizes
    b = torch.arange(sizes.batch_size)[:, None, None, None]
    h = torch.arange(sizes.num_heads)[None, :, None, None]
    i = torch.arange(sizes.seq_len)[None, None, :, None]
    j = torch.arange(sizes.source_len)[None, None, None, :]
    allowed = spec.mask.mask_mod(b, h, i, j).to(q.device)
    scores = ((q @ k.transpose(-2, -1)) * spec.scale).masked_fill(~allowed, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def causal_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """Runs only plain causal masks: anything else is Unsupported."""
    if not spec.mask.is_causal:
        raise mha_cli.Unsupported("causal_sdpa runs plain causal masks only")
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)


def off_by_a_little(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec) -> torch.Tensor:  # type: ignore[no-untyped-def]
    return dense_softmax(q, k, v, spec) + 1e-2


def crashes(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec) -> torch.Tensor:  # type: ignore[no-untyped-def]
    raise ValueError("my kernel is broken")


def not_implemented(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec) -> torch.Tensor:  # type: ignore[no-untyped-def]
    raise NotImplementedError("no masks in this kernel yet")


def wrong_shape(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec) -> torch.Tensor:  # type: ignore[no-untyped-def]
    return q[..., :1]


def wrong_dtype(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec) -> torch.Tensor:  # type: ignore[no-untyped-def]
    return dense_softmax(q, k, v, spec).double()


def detached(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec) -> torch.Tensor:  # type: ignore[no-untyped-def]
    with torch.no_grad():
        return dense_softmax(q, k, v, spec)


def two_arguments(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    return q


NOT_A_FUNCTION = 3


@mha_cli.factory
def built_once(spec):  # type: ignore[no-untyped-def]
    """A factory: the one-off work (here, the dense mask) happens once, outside the timed call."""
    BUILDS.append(spec.experiment.name)
    blocked = ~spec.mask.dense() if spec.mask.masked else None

    def core(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        scores = (q @ k.transpose(-2, -1)) * spec.scale
        if blocked is not None:
            scores = scores.masked_fill(blocked, float("-inf"))
        return torch.softmax(scores, dim=-1) @ v

    return core


BUILDS: list[str] = []


class Declared:
    """A factory class that says what it cannot run, and how much memory it needs, before it is built."""

    def unsupported(self, experiment) -> str | None:  # type: ignore[no-untyped-def]
        return "Declared does not run key padding" if experiment.mask.key_lengths is not None else None

    def memory_bytes(self, experiment) -> int:  # type: ignore[no-untyped-def]
        return 10 * 2**40  # 10 TiB: never fits, so the memory guard skips it

    def build(self, spec):  # type: ignore[no-untyped-def]
        return lambda q, k, v: dense_softmax(q, k, v, spec)


def exits(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec) -> torch.Tensor:  # type: ignore[no-untyped-def]
    import sys

    sys.exit(0)


def in_place(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec) -> torch.Tensor:  # type: ignore[no-untyped-def]
    v.mul_(0)  # a careless kernel: it must not change what the other implementations read
    return dense_softmax(q, k, v, spec)


def chatty(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec) -> torch.Tensor:  # type: ignore[no-untyped-def]
    print("hello from my kernel")
    return dense_softmax(q, k, v, spec)


@mha_cli.factory
def core_takes_the_spec(spec):  # type: ignore[no-untyped-def]
    return lambda q, k, v, spec: q  # the core takes (q, k, v): the spec belongs to the factory


def pid_logged(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """Writes the process it runs in to $MHA_TEST_PID_LOG: which process times which repetition."""
    import os

    with open(os.environ["MHA_TEST_PID_LOG"], "a") as log:
        log.write(f"{os.getpid()}\n")
    return dense_softmax(q, k, v, spec)


def slow(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec) -> torch.Tensor:  # type: ignore[no-untyped-def]
    import time

    time.sleep(0.05)
    return dense_softmax(q, k, v, spec)


def slower_than_a_repetitions_floor(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """One call longer than the 0.1 s within which a repetition takes 3 calls: timed once."""
    import time

    time.sleep(0.12)
    return dense_softmax(q, k, v, spec)


def dies_in_a_repetition(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """Fine in the process that checks it; ends any other (a repetition's) at once, as a crash would."""
    import os

    if os.getpid() != int(os.environ["MHA_TEST_PARENT"]):
        os._exit(9)
    return dense_softmax(q, k, v, spec)
