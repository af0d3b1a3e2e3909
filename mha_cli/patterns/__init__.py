"""Attention patterns: one module per pattern, and the registry that maps names to them.

Adding a pattern is adding a module with a Pattern subclass (patterns/base.py
says what it provides) and one line in PATTERNS. Outside this package, code
asks the registry; only the config names the `local:` section (the one pattern
with a section of its own, `variant: local`). Causal masking, prefix, documents
and key padding apply on top of every pattern, in masks.pair_rule.
"""

from __future__ import annotations

from typing import Any

from .base import Pattern, PatternRule
from .bigbird import BigBird
from .custom import Custom
from .local import Local
from .strided import Strided

PATTERNS: dict[str, type[Pattern]] = {pattern.NAME: pattern for pattern in (Local, BigBird, Strided, Custom)}
# The settings models of the patterns chosen with `variant: sparse` and `sparse.pattern: NAME`, in the docs' order.
SPARSE_SETTINGS: dict[str, Any] = {name: p.Settings for name, p in PATTERNS.items() if p.SECTION == "sparse"}
DEFAULT_SPARSE_PATTERN = "bigbird"  # `sparse:` without `pattern:`

__all__ = ["DEFAULT_SPARSE_PATTERN", "PATTERNS", "SPARSE_SETTINGS", "Pattern", "PatternRule", "brief", "pattern_class"]


def pattern_class(variant: str, sparse_pattern: str | None = None) -> type[Pattern] | None:
    """The pattern a variant runs: None for full attention, local's, or the sparse section's."""
    if variant == "full":
        return None
    if variant == "local":
        return PATTERNS["local"]
    return PATTERNS[sparse_pattern or DEFAULT_SPARSE_PATTERN]


def brief(variant: str, section: dict[str, Any] | None) -> str:
    """The variant and its settings from a saved config's dict: "local (window 128)"."""
    pattern = pattern_class(variant, (section or {}).get("pattern"))
    if pattern is None:
        return "full"
    words = pattern.brief(pattern.Settings.model_validate(section or {}))
    return f"{variant} ({words})" if variant == "local" else f"sparse {pattern.NAME} ({words})"
