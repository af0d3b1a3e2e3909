"""Output folders: atomic writes that follow the umask, one owner at a time, nothing overwritten unasked."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from mha_cli.errors import UsageError
from mha_cli.output_folder import (
    FolderLock,
    claimed,
    create_exclusive,
    new_timestamped_folder,
    point_latest,
    write_atomic,
)


def test_atomic_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "a.txt"
    write_atomic(target, "one")
    write_atomic(target, "two")
    assert target.read_text() == "two" and [p.name for p in target.parent.iterdir()] == ["a.txt"]


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_follow_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        write_atomic(tmp_path / "atomic.json", "{}")
        create_exclusive(tmp_path / "exclusive.json", "{}")
    finally:
        os.umask(old)
    for name in ("atomic.json", "exclusive.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode


def test_create_exclusive_refuses_an_existing_file(tmp_path: Path) -> None:
    create_exclusive(tmp_path / "sweep.json", "first")
    with pytest.raises(FileExistsError):
        create_exclusive(tmp_path / "sweep.json", "second")
    assert (tmp_path / "sweep.json").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.json"]


def test_timestamped_folders_never_collide(tmp_path: Path) -> None:
    moment = datetime(2026, 11, 27, 10, 0, 0, tzinfo=timezone.utc)
    first = new_timestamped_folder(tmp_path, "demo", moment)
    second = new_timestamped_folder(tmp_path, "demo", moment)
    assert first.name == "20261127T100000Z-demo" and second.name == "20261127T100000Z-demo-2"


def test_a_folder_with_results_is_refused_unless_overwrite(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(UsageError, match=r"already holds results \(results.json\).*--overwrite"):
        with claimed(tmp_path):
            pass
    with claimed(tmp_path, overwrite=True) as folder:
        assert folder == tmp_path
    (tmp_path / "notes.txt").write_text("mine")  # other files are not results
    (tmp_path / "results.json").unlink()
    with claimed(tmp_path):
        pass


@pytest.mark.parametrize("case", ["a file", "under a file"])
def test_a_file_in_the_way_is_exit_2_with_the_reason(tmp_path: Path, case: str) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    target = blocker if case == "a file" else blocker / "run"
    with pytest.raises(UsageError) as caught:
        with claimed(target):
            pass
    assert caught.value.exit_code == 2
    assert ("is a file" in caught.value.message) or ("Not a directory" in caught.value.message)


def test_a_read_only_folder_is_exit_2_with_the_os_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # As root, chmod does not stop writes; a read-only file system answers open() with EROFS.
    real_open = open

    def read_only(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        if str(path).endswith(".mha.lock"):
            raise OSError(30, "Read-only file system", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", read_only)
    with pytest.raises(UsageError, match="Read-only file system"):
        with claimed(tmp_path / "run"):
            pass


def test_a_second_owner_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from mha_cli.output_folder import FolderLock; "
         "lock = FolderLock(Path(sys.argv[1])); lock.acquire(); print('locked', flush=True); time.sleep(60)",
         str(tmp_path)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(UsageError, match=f"in use by another mha process \\(PID {holder.pid}\\)"):
            FolderLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    lock = FolderLock(tmp_path)  # the lock died with its process: no stale lock
    lock.acquire()
    lock.release()


def test_latest_points_at_the_newest_folder(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    assert point_latest(tmp_path, first) and (tmp_path / "latest").resolve() == first.resolve()
    assert point_latest(tmp_path, second) and (tmp_path / "latest").resolve() == second.resolve()
    assert not point_latest(tmp_path, tmp_path.parent)  # not under the root: left alone


def test_a_folder_made_for_a_refused_command_is_removed_again(tmp_path: Path) -> None:
    target = tmp_path / "run"
    with pytest.raises(UsageError):
        with claimed(target):
            raise UsageError("the memory guard refused the run")
    assert not target.exists()
    existing = tmp_path / "mine"
    existing.mkdir()
    with pytest.raises(KeyboardInterrupt):
        with claimed(existing):
            raise KeyboardInterrupt
    assert existing.is_dir()  # the user's own folder stays
