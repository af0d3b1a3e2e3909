"""Your own rule: a FlexAttention mask_mod named in the config, such as attention-gym's masks.

    sparse:
      pattern: custom
      mask_mod: attn_gym.masks:generate_dilated_sliding_window   # module:attribute or path/to/file.py:attribute
      mask_mod_args: {window_size: 128, dilation: 2}             # given: mask_mod(**args) is the rule

The rule has FlexAttention's signature, (b, h, q_idx, kv_idx) -> bool tensor on
broadcasting integer tensors, so it may differ per batch item or head. This
imports and runs the code the config names (as Hydra's `_target_` does): only
run configs you trust. `mha validate` checks the reference's form without
importing it; `mha run` imports it, calls it once on a few positions, and makes
every problem (no module, no attribute, wrong signature, wrong result) a config
error on `sparse.mask_mod`. blocked runs it with the generic block-sparse plan.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from ..config_fields import Section
from ..errors import ConfigError, Problem

if TYPE_CHECKING:
    from ..block_plan import BlockPlan
    from ..config import Config
    from .base import PatternRule

NAME = "custom"
SECTION = "sparse"
RUNS_USER_CODE = True  # the memory guard of `mha validate` does not import it

# module.path:attribute or some/file.py:attribute (the attribute may be dotted: module:Class.method).
_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
REFERENCE_PATTERN = rf"^(?:{_IDENTIFIER}(?:\.{_IDENTIFIER})*|[^:\x00]+\.py):{_IDENTIFIER}(?:\.{_IDENTIFIER})*$"


class CustomConfig(Section):
    pattern: Literal["custom"] = "custom"
    # Where the rule lives: "module.path:attribute" or "path/to/file.py:attribute" (relative to the working folder).
    mask_mod: str = Field(pattern=REFERENCE_PATTERN, max_length=500, description=(
        "a reference to a mask_mod: write module.path:attribute or path/to/file.py:attribute"))
    # When given, mask_mod(**mask_mod_args) returns the rule (attention-gym's generate_* functions).
    mask_mod_args: dict[str, Any] | None = None


Settings = CustomConfig
FIELD = "sparse.mask_mod"


def _problem(message: str) -> ConfigError:
    return ConfigError([Problem("config", FIELD, message)])


def _settings(config: Config) -> CustomConfig:
    settings = config.sparse_settings
    assert isinstance(settings, CustomConfig)  # the registry only hands this module custom configs
    return settings


def _import_target(reference: str) -> Any:
    """The object a reference names; a ConfigError saying what is missing otherwise."""
    where, _, attribute = reference.rpartition(":")
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise _problem(f"{reference!r}: no file {where} (a path is read from the working folder, {Path.cwd()})")
        name = "mha_mask_mod_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise _problem(f"{reference!r}: {where} cannot be loaded as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # so that dataclasses and pickling inside it work
        try:
            spec.loader.exec_module(module)
        except Exception as error:  # noqa: BLE001 - the user's file: any failure is theirs to read
            del sys.modules[name]
            raise _problem(f"{reference!r}: importing {where} failed: {type(error).__name__}: {error}") from None
    else:
        try:
            module = importlib.import_module(where)
        except ModuleNotFoundError as error:
            raise _problem(f"{reference!r}: no module named {error.name!r} (is it installed in this environment?)") from None
        except Exception as error:  # noqa: BLE001
            raise _problem(f"{reference!r}: importing {where} failed: {type(error).__name__}: {error}") from None
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise _problem(f"{reference!r}: {where} has no attribute {attribute!r}")
        target = getattr(target, part)
    return target


def _takes_four_arguments(function: Any) -> bool:
    try:
        inspect.signature(function).bind(0, 0, 0, 0)
    except TypeError:
        return False
    except ValueError:  # no signature to read (a builtin): the probe call decides
        return True
    return True


def load_mask_mod(reference: str, args: dict[str, Any] | None) -> PatternRule:
    """The rule a reference (and its arguments) names, checked to be callable with (b, h, q_idx, kv_idx)."""
    target = _import_target(reference)
    if args is not None:
        if not callable(target):
            raise _problem(f"{reference!r} is a {type(target).__name__}, not a function to call with mask_mod_args")
        try:
            target = target(**args)
        except Exception as error:  # noqa: BLE001
            raise _problem(f"calling {reference}(**mask_mod_args) failed: {type(error).__name__}: {error}") from None
    if not callable(target):
        what = f"{reference}(**mask_mod_args) returned" if args is not None else f"{reference!r} is"
        raise _problem(f"{what} a {type(target).__name__}, not a mask_mod function (b, h, q_idx, kv_idx) -> bool tensor")
    if not _takes_four_arguments(target):
        hint = " (is it a generator that needs mask_mod_args?)" if args is None else ""
        raise _problem(f"the rule must take (b, h, q_idx, kv_idx), FlexAttention's mask_mod signature{hint}")
    return target


def probe(rule: PatternRule, batch_size: int, num_heads: int, length: int, source: int) -> tuple[bool, bool]:
    """Call the rule once on the first and last positions of every batch item and head: a ConfigError
    unless it returns a bool tensor of the broadcast shape; else (differs by batch item, by head),
    read from which of b's and h's dimensions its result kept."""
    import torch

    def ends(total: int) -> torch.Tensor:
        return torch.unique(torch.cat([torch.arange(min(total, 8)), torch.arange(max(0, total - 8), total)]))

    q, kv = ends(length), ends(source)
    expected = (batch_size, num_heads, len(q), len(kv))
    b = torch.arange(batch_size)[:, None, None, None]
    h = torch.arange(num_heads)[None, :, None, None]
    try:
        with torch.no_grad():
            result = rule(b, h, q[None, None, :, None], kv[None, None, None, :])
    except Exception as error:  # noqa: BLE001
        raise _problem(f"calling the rule on index tensors failed: {type(error).__name__}: {error}") from None
    if not isinstance(result, torch.Tensor):
        raise _problem(f"the rule returned a {type(result).__name__}, not a bool tensor")
    if result.dtype != torch.bool:
        raise _problem(f"the rule returned a {result.dtype} tensor; a mask_mod returns bool (True = may attend)")
    try:
        shape = torch.broadcast_shapes(result.shape, expected)
    except RuntimeError:
        shape = None
    if shape != expected:
        raise _problem(f"the rule returned shape {tuple(result.shape)} for index tensors broadcasting to {expected}")
    padded = (1,) * (4 - result.dim()) + tuple(result.shape)
    return padded[0] > 1, padded[1] > 1


_loaded: dict[str, tuple[PatternRule, tuple[bool, bool]]] = {}


def _rule_and_variation(config: Config) -> tuple[PatternRule, tuple[bool, bool]]:
    settings = _settings(config)
    key = json.dumps([settings.mask_mod, settings.mask_mod_args, str(Path.cwd()), config.batch_size,
                      config.num_heads, config.seq_len, config.source_length], sort_keys=True, default=str)
    if key not in _loaded:
        loaded = load_mask_mod(settings.mask_mod, settings.mask_mod_args)
        _loaded[key] = (loaded, probe(loaded, config.batch_size, config.num_heads, config.seq_len, config.source_length))
    return _loaded[key]


def rule(config: Config) -> PatternRule:
    return _rule_and_variation(config)[0]


def varies(config: Config) -> tuple[bool, bool]:
    return _rule_and_variation(config)[1]


def _call(settings: CustomConfig) -> str:
    if settings.mask_mod_args is None:
        return settings.mask_mod
    args = ", ".join(f"{key}={value!r}" for key, value in settings.mask_mod_args.items())
    return f"{settings.mask_mod}({args})"


def words(config: Config) -> str:
    return f"query i attends key j when the mask_mod {_call(_settings(config))} allows (b, h, i, j)"


def brief(settings: CustomConfig) -> str:
    return _call(settings)


def problems(config: Config) -> list[tuple[str, str]]:
    return []  # the rule is imported and checked by `mha run`, not by validation


def plan(config: Config) -> BlockPlan:
    from ..block_plan import generic_plan

    return generic_plan(config)


def keys_per_query(config: Config) -> int:
    """Exact for the generic plan: its block times the most key blocks a query block touches."""
    from ..block_plan import generic_blocks

    block, touched = generic_blocks(config)
    return block * max(1, int(touched.sum(dim=1).max()))


def extra_blocked_elements(config: Config) -> int:
    return 0
