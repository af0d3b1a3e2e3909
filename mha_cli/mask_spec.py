"""The masks of one experiment beside its pattern (causal, prefix, key padding, packed documents),
and the cheapest form that hands them to a kernel. No torch: the memory guard reads them too.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class MaskSpec(NamedTuple):
    causal: bool = False
    prefix: int = 0  # with causal: keys j < prefix are visible to every query too (a prefix LM)
    key_lengths: tuple[int, ...] | None = None  # valid keys per batch item (key padding), or None
    document_lengths: tuple[int, ...] | None = None  # packed documents (self attention), or None
    causal_alignment: str = "upper_left"  # or "lower_right": where the causal diagonal sits when L != S
    # Decoding: keys from this index on are the new tokens, never padding (key_lengths are the cache's lengths).
    new_keys_from: int | None = None
    query_offset: int = 0  # lower right: S - L, query i sits at key position i + offset for every rule (causal,
    # and the pattern's window); 0 for upper left

    @classmethod
    def of_saved(cls, section: dict[str, Any], cache_len: int | None = None) -> MaskSpec:
        """The masks of a saved config's `mask:` section (a results.json), enough to name them: padding and
        documents given as fractions keep one entry per fraction."""
        padding, documents = section.get("key_padding"), section.get("documents")

        def entries(given: dict[str, Any] | None) -> tuple[Any, ...] | None:
            return None if not given else tuple(given.get("lengths") or given.get("fractions") or ())

        decoding = cache_len is not None
        return cls(bool(section.get("causal")), section.get("prefix") or 0, entries(padding), entries(documents),
                   section.get("causal_alignment") or ("lower_right" if decoding else "upper_left"), cache_len)

    @property
    def plain_causal(self) -> bool:
        """Causal with no prefix, on the main diagonal: every allowed key is at or before its query
        (one-sided bands, is_causal)."""
        return self.causal and not self.prefix and not self.query_offset

    @property
    def only_causal_and_padding(self) -> bool:
        """No prefix and no documents: what nn.MultiheadAttention's (L, S) and key-padding masks can say."""
        return not self.prefix and self.document_lengths is None

    def words(self) -> list[str]:
        """Each rule beside the pattern, as a clause of the exact rule: "and j <= i (causal)"."""
        clauses = []
        offset = self.query_offset
        diagonal = f"j <= i + {offset}" if offset > 0 else f"j <= i - {-offset}" if offset < 0 else "j <= i"
        aligned = ", aligned lower right: query i at key position i + S - L" if self.causal_alignment == "lower_right" else ""
        if self.causal and self.prefix:
            clauses.append(f"and ({diagonal} or j < {self.prefix}) (causal{aligned}, prefix LM)")
        elif self.causal:
            clauses.append(f"and {diagonal} (causal{aligned})")
        elif self.query_offset:
            clauses.append(f"(query i at key position i + {self.query_offset}: after the cache)")
        if self.document_lengths is not None:
            clauses.append(f"and i, j in the same document ({len(self.document_lengths)} packed documents)")
        if self.key_lengths is not None and self.new_keys_from is not None:
            clauses.append(f"and (j < the batch item's cache length or j >= {self.new_keys_from}: the new tokens)")
        elif self.key_lengths is not None:
            clauses.append("and j < the batch item's key_padding length")
        return clauses

    def names(self, source_len: int, batch: int | None = None, seq_len: int | None = None) -> list[str]:
        """Each mask that removes pairs, briefly: "causal", "key padding (3 of 10 keys valid)". With seq_len
        different from source_len, causal says where its diagonal sits (upper left or lower right)."""
        names = []
        if self.causal:
            name = f"causal with a {self.prefix}-key prefix" if self.prefix else "causal"
            if self.causal_alignment == "lower_right":
                name += " (aligned lower right: query i at position S - L + i)"
            elif seq_len is not None and seq_len != source_len:
                name += " (aligned upper left: query i sees keys j <= i)"
            names.append(name)
        if self.document_lengths is not None:
            names.append(f"{len(self.document_lengths)} packed documents")
        if self.key_lengths is not None and self.new_keys_from is not None:
            names.append(f"cache lengths ({self.key_lengths[batch]} of {self.new_keys_from} cached keys valid)"
                         if batch is not None else "cache lengths per item")
        elif self.key_lengths is not None:
            names.append(f"key padding ({self.key_lengths[batch]} of {source_len} keys valid)" if batch is not None
                         else "key padding")
        return names


class MaskForm(NamedTuple):
    """How the mask reaches a kernel, decided once per experiment: the cheapest form that says it all."""

    masked: bool  # some pair is not allowed; False: no mask is passed at all
    is_causal: bool  # exactly causal, aligned upper left, nothing else: SDPA's is_causal says it
    native: bool  # no pattern, prefix or documents: nn.MultiheadAttention's own causal and padding masks say it

    @property
    def needs_dense(self) -> bool:
        """Only a dense (N, 1 or H, L, S) mask says it (for kernels without a rule or block mask)."""
        return self.masked and not self.is_causal

    @classmethod
    def of(cls, mask: MaskSpec, has_pattern: bool) -> MaskForm:
        plain = not has_pattern and mask.only_causal_and_padding
        return cls(
            masked=has_pattern or mask.causal or mask.key_lengths is not None or mask.document_lengths is not None,
            is_causal=plain and mask.plain_causal and mask.key_lengths is None,  # SDPA's is_causal: upper left only
            native=plain,
        )

    @classmethod
    def given(cls) -> MaskForm:
        """A mask handed over as a tensor (Workload.with_mask): nothing but the dense form says it."""
        return cls(masked=True, is_causal=False, native=False)
