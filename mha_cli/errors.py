"""Errors a user can cause, and the exit codes the CLI maps them to.

Nothing here imports torch: `mha validate` and `mha --help` use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # a check failed or the run itself failed
    USAGE = 2  # bad command line or config
    REGRESSION = 3  # `mha compare` found a slowdown
    INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT


class MhaError(Exception):
    """An error with a message meant for the user (no traceback is shown)."""

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str, *, exit_code: ExitCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(MhaError):
    """Bad command-line input that is not part of a config (an option value, a path)."""

    exit_code = ExitCode.USAGE


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config, located as precisely as we can."""

    source: str  # a file path, "built-in default" or "override `a.b=c`"
    field: str  # dotted path such as "mask.key_padding.lengths[2]" ("" for the whole file)
    message: str
    line: int | None = None

    def location(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        return f"{where}: {self.field}" if self.field else where

    def __str__(self) -> str:
        return f"{self.location()}: {self.message}"


class Unsupported(Exception):
    """An implementation cannot run this experiment here (a device, dtype, pattern, pass or scope it
    does not handle); the row is `skipped` with the reason. Raise it from your own implementation too."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def first_line(error: BaseException) -> str:
    """"TypeName: the first line of its message": how a row names the exception that ended it."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


class ConfigError(MhaError, ValueError):
    """Every problem found in a config, reported together (a ValueError, as pydantic's ValidationError is)."""

    exit_code = ExitCode.USAGE

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        header = f"{count} problem{'s' if count != 1 else ''} in the config:"
        super().__init__("\n".join([header, *(f"  - {p}" for p in self.problems)]))
