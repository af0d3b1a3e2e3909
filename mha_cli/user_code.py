"""Importing code a config names: `module.path:attribute` or `path/to/file.py:attribute`.

Used for your own mask_mod (sparse.mask_mod) and your own implementations
(implementations.NAME). This imports and runs that code, as Hydra's `_target_`
does: only run configs you trust. A file is run as a script is: its folder goes
on sys.path, so it may import the modules beside it. A module is imported from
the environment (the working folder is not on the path: name a file there as
file.py:attribute). Every problem (no module, no file, no attribute, an import
that raises or calls sys.exit) is a ConfigError on the field that named it, so
the CLI exits 2 before anything is measured. No torch here.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from .errors import ConfigError, Problem

# module.path:attribute or some/file.py:attribute (the attribute may be dotted: module:Class.method).
_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
REFERENCE_PATTERN = rf"^(?:{_IDENTIFIER}(?:\.{_IDENTIFIER})*|[^:\x00]+\.py):{_IDENTIFIER}(?:\.{_IDENTIFIER})*$"


def config_problem(field: str, message: str, source: str = "config") -> ConfigError:
    """A problem with code the config names, located at the field that names it."""
    return ConfigError([Problem(source, field, message)])


def a_kind(value: object) -> str:
    """"an int", "a list": what a value is, for messages."""
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def failure(error: BaseException) -> str:
    """How a failure in code the config names reads: an exception, or sys.exit (which must not end mha)."""
    if isinstance(error, SystemExit):
        return f"it called sys.exit({error.code!r})"
    return f"{type(error).__name__}: {error}"


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
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)  # as for a script: the modules beside it import
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as error:  # noqa: BLE001 - the user's file: any failure is theirs to read
        del sys.modules[name]
        raise config_problem(field, f"{reference!r}: importing {where} failed: {failure(error)}") from None
    return module


def import_target(reference: str, field: str, source: str = "config") -> Any:
    """The object a reference names; a ConfigError on `field` (in `source`) saying what is missing otherwise."""
    try:
        return _import(reference, field)
    except ConfigError as error:
        if source == "config":
            raise
        raise ConfigError([replace(problem, source=source) for problem in error.problems]) from None


def _import(reference: str, field: str) -> Any:
    where, _, attribute = reference.rpartition(":")
    if where.endswith(".py"):
        module = _load_file(where, reference, field)
    else:
        try:
            module = importlib.import_module(where)
        except ModuleNotFoundError as error:
            beside = Path(where.replace(".", "/") + ".py")
            hint = (f"; {beside} is here: write {beside}:{attribute} to load the file" if beside.is_file()
                    else " (is it installed in this environment?)")
            raise config_problem(field, f"{reference!r}: no module named {error.name!r}{hint}") from None
        except (Exception, SystemExit) as error:  # noqa: BLE001
            raise config_problem(field, f"{reference!r}: importing {where} failed: {failure(error)}") from None
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise config_problem(field, f"{reference!r}: {where} has no attribute {attribute!r}")
        target = getattr(target, part)
    return target


def import_function(reference: str, args: dict[str, Any] | None, field: str, args_name: str, what: str,
                    args_field: str | None = None) -> Any:
    """The function a reference names, or, with `args`, what calling it with them returns (a generator such as
    attention-gym's generate_*), checked to be callable: a sparse.mask_mod, a score_mod.function. Every problem is a
    ConfigError on `field` (calling it with its arguments: on `args_field`, when they have a field of their own);
    `args_name` is how its arguments are written in messages, `what` what it should be ("a mask_mod function ...")."""
    target = import_target(reference, field)
    if args is not None:
        if not callable(target):
            raise config_problem(field, f"{reference!r} is {a_kind(target)}, not a function to call with {args_name}")
        try:
            target = target(**args)
        except (Exception, SystemExit) as error:  # noqa: BLE001 - the user's code: name it, do not crash
            raise config_problem(args_field or field, f"calling {reference}(**{args_name}) failed: {failure(error)}") from None
    if not callable(target):
        given = f"{reference}(**{args_name}) returned" if args is not None else f"{reference!r} is"
        raise config_problem(field, f"{given} {a_kind(target)}, not {what}")
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
