"""What a Python caller hands the public functions, checked before anything runs.

A wrong type is a TypeError and a wrong value a ValueError, each naming the
parameter and what would be right, instead of an AttributeError from deep
inside. Both are also UsageErrors (MhaError), so `except mha_cli.MhaError`
catches them with every other error a user can cause. Nothing here imports torch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import UsageError


class ArgumentValueError(UsageError, ValueError):
    """A public function was given a value it cannot use; the message names the parameter."""


class ArgumentTypeError(UsageError, TypeError):
    """A public function was given the wrong type; the message names the parameter."""


def a_type(value: Any) -> str:
    """'a str', 'an int', 'None': how a message names what it got."""
    if value is None:
        return "None"
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def check_path(name: str, value: Any, *, optional: bool = True) -> Path | None:
    """A str or any path-like (pathlib.Path, os.DirEntry...) as a Path; None stays None when optional."""
    if value is None and optional:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise ArgumentTypeError(f"{name}: expected a str or a path-like such as pathlib.Path, got {a_type(value)}")
    text = os.fsdecode(os.fspath(value))
    if not text:
        raise ArgumentValueError(f"{name}: the path is empty; give a folder name such as 'outputs/my-run'"
                                 if name == "output_dir" else f"{name}: the path is empty")
    return Path(text)


def check_flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ArgumentTypeError(f"{name}: expected True or False, got {a_type(value)} ({value!r})")
    return value


def check_memory_limit(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentTypeError(f"memory_limit: expected a number of bytes (an int) or None, got {a_type(value)}")
    if value <= 0:
        raise ArgumentValueError(f"memory_limit: must be a positive number of bytes, got {value}")
    return value


def check_callable(name: str, value: Any, what: str) -> None:
    if not callable(value):
        raise ArgumentTypeError(f"{name}: expected {what}, got {a_type(value)}")


def check_overrides(overrides: Any) -> list[str]:
    """load_config's overrides: a list (or tuple) of 'key=value' strings; a bare str is refused, since
    iterating it would make one override of every character."""
    if isinstance(overrides, str):
        raise ArgumentTypeError(
            f"overrides: expected a list of 'key=value' strings, got a str; put it in a list: [{overrides!r}]"
        )
    if isinstance(overrides, (bytes, Mapping)) or not isinstance(overrides, Sequence):
        raise ArgumentTypeError(
            f"overrides: expected a list of 'key=value' strings such as ['num_heads=4'], got {a_type(overrides)}"
        )
    for index, item in enumerate(overrides):
        if not isinstance(item, str):
            raise ArgumentTypeError(f"overrides[{index}]: expected a 'key=value' str such as 'num_heads=4', got {a_type(item)}")
    return list(overrides)


def check_grid(grid: Any, has_sweep_section: bool) -> dict[str, list[Any]]:
    """run_sweep's grid: a mapping of config field path -> a list of values, each list non-empty and
    without repeats. Whether each path is a config field and each value fits it is checked by the
    sweep's own axis check (the one `mha sweep` uses)."""
    if not isinstance(grid, Mapping):
        raise ArgumentTypeError(
            f"grid: expected a dict of config field path -> list of values, such as {{'num_heads': [1, 2, 4]}}, "
            f"got {a_type(grid)}"
        )
    axes: dict[str, list[Any]] = {}
    for path, values in grid.items():
        if not isinstance(path, str):
            raise ArgumentTypeError(f"grid: each key is a config field path such as 'num_heads', got {a_type(path)} ({path!r})")
        if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Sequence):
            raise ArgumentTypeError(
                f"grid[{path!r}]: expected a list of values such as [1, 2, 4], got {a_type(values)} ({values!r})"
            )
        values = list(values)
        if not values:
            raise ArgumentValueError(f"grid[{path!r}]: the axis has no values; give at least one, such as [1, 2, 4]")
        seen: set[str] = set()
        for value in values:
            if repr(value) in seen:
                raise ArgumentValueError(f"grid[{path!r}]: {value!r} is listed twice in {values}")
            seen.add(repr(value))
        axes[path] = values
    if not axes and not has_sweep_section:
        raise ArgumentValueError(
            "grid: nothing to sweep; give at least one axis, such as {'num_heads': [1, 2, 4]}, "
            "or a config with a `sweep:` section"
        )
    return axes


def as_argument_error(name: str, error: UsageError) -> ArgumentValueError:
    """A check written for the command line (a UsageError), as a ValueError naming the Python parameter."""
    return ArgumentValueError(f"{name}: {error.message}")
