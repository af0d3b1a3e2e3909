"""score_mod functions the tests name in configs (`score_mod.function: tests/score_mod_fns.py:NAME`)."""

from __future__ import annotations

from pathlib import Path

import torch

HERE = Path(__file__).resolve()


def reference(name: str) -> str:
    """The config value naming one of this file's functions, by absolute path (any working folder)."""
    return f"{HERE}:{name}"


def per_item_bias(score: torch.Tensor, b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor,
                  kv_idx: torch.Tensor) -> torch.Tensor:
    """A bias that differs per batch item and head, and reads both positions: declared with bias: true."""
    return score + 0.25 * (b + 1) - 0.1 * h * (q_idx - kv_idx).abs()


def squared(score: torch.Tensor, b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
    """Not a bias: a function of the score."""
    return score * score.abs() / 4


def mask_like(b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
    """A mask_mod (four arguments), named where a score_mod belongs."""
    return q_idx >= kv_idx


def returns_bool(score: torch.Tensor, b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
    return score > 0


def wrong_shape(score: torch.Tensor, b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
    return torch.zeros(3, 3, 3, 3, 3)


def scaled(factor: float):  # type: ignore[no-untyped-def]
    """A generator, used with score_mod.args: {factor: F}."""

    def mod(score: torch.Tensor, b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
        return score * factor

    return mod


def detached_table_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """Your own implementation that applies the score mod with its table detached: right forward, no table gradient."""
    mod = spec.score_mod.with_tables({name: t.detach() for name, t in spec.score_mod.tables.items()})
    return _dense(q, k, v, spec, mod.apply)


def applies_spec_mod(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """Your own implementation that applies spec.score_mod through its FlexAttention form, on dense scores."""
    mod = spec.score_mod

    def modify(scores: torch.Tensor) -> torch.Tensor:
        n, h, length, source = scores.shape
        b = torch.arange(n)[:, None, None, None]
        heads = torch.arange(h)[None, :, None, None]
        return mod.score_mod(scores, b, heads, torch.arange(length)[None, None, :, None],
                             torch.arange(source)[None, None, None, :])

    return _dense(q, k, v, spec, modify if mod is not None else None)


def ignores_mod(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec) -> torch.Tensor:  # type: ignore[no-untyped-def]
    return _dense(q, k, v, spec, None)


def _dense(q, k, v, spec, modify):  # type: ignore[no-untyped-def]
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    scores = q @ k.transpose(-2, -1) * spec.scale
    if modify is not None:
        scores = modify(scores)
    if spec.mask.masked:
        scores = scores.masked_fill(~spec.mask.dense(), float("-inf"))
    return torch.softmax(scores, dim=-1).nan_to_num(0.0) @ v


def no_head_bias(score: torch.Tensor, b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor,
                 kv_idx: torch.Tensor) -> torch.Tensor:
    """A bias the same for every head and item (the commonest kind of your own)."""
    return score - 0.1 * (q_idx - kv_idx).abs()


def in_place_bias(score: torch.Tensor, b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor,
                  kv_idx: torch.Tensor) -> torch.Tensor:
    """A bias added in place to the scores it is given."""
    score += 0.05 * (kv_idx - q_idx)
    return score


def summed(score: torch.Tensor, b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
    return score.sum()


def nan_scores(score: torch.Tensor, b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
    return score + float("nan")


def table_through_apply(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """Your own implementation applying spec.score_mod inside the call, as the contract asks."""
    return _dense(q, k, v, spec, spec.score_mod.apply)
