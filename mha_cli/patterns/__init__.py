"""Attention patterns: one module per pattern, and the registry that maps names to modules.

Adding a pattern is adding a module with the names patterns/base.py lists and
one line in REGISTRY; no other file names a pattern. Causal masking and key
padding apply on top of every pattern, in masks.pair_rule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import bigbird, custom, local, strided
from .base import PatternModule, PatternRule

if TYPE_CHECKING:
    from ..config import Config

REGISTRY: dict[str, PatternModule] = {module.NAME: module for module in (local, bigbird, strided, custom)}  # type: ignore[misc]
# The patterns chosen with `variant: sparse` and `sparse.pattern: NAME`, in the order the docs list them.
SPARSE_PATTERNS: dict[str, Any] = {name: m.Settings for name, m in REGISTRY.items() if m.SECTION == "sparse"}
DEFAULT_SPARSE_PATTERN = "bigbird"  # `sparse:` without `pattern:`

__all__ = ["DEFAULT_SPARSE_PATTERN", "REGISTRY", "SPARSE_PATTERNS", "PatternModule", "PatternRule", "describe", "pattern_of", "pattern_rule"]


def pattern_of(config: Config) -> PatternModule | None:
    """The config's pattern module, or None for full attention (every pair allowed)."""
    if config.variant == "full":
        return None
    if config.variant == "local":
        return REGISTRY["local"]
    return REGISTRY[config.sparse_settings.pattern]


def pattern_rule(config: Config) -> PatternRule | None:
    """The config's pattern rule, or None for full attention."""
    pattern = pattern_of(config)
    return pattern.rule(config) if pattern is not None else None


def describe(config: Config) -> str:
    """The exact rule in words, causal and padding included (shown by `mha mask` and in docs/variants.md)."""
    pattern = pattern_of(config)
    words = pattern.words(config) if pattern is not None else "every query attends every key"
    extras = []
    if config.mask.causal and config.mask.prefix:
        extras.append(f"and (j <= i or j < {config.mask.prefix}) (causal, prefix LM)")
    elif config.mask.causal:
        extras.append("and j <= i (causal)")
    if config.document_lengths is not None:
        extras.append(f"and i, j in the same document ({len(config.document_lengths)} packed documents)")
    if config.mask.key_padding is not None:
        extras.append("and j < the batch item's key_padding length")
    return " ".join([words, *extras])


def brief(variant: str, section: dict[str, Any] | None) -> str:
    """The variant and its settings from a saved config's dict: "local (window 128)"."""
    if variant == "full":
        return "full"
    if variant == "local":
        return f"local ({local.brief(local.Settings.model_validate(section or {}))})"
    section = section or {}
    module = REGISTRY[section.get("pattern", DEFAULT_SPARSE_PATTERN)]
    return f"sparse {module.NAME} ({module.brief(module.Settings.model_validate(section))})"
