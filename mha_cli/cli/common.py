"""What every command shares: consoles, config arguments, and turning errors into exit codes."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from ..errors import ExitCode, MhaError, UsageError

if TYPE_CHECKING:
    from rich.console import Console

# Rich is imported inside the functions below: `mha validate` never needs it
# when all goes well, and every import counts against start-up time.

F = TypeVar("F", bound=Callable[..., Any])

ConfigArg = Annotated[
    str | None,
    typer.Argument(
        metavar="CONFIG",
        help="YAML config file. Leave out to use the built-in default (configs/quickstart.yaml).",
        show_default=False,
    ),
]
OverridesArg = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="KEY=VALUE",
        help="Overrides, dotted, values read as YAML: num_heads=4 mask.causal=true impls=\\[sdpa,manual]",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout and nothing else.")]


PIPE_WIDTH = 160  # logs and pipes have no terminal width; 80 columns would fold the tables


def _console(stderr: bool) -> Console:
    from rich.console import Console

    # Created per call, not at import: the test runner swaps sys.stdout per invocation.
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or "COLUMNS" in os.environ else PIPE_WIDTH
    return Console(stderr=stderr, highlight=False, width=width)


def stdout_console() -> Console:
    return _console(stderr=False)


def stderr_console() -> Console:
    return _console(stderr=True)


@contextlib.contextmanager
def progress_messages(console: Console) -> Iterator[Callable[[str], None]]:
    """Progress on stderr: one updating spinner line on a terminal, one plain line per step otherwise."""
    from rich.markup import escape

    if not console.is_terminal:
        yield lambda message: console.print(escape(message), highlight=False)
        return
    with console.status("starting", spinner="dots") as status:
        yield lambda message: status.update(escape(message))


def check_batch(batch: int, batch_size: int) -> None:
    """--batch picks one batch item to draw."""
    if not 0 <= batch < batch_size:
        raise UsageError(f"--batch {batch} is out of range: the config has batch_size {batch_size} (items 0..{batch_size - 1})")


def split_config_args(config: str | None, overrides: list[str] | None) -> tuple[Path | None, list[str]]:
    """`mha run num_heads=4` has no file: a first argument with '=' that is no file is an override."""
    rest = list(overrides or [])
    if config is not None and "=" in config and not os.path.exists(config):
        return None, [config, *rest]
    return (Path(config) if config is not None else None), rest


def handle_errors(command: F) -> F:
    """Map user errors to their exit codes with a message (no traceback), Ctrl-C to 130."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except MhaError as error:
            from rich.markup import escape

            stderr_console().print(f"[bold red]error:[/] {escape(error.message)}", highlight=False)
            raise typer.Exit(int(error.exit_code)) from None
        except KeyboardInterrupt:
            stderr_console().print("[yellow]interrupted[/]")
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None

    return wrapper  # type: ignore[return-value]
