"""What every command shares: consoles, config arguments, and turning errors into exit codes."""


import contextlib
import functools
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO, TypeVar

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
        help="YAML config file, or example:NAME for a shipped example (`mha examples` lists them). "
        "Leave out to use the built-in default (example:quickstart).",
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
OverwriteOption = Annotated[
    bool, typer.Option("--overwrite", help="Replace the results already in the output folder (refused without it).")
]
ReprobeOption = Annotated[
    bool, typer.Option("--reprobe", help="Measure this machine's matmul peak and memory bandwidth again instead of "
                       "reading them from the cache.")
]
MaxMemoryOption = Annotated[
    str | None,
    typer.Option("--max-memory", metavar="SIZE", help="Refuse runs estimated above this (e.g. 4GiB). Default: memory available now."),
]


PIPE_WIDTH = 160  # logs and pipes have no terminal width; 80 columns would fold the tables


def _console(stderr: bool) -> "Console":
    from rich.console import Console

    # Created per call, not at import: the test runner swaps sys.stdout per invocation.
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or "COLUMNS" in os.environ else PIPE_WIDTH
    # NO_COLOR: no escape sequence at all. Rich's own NO_COLOR support drops colours but keeps bold and italic.
    plain = {"color_system": None} if os.environ.get("NO_COLOR") else {}
    return Console(stderr=stderr, highlight=False, width=width, **plain)


def stdout_console() -> "Console":
    return _console(stderr=False)


def stderr_console() -> "Console":
    return _console(stderr=True)


def animated(console: "Console") -> bool:
    """Spinners and bars only on a terminal, and never with NO_COLOR set (no escape sequences at all)."""
    return console.is_terminal and not os.environ.get("NO_COLOR")


class ProgressLine:
    """Progress on stderr: one updating spinner line on a terminal, one plain line per step otherwise.
    Call it with each step; stop() ends the spinner before results are printed."""

    def __init__(self, console: "Console") -> None:
        self.console = console
        self.status = console.status("starting", spinner="dots") if animated(console) else None

    def __call__(self, message: str) -> None:
        from rich.markup import escape

        if self.status is None:
            self.console.print(escape(message), highlight=False)
        else:
            self.status.update(escape(message))

    def stop(self) -> None:
        if self.status is not None:
            self.status.stop()


@contextlib.contextmanager
def progress_messages(console: "Console") -> Iterator[ProgressLine]:
    """A ProgressLine for the time of the block (the spinner stops at its end, whatever happens)."""
    line = ProgressLine(console)
    if line.status is not None:
        line.status.start()
    try:
        yield line
    finally:
        line.stop()


@contextlib.contextmanager
def stdout_for_results(as_json: bool) -> Iterator[TextIO]:
    """With --json, stdout holds the one JSON document: whatever else writes to it while the work runs (code the
    config names that prints, say) goes to stderr. Yields where the results are to be written."""
    results = sys.stdout
    if not as_json:
        yield results
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield results


def check_batch(batch: int, batch_size: int) -> None:
    """--batch picks one batch item to draw."""
    if not 0 <= batch < batch_size:
        raise UsageError(f"--batch {batch} is out of range: the config has batch_size {batch_size} (items 0..{batch_size - 1})")


def check_head(head: int, num_heads: int) -> None:
    """--head picks one head to draw."""
    if not 0 <= head < num_heads:
        raise UsageError(f"--head {head} is out of range: the config has num_heads {num_heads} (heads 0..{num_heads - 1})")


def split_config_args(config: str | None, overrides: list[str] | None) -> tuple[Path | str | None, list[str]]:
    """`mha run num_heads=4` has no file: a first argument with '=' that is no file is an override.
    `example:NAME` names a shipped example (kept a str: load_config reads it so); anything else is a file."""
    from ..shipped_examples import is_example_reference

    rest = list(overrides or [])
    if is_example_reference(config):
        return config, rest
    if config is not None and "=" in config and not os.path.exists(config):
        return None, [config, *rest]
    if config is not None and not os.path.exists(config) and re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", config) \
            and not config.endswith((".yaml", ".yml")):
        from ..shipped_examples import examples

        if config in {example.name for example in examples()}:
            raise UsageError(f"{config!r} is no file; the shipped example of that name is example:{config} "
                             f"(mha run example:{config})")
        raise UsageError(
            f"{config!r} is no file, and an override needs a value: write KEY=VALUE, e.g. {config}=4 "
            f"(or give the path of a YAML config)"
        )
    return (Path(config) if config is not None else None), rest


def debugging() -> bool:
    """--debug or MHA_DEBUG=1: show tracebacks instead of one-line messages."""
    return os.environ.get("MHA_DEBUG", "") not in ("", "0")


def _show_traceback_when_debugging() -> None:
    """--debug shows where an error came from, and changes nothing else: the message and exit code stay."""
    if debugging():
        import traceback

        traceback.print_exc(file=sys.stderr)


def _say_error(message: str) -> None:
    from rich.markup import escape

    # soft_wrap: a message is one logical line for grep and CI logs; the terminal folds it if it must.
    stderr_console().print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def handle_errors(command: F) -> F:
    """Turn every error into a message and its exit code, with no traceback unless debugging.

    User and environment errors: their own code (2 mostly). Ctrl-C, SIGTERM, SIGHUP:
    128 + the signal. A failed write (disk full, I/O error): 1, saying what could not be
    written. Anything else is a bug in mha: 1, with how to get the traceback. With --debug
    the traceback is printed first; the message and the exit code are the same.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from ..signals import exit_code_for, signal_name

        try:
            return command(*args, **kwargs)
        except MhaError as error:
            _show_traceback_when_debugging()
            _say_error(error.message)
            raise typer.Exit(int(error.exit_code)) from None
        except KeyboardInterrupt as interrupt:
            stderr_console().print(f"[yellow]interrupted ({signal_name(interrupt)})[/]")
            raise typer.Exit(exit_code_for(interrupt)) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except OSError as error:
            _show_traceback_when_debugging()
            where = f"{error.filename}: " if error.filename else ""
            _say_error(f"{where}{error.strerror or error} (what was already written is kept)")
            raise typer.Exit(int(ExitCode.FAILED)) from None
        except Exception as error:  # noqa: BLE001 - the last line of defence against a traceback
            _show_traceback_when_debugging()
            hint = "report it with the traceback above" if debugging() else \
                "rerun with --debug (or MHA_DEBUG=1) for the traceback and report it"
            _say_error(f"internal error: {type(error).__name__}: {error}. This is a bug in mha; {hint}")
            raise typer.Exit(int(ExitCode.FAILED)) from None

    return wrapper  # type: ignore[return-value]
