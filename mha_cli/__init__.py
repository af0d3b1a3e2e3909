"""mha: experiments with multi-head attention in PyTorch.

The library comes first and the CLI sits on top: `load_config` reads a YAML
config, `run_experiment` (in `mha_cli.runner`, which imports torch) runs it.
"""

__version__ = "0.1.0"

from .config import Config, load_config  # noqa: E402  (no torch: safe for --help)

__all__ = ["Config", "load_config", "__version__"]
