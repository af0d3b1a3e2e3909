"""Output folders: one owner at a time, nothing overwritten unasked, files as the umask says.

Every command that writes results (run, sweep, merge) claims its folder first,
before anything is measured:

- problems with the folder itself (a file in the way, a read-only disk, no
  permission) are found now, as exit 2 with the OS's reason, not after a long
  measurement;
- a folder that already holds results is refused unless `--overwrite`;
- an OS file lock (fcntl.flock on DIR/.mha.lock) is held until the command
  ends, so a second writer stops at once, naming the folder and the PID that
  holds it. The lock goes with the process: kill -9 cannot leave it stale.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO

from .errors import UsageError

DEFAULT_ROOT = Path("outputs")  # where runs, sweeps and merges go without --output-dir
LOCK_FILE = ".mha.lock"
LATEST = "latest"
# What run, sweep and merge write: a folder holding any of these holds results.
RESULT_FILES = (
    "results.json", "results.csv", "config.yaml", "report.md", "pattern.png",
    "sweep.json", "points.jsonl", "summary.json", "summary.csv", "sweep.png",
)


@dataclass(frozen=True)
class Naming:
    """How a refusal names what the caller can change: the command line's options, or the Python parameters."""

    overwrite: str  # what replaces earlier results
    output_dir: str  # what chooses the folder


CLI_NAMES = Naming(overwrite="--overwrite", output_dir="--output-dir")
PYTHON_NAMES = Naming(overwrite="overwrite=True", output_dir="output_dir")


def file_mode() -> int:
    """The mode a new file gets from open(): 0666 less the umask (0644 under 022)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _write_temporary(folder: Path, name: str, text: str) -> str:
    """The text in a synced temporary file beside `name`, with the mode open() would give.

    mkstemp makes its file 0600 whatever the umask; CI artifacts and shared folders
    must stay readable, so the mode is set to 0666 less the umask.
    """
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    try:
        os.fchmod(handle, file_mode())
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return temporary


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder and os.replace: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _write_temporary(path.parent, path.name, text)
    try:
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def create_exclusive(path: Path, text: str) -> None:
    """Write a complete file that must not exist yet (FileExistsError if it does), atomically.

    The text goes to a temporary file first and is then hard-linked into place:
    link() fails when the name is taken, so two writers cannot both create it.
    """
    temporary = _write_temporary(path.parent, path.name, text)
    try:
        os.link(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)


def _os_reason(error: OSError) -> str:
    return error.strerror or str(error)


def _make_folder(path: Path, names: Naming = CLI_NAMES) -> None:
    if path.exists() and not path.is_dir():
        raise UsageError(f"output folder {path} is a file, not a folder; choose another {names.output_dir}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        where = f" ({error.filename})" if error.filename and str(error.filename) != str(path) else ""
        raise UsageError(f"cannot create output folder {path}: {_os_reason(error)}{where}") from None


def existing_results(path: Path) -> list[str]:
    return [name for name in RESULT_FILES if (path / name).exists()]


class FolderLock:
    """An exclusive flock on DIR/.mha.lock, with the holder's PID written inside for the message."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.file: IO[str] | None = None

    def acquire(self) -> None:
        path = self.folder / LOCK_FILE
        try:
            file = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held open until release()
        except OSError as error:
            raise UsageError(f"cannot write in output folder {self.folder}: {_os_reason(error)}") from None
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            file.seek(0)
            holder = file.read().strip() or "unknown"
            file.close()
            if error.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise UsageError(
                    f"output folder {self.folder} is in use by another mha process (PID {holder}); "
                    "wait for it to finish or choose another folder"
                ) from None
            raise UsageError(f"cannot lock output folder {self.folder}: {_os_reason(error)}") from None
        file.seek(0)
        file.truncate()
        file.write(f"{os.getpid()}\n")
        file.flush()
        self.file = file

    def release(self) -> None:
        if self.file is not None:
            self.file.close()  # closing drops the flock; the file stays (deleting it would race)
            self.file = None


@contextlib.contextmanager
def claimed(path: Path, *, overwrite: bool = False, allow: tuple[str, ...] = (), fresh: bool = False,
            names: Naming = CLI_NAMES) -> Iterator[Path]:
    """Create or check the folder, lock it, refuse earlier results unless overwrite; yields the folder.

    allow: result files that may be there already (a sweep being resumed holds its own).
    fresh: the caller just made the folder (a timestamped one). A folder made for this command
    and left empty by an error or Ctrl-C (a refused run) is removed again, so no litter remains.
    names: how a refusal names the overwrite option (the CLI's flag, or the Python parameter).
    """
    made_here = fresh or not path.exists()
    _make_folder(path, names)
    lock = FolderLock(path)
    lock.acquire()
    try:
        found = [name for name in existing_results(path) if name not in allow]
        if found and not overwrite:
            # A sweep's folder may be an interrupted one: finishing it is usually what is wanted.
            resume = (f", or finish the sweep in it with `mha sweep --resume {path}`"
                      if "sweep.json" in found and names is CLI_NAMES else "")
            raise UsageError(
                f"output folder {path} already holds results ({', '.join(found)}); "
                f"pass {names.overwrite} to replace them, or choose another folder{resume}"
            )
        yield path
    except BaseException:
        if made_here and [p.name for p in path.iterdir()] == [LOCK_FILE]:
            (path / LOCK_FILE).unlink()
            lock.release()
            path.rmdir()
        raise
    finally:
        lock.release()


@contextlib.contextmanager
def claimed_output(output_dir: Path | None, default_name: str, *, overwrite: bool = False,
                   names: Naming = CLI_NAMES) -> Iterator[Path]:
    """--output-dir DIR, or a new outputs/<UTC time>-<default_name>/, claimed as `claimed` does."""
    target = output_dir if output_dir is not None else new_timestamped_folder(DEFAULT_ROOT, default_name)
    with claimed(target, overwrite=overwrite, fresh=output_dir is None, names=names) as folder:
        yield folder


def new_timestamped_folder(root: Path, name: str, created: datetime | None = None) -> Path:
    """root/<UTC timestamp>-<name>/ (now, unless `created`), made here, with -2, -3... if that second is taken."""
    from .clock import folder_stamp, utc_now

    stem = f"{folder_stamp(created or utc_now())}-{name}"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create output folder {root}: {_os_reason(error)}") from None
    for attempt in range(1, 1000):
        folder = root / (stem if attempt == 1 else f"{stem}-{attempt}")
        try:
            folder.mkdir(exist_ok=False)
            return folder
        except FileExistsError:
            continue
        except OSError as error:
            raise UsageError(f"cannot create output folder {folder}: {_os_reason(error)}") from None
    raise UsageError(f"could not find a free folder name under {root} for {stem}")


def point_latest(root: Path, folder: Path) -> bool:
    """Make root/latest a symlink to folder, replaced atomically; False when that is not possible here."""
    if folder.parent.resolve() != root.resolve():
        return False
    temporary = root / f".{LATEST}.{os.getpid()}.tmp"
    try:
        temporary.unlink(missing_ok=True)
        os.symlink(folder.name, temporary)
        os.replace(temporary, root / LATEST)  # a real folder named `latest` makes this fail: left alone
        return True
    except OSError:
        temporary.unlink(missing_ok=True)
        return False
