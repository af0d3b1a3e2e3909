"""Importing code a config names: `module.path:attribute` or `path/to/file.py:attribute`.

Used for your own mask_mod (sparse.mask_mod) and your own implementations
(implementations.NAME). This imports and runs that code, as Hydra's `_target_`
does: only run configs you trust. Every problem (no module, no file, no
attribute, an import that raises) is a ConfigError on the field that named it,
so the CLI exits 2 before anything is measured. No torch here.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any

from .errors import ConfigError, Problem

# module.path:attribute or some/file.py:attribute (the attribute may be dotted: module:Class.method).
_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
REFERENCE_PATTERN = rf"^(?:{_IDENTIFIER}(?:\.{_IDENTIFIER})*|[^:\x00]+\.py):{_IDENTIFIER}(?:\.{_IDENTIFIER})*$"


def config_problem(field: str, message: str) -> ConfigError:
    """A problem with code the config names, located at the field that names it."""
    return ConfigError([Problem("config", field, message)])


def _load_file(where: str, reference: str, field: str) -> Any:
    path = Path(where)
    if not path.is_file():
        raise config_problem(field, f"{reference!r}: no file {where} (a path is read from the working folder, {Path.cwd()})")
    name = "mha_user_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise config_problem(field, f"{reference!r}: {where} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # so that dataclasses and pickling inside it work
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # noqa: BLE001 - the user's file: any failure is theirs to read
        del sys.modules[name]
        raise config_problem(field, f"{reference!r}: importing {where} failed: {type(error).__name__}: {error}") from None
    return module


def import_target(reference: str, field: str) -> Any:
    """The object a reference names; a ConfigError on `field` saying what is missing otherwise."""
    where, _, attribute = reference.rpartition(":")
    if where.endswith(".py"):
        module = _load_file(where, reference, field)
    else:
        try:
            module = importlib.import_module(where)
        except ModuleNotFoundError as error:
            raise config_problem(field, f"{reference!r}: no module named {error.name!r} (is it installed in this environment?)") from None
        except Exception as error:  # noqa: BLE001
            raise config_problem(field, f"{reference!r}: importing {where} failed: {type(error).__name__}: {error}") from None
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise config_problem(field, f"{reference!r}: {where} has no attribute {attribute!r}")
        target = getattr(target, part)
    return target


def reference_of(value: Any) -> str:
    """How code is written down: its reference, or module:qualified name for an object given from Python."""
    if isinstance(value, str):
        return value
    target = value.function if hasattr(value, "function") else value  # a @factory function keeps its own name
    return f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', type(target).__name__)}"


def takes_positional(function: Any, count: int) -> bool:
    """Whether `function` can be called with `count` positional arguments (True when Python cannot tell)."""
    try:
        inspect.signature(function).bind(*range(count))
    except TypeError:
        return False
    except ValueError:  # no signature to read (a builtin): the first call decides
        return True
    return True
