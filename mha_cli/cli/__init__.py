"""The `mha` command. Each subcommand lives in its own module and calls one library function.

Nothing imported at this level imports torch: `mha --help`, `mha validate`
and shell completion stay fast. Commands import torch inside their bodies.
"""


import os
from typing import Annotated

import typer

from .. import __version__
from .compare import compare
from .env import env
from .examples import examples_app
from .explain import explain
from .help_format import PlainHelpCommand, PlainHelpGroup
from .mask import mask
from .merge import merge
from .plot import plot_app
from .run import run
from .sweep import sweep
from .validate import validate

app = typer.Typer(
    name="mha",
    help=(
        "Experiment with multi-head attention in PyTorch: see the shapes nn.MultiheadAttention returns, "
        "check several implementations against a float64 reference, and time them.\n\n"
        "Start with:  mha run            (the built-in quickstart config)\n\n"
        "Then:        mha examples       (the example configs that come with mha; "
        "run one as mha run example:NAME)"
    ),
    no_args_is_help=True,
    add_completion=True,
    cls=PlainHelpGroup,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mha {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", "-V", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full traceback of an error (also: MHA_DEBUG=1).")
    ] = False,
) -> None:
    if debug:
        os.environ["MHA_DEBUG"] = "1"  # read by the error handler; inherited by --isolate children


app.command(cls=PlainHelpCommand)(run)
app.command(cls=PlainHelpCommand)(validate)
app.command(cls=PlainHelpCommand)(explain)
app.command(cls=PlainHelpCommand)(mask)
app.command(cls=PlainHelpCommand)(sweep)
app.command(cls=PlainHelpCommand)(merge)
app.command(cls=PlainHelpCommand)(compare)
app.add_typer(plot_app)
app.add_typer(examples_app)
app.command(cls=PlainHelpCommand)(env)

def main() -> None:
    from ..signals import install_handlers

    install_handlers()
    # pydantic looks for plugins in every installed distribution on its first model build
    # (~20 ms, a tenth of `mha validate`); none applies to a command-line tool's own config.
    # The command only: importing mha_cli as a library leaves pydantic as it is.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    app()
