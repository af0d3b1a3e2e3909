"""mask_mod rules the tests name in configs (`sparse.mask_mod: tests/mask_mods.py:NAME`)."""

from __future__ import annotations

from pathlib import Path

import torch

HERE = Path(__file__).resolve()


def reference(name: str) -> str:
    """The config value naming one of this file's rules, by absolute path (any working folder)."""
    return f"{HERE}:{name}"


def head_window(b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
    """A window that widens with the head: head h sees |i - j| <= 2h + 1."""
    return (q_idx - kv_idx).abs() <= 2 * h + 1


def batch_stripes(b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
    """Differs per batch item: key j is hidden when (j + b) is a multiple of 3, unless j = i."""
    return ((kv_idx + b) % 3 != 0) | (q_idx == kv_idx)


def window(width: int):  # type: ignore[no-untyped-def]
    """A generator, used with mask_mod_args: {width: W}."""

    def rule(b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
        return (q_idx - kv_idx).abs() <= width

    return rule


def attn_gym_documents(lengths: list[int]):  # type: ignore[no-untyped-def]
    """attention-gym's document mask (causal within each document) for documents of these lengths."""
    from attn_gym.masks import causal_mask, generate_doc_mask_mod
    from attn_gym.masks.document_mask import length_to_offsets

    return generate_doc_mask_mod(causal_mask, length_to_offsets(lengths, "cpu"))


# Wrong rules, each a config error with its own message.
def two_arguments(q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
    return q_idx >= kv_idx


def integer_result(b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
    return (q_idx - kv_idx).abs()


def wrong_shape(b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
    return torch.ones(3, dtype=torch.bool)


def raises(b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
    raise ValueError("this rule is broken")


NOT_A_FUNCTION = 42
