from pathlib import Path

import pytest

from mha_cli.config import load_config
from mha_cli.errors import UsageError
from mha_cli.sweep.grid import Shard, build_grid
from mha_cli.sweep.store import SweepFolder

from .test_grid import flags


def test_points_append_and_a_torn_last_line_is_ignored(tmp_path: Path) -> None:
    folder = SweepFolder(tmp_path / "s")
    grid = build_grid(load_config(None), flags(heads="1,2"), None)
    folder.create(grid, Shard(1, 1))
    folder.append({"point": 1, "status": "done"})
    folder.append({"point": 0, "status": "skipped"})
    with open(folder.points_file, "a") as file:
        file.write('{"point": 2, "sta')  # a crash in the middle of a write
    assert [r["point"] for r in folder.records()] == [0, 1]
    again, shard = folder.definition()
    assert again.to_dict() == grid.to_dict() and shard == Shard(1, 1)


def test_a_folder_holds_one_sweep(tmp_path: Path) -> None:
    grid = build_grid(load_config(None), flags(heads="1,2"), None)
    SweepFolder(tmp_path).create(grid, Shard(1, 1))
    with pytest.raises(UsageError, match="--resume"):
        SweepFolder(tmp_path).create(grid, Shard(1, 1))


def test_not_a_sweep_folder(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a sweep folder"):
        SweepFolder(tmp_path).definition()
