"""The sweep folder: sweep.json made once, points.jsonl appended, damaged lines survived."""

from pathlib import Path

import pytest

from mha_cli.config import load_config
from mha_cli.errors import UsageError
from mha_cli.sweep.grid import Shard, build_grid
from mha_cli.sweep.store import SweepFolder

from ..helpers import flags


def record(point: int, status: str = "skipped") -> dict:
    report = {"results": []} if status == "done" else None
    return {"point": point, "params": {"num_heads": point + 1}, "status": status, "reason": "", "wall_s": 0.1, "report": report}


def made(tmp_path: Path, heads: str = "1,2,4") -> SweepFolder:
    folder = SweepFolder(tmp_path / "s")
    folder.create(build_grid(load_config(None), flags(heads=heads), None), Shard(1, 1))
    return folder


def test_points_append_and_a_torn_last_line_is_reported_not_read(tmp_path: Path) -> None:
    folder = made(tmp_path)
    folder.append(record(1, "done"))
    folder.append(record(0))
    with open(folder.points_file, "a") as file:
        file.write('{"point": 2, "sta')  # a crash in the middle of a write
    assert [r["point"] for r in folder.records(3)] == [0, 1]
    assert [(bad.line, "cut off" in bad.why) for bad in folder.bad_lines] == [(3, True)]


def test_a_torn_tail_is_cut_back_and_kept_aside_before_appending(tmp_path: Path) -> None:
    folder = made(tmp_path)
    folder.append(record(0))
    with open(folder.points_file, "a") as file:
        file.write('{"point": 1, "sta')
    assert folder.repair_torn_tail() == len('{"point": 1, "sta')
    assert folder.repair_torn_tail() == 0  # idempotent
    folder.append(record(1))
    assert [r["point"] for r in folder.records(3)] == [0, 1] and folder.bad_lines == []
    assert (folder.path / "points.jsonl.torn").read_text() == '{"point": 1, "sta\n'


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (b"garbage\n", "not a JSON record"),
        (b"\xff\xfe\n", "not UTF-8"),
        (b"42\n", "not a record"),
        (b'{"point": "1", "status": "done"}\n', "no integer `point`"),
        (b'{"point": 7, "params": {}, "status": "skipped"}\n', "outside the grid"),
        (b'{"point": -1, "params": {}, "status": "skipped"}\n', "outside the grid"),
        (b'{"point": 1, "params": {}, "status": "finished"}\n', "status 'finished'"),
        (b'{"point": 1, "params": {}, "status": "done", "report": null}\n', "without its results"),
        (b'{"point": 1, "params": [], "status": "skipped"}\n', "no `params`"),
    ],
)
def test_unreadable_lines_are_reported_with_their_line_number(tmp_path: Path, line: bytes, why: str) -> None:
    folder = made(tmp_path)
    folder.append(record(0))
    with open(folder.points_file, "ab") as file:
        file.write(line)
    folder.append(record(2))
    assert [r["point"] for r in folder.records(3)] == [0, 2]
    (bad,) = folder.bad_lines
    assert bad.line == 2 and why in bad.why


def test_a_folder_holds_one_sweep(tmp_path: Path) -> None:
    grid = build_grid(load_config(None), flags(heads="1,2"), None)
    SweepFolder(tmp_path).create(grid, Shard(1, 1))
    with pytest.raises(UsageError, match="--resume"):
        SweepFolder(tmp_path).create(grid, Shard(1, 1))


def test_points_without_their_sweep_json_are_refused(tmp_path: Path) -> None:
    grid = build_grid(load_config(None), flags(heads="1,2"), None)
    (tmp_path / "points.jsonl").write_text('{"point": 0}\n')
    with pytest.raises(UsageError, match="no sweep.json"):
        SweepFolder(tmp_path).create(grid, Shard(1, 1))
    SweepFolder(tmp_path).create(grid, Shard(1, 1), overwrite=True)
    assert not (tmp_path / "points.jsonl").exists()


def test_not_a_sweep_folder(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a sweep folder"):
        SweepFolder(tmp_path).definition()


@pytest.mark.parametrize("text", ["", "[]", '{"shard": "1/1"}', '{"shard": "0/1", "grid": {"base": {}, "axes": []}}',
                                  '{"shard": "x", "grid": 3}'])
def test_a_damaged_sweep_json_is_a_usage_error(tmp_path: Path, text: str) -> None:
    (tmp_path / "sweep.json").write_text(text)
    with pytest.raises(UsageError, match="is damaged"):
        SweepFolder(tmp_path).definition()
