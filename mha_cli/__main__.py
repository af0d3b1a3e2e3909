"""`python -m mha_cli` is the same as the `mha` command."""

from .cli import main

main()
