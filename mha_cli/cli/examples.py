"""`mha examples`: the example configs that come with mha, listed, and copied into the working folder."""


import json
from pathlib import Path
from typing import Annotated

import typer

from ..errors import UsageError
from .common import JsonOption, handle_errors, stderr_console, stdout_console
from .help_format import PlainHelpCommand, PlainHelpGroup

examples_app = typer.Typer(
    name="examples",
    help="The example configs that come with mha: list them (a line each), or copy them into ./configs/ to edit. "
    "Run one directly as example:NAME, e.g. mha run example:local_window.",
    invoke_without_command=True,
    cls=PlainHelpGroup,
)


@examples_app.callback()
def _examples(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:  # `mha examples` alone lists them
        ctx.invoke(list_examples)


@examples_app.command("list", cls=PlainHelpCommand)
@handle_errors
def list_examples(as_json: JsonOption = False) -> None:
    """List the shipped examples, a line each: the name to run them by and what each shows.

    Examples:

      mha examples list

      mha examples list --json
    """
    from ..shipped_examples import PREFIX, examples

    found = examples()
    console = stdout_console()
    if as_json:
        document = [{"name": e.name, "run_as": f"{PREFIX}{e.name}", "summary": e.summary, "files": list(e.files)}
                    for e in found]
        console.file.write(json.dumps(document, indent=2) + "\n")
        return
    # A line each: name, then what it shows, cut with an ellipsis to a terminal's width (never in a pipe).
    width = max((len(e.name) for e in found), default=4)
    limit = console.width if console.is_terminal else None
    lines = ["Shipped examples: mha run example:NAME, or mha examples copy NAME to edit"]
    for example in found:
        line = f"{example.name:<{width}}  {example.summary}"
        if limit is not None and len(line) > limit:
            line = line[: limit - 1].rstrip() + "…"
        lines.append(line)
    console.file.write("\n".join(lines) + "\n")


@examples_app.command("copy", cls=PlainHelpCommand)
@handle_errors
def copy_examples(
    names: Annotated[
        list[str] | None,
        typer.Argument(metavar="NAME", help="Examples to copy (see `mha examples`).", show_default=False),
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="Copy every example.")] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace copies you changed (refused without it; nothing is copied then).")
    ] = False,
) -> None:
    """Copy examples into configs/ in the working folder, with the code files they name, to read and edit.

    The copies keep the repository's layout, so the paths inside them
    (configs/mask_mods.py:...) and every command in the docs work from this
    folder. A file already there that differs is not replaced without --overwrite.

    Examples:

      mha examples copy local_window

      mha examples copy --all

      mha examples copy my_attention --overwrite
    """
    from ..shipped_examples import COPY_FOLDER, examples, find

    if every and names:
        raise UsageError("give example names or --all, not both")
    if not every and not names:
        raise UsageError("name the examples to copy (e.g. mha examples copy local_window) or give --all; "
                         "`mha examples` lists them")
    from ..shipped_examples import copy

    chosen = [e.name for e in examples()] if every else [find(name).name for name in names or []]
    written = copy(chosen, Path.cwd(), overwrite=overwrite)
    err = stderr_console()
    for path in written:
        err.print(f"wrote {path.relative_to(Path.cwd())}", highlight=False, markup=False)
    if not written:
        err.print(f"{COPY_FOLDER}/ already holds these examples unchanged: nothing to copy", highlight=False, markup=False)
    else:
        first = "quickstart" if "quickstart" in chosen else chosen[0]
        err.print(f"next: mha run {COPY_FOLDER}/{first}.yaml", highlight=False, markup=False)
