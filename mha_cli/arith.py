"""Integer arithmetic shared by the config rules, the memory guard and the block plans (no torch)."""

from __future__ import annotations


def ceil_div(count: int, size: int) -> int:
    """How many pieces of `size` cover `count` items (the last piece may be short)."""
    return -(-count // size)
