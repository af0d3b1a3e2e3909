"""How every bench script ends: one line per target, and an exit code saying whether all were met."""

from __future__ import annotations


def report(verdicts: list[tuple[str, bool]]) -> int:
    """Print each (what was measured, met?) and return 0 when every target was met, else 1."""
    print("\nTargets:")
    for text, ok in verdicts:
        print(f"  {'ok    ' if ok else 'MISSED'}  {text}")
    return 0 if all(ok for _, ok in verdicts) else 1
