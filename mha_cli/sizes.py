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
    num_kv_heads: int = 0  # H_kv: key/value heads, each shared by H / H_kv query heads (0: H, no grouping)

    @property
    def head_dim(self) -> int:
        """d = E / H."""
        return self.embed_dim // self.num_heads

    @property
    def kv_heads(self) -> int:
        """H_kv (H when not grouped)."""
        return self.num_kv_heads or self.num_heads

    @property
    def grouped(self) -> bool:
        """Grouped-query (or multi-query) attention: fewer key/value heads than query heads."""
        return self.kv_heads < self.num_heads

    @property
    def group_size(self) -> int:
        """G = H / H_kv: query heads per key/value head; query head h reads key/value head h // G."""
        return self.num_heads // self.kv_heads

    @property
    def kv_width(self) -> int:
        """H_kv * d: the features of the projected keys (and values)."""
        return self.kv_heads * self.head_dim

    @property
    def scores(self) -> int:
        """Elements of one (N, H, L, S) tensor: every (query, key) pair of every head and batch item."""
        return self.batch_size * self.num_heads * self.seq_len * self.source_len
