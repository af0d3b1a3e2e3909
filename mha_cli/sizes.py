"""The sizes of one experiment, named as nn.MultiheadAttention and the README name them. No torch."""

from __future__ import annotations

from typing import NamedTuple


class Sizes(NamedTuple):
    batch_size: int  # N
    num_heads: int  # H
    seq_len: int  # L: queries
    source_len: int  # S: keys and values (L for self attention)
    embed_dim: int  # E
    kdim: int  # features of the key input (E unless cross attention says otherwise)
    vdim: int  # features of the value input

    @property
    def head_dim(self) -> int:
        """d = E / H."""
        return self.embed_dim // self.num_heads

    @property
    def scores(self) -> int:
        """Elements of one (N, H, L, S) tensor: every (query, key) pair of every head and batch item."""
        return self.batch_size * self.num_heads * self.seq_len * self.source_len
