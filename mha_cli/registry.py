"""Which implementation names exist: the built-in ones, the config's own `implementations:`, and
those installed packages offer through the entry-point group `mha.implementations`.

Only names are read here (no torch, and no user code is imported): the config
validates `impls` against them and `mha env` lists them. attention/ builds them.
"""

from __future__ import annotations

from typing import NamedTuple

# name -> module under mha_cli.attention; the order is the order of the tables.
BUILTIN_IMPLS: dict[str, str] = {
    "torch": "torch_mha",
    "manual": "manual",
    "sdpa": "sdpa",
    "blocked": "blocked",
    "flex": "flex",
}
ENTRY_POINT_GROUP = "mha.implementations"


class Offered(NamedTuple):
    """An implementation an installed distribution offers."""

    name: str
    reference: str  # module:attribute, what the entry point names
    distribution: str  # who offers it, e.g. "their-package 1.2"


# What `impls` can name: as config.ImplName says (no torch or pydantic here to share it).
USABLE_NAME = r"[A-Za-z][A-Za-z0-9_-]*"


def installed() -> dict[str, Offered]:
    """Implementations offered by installed distributions, by name (read from their metadata; nothing imported).

    A name that shadows a built-in, or that impls could not name, is left out (unusable() lists them)."""
    return {name: offer for name, offer in _entry_points().items() if why_unusable(name) is None}


def why_unusable(name: str) -> str | None:
    """Why an entry point cannot be named in impls, or None."""
    import re

    if name in BUILTIN_IMPLS:
        return "a built-in has that name"
    if not re.fullmatch(USABLE_NAME, name) or len(name) > 60:
        return "impls cannot name it (letters, digits, '_' and '-', starting with a letter)"
    return None


def unusable() -> list[tuple[Offered, str]]:
    """Entry points that are never used, and why."""
    return [(offer, why) for name, offer in _entry_points().items() if (why := why_unusable(name)) is not None]


def _entry_points() -> dict[str, Offered]:
    from importlib.metadata import entry_points  # only when a name is not built in: every distribution is read

    found = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(point, "dist", None)
        owner = f"{dist.metadata['Name']} {dist.version}" if dist is not None else "an installed distribution"
        found.setdefault(point.name, Offered(point.name, point.value, owner))
    return found
