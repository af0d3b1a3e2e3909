"""mha: experiments with multi-head attention in PyTorch.

The library comes first and the CLI sits on top. In a notebook or script:

    >>> import mha_cli
    >>> config = mha_cli.load_config(None, ["num_heads=4", "timing.min_run_time=0.05"])
    >>> report = mha_cli.run_experiment(config)
    >>> summary = mha_cli.run_sweep(config, {"seq_len": [16, 64]})
    >>> steps = mha_cli.explain(config)

Every name below is imported on first use (a module __getattr__), so `import
mha_cli`, `mha --help` and `mha validate` never import torch; see
docs/python-api.md for a whole session.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "load_config": "mha_cli.config",
    "Config": "mha_cli.config",
    "ConfigError": "mha_cli.errors",
    "MhaError": "mha_cli.errors",
    "run_experiment": "mha_cli.runner",
    "RunReport": "mha_cli.results",
    "Result": "mha_cli.results",
    "run_sweep": "mha_cli.sweep.runner",
    "SweepSummary": "mha_cli.sweep.summary",
    "explain": "mha_cli.explanation",
    "Explanation": "mha_cli.explanation",
    # Your own implementation: the contract (implementation.py, docs/your-implementation.md)
    "Unsupported": "mha_cli.errors",
    "factory": "mha_cli.implementation",
    "AttentionSpec": "mha_cli.implementation",
    "AttentionMask": "mha_cli.implementation",
    "Experiment": "mha_cli.experiment",
}
__all__ = [
    "__version__", "load_config", "Config", "ConfigError", "MhaError", "run_experiment", "RunReport", "Result",
    "run_sweep", "SweepSummary", "explain", "Explanation", "Unsupported", "factory", "AttentionSpec", "AttentionMask",
    "Experiment",
]

if TYPE_CHECKING:  # for type checkers and editors; at run time the names load lazily
    from .config import Config, load_config
    from .errors import ConfigError, MhaError, Unsupported
    from .experiment import Experiment
    from .explanation import Explanation, explain
    from .implementation import AttentionMask, AttentionSpec, factory
    from .results import Result, RunReport
    from .runner import run_experiment
    from .sweep.runner import run_sweep
    from .sweep.summary import SweepSummary


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mha_cli' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
