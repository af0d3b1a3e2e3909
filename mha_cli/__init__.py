"""mha: experiments with multi-head attention in PyTorch.

The library comes first and the CLI sits on top: `mha_cli.config.load_config`
reads a YAML config, `mha_cli.runner.run_experiment` (which imports torch)
runs it. Nothing is imported here, so `mha --help` starts fast.
"""

__version__ = "0.1.0"
