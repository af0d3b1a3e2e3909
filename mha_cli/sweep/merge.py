"""`mha merge`: shard folders of one sweep back into one sweep folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UsageError
from .grid import Shard
from ..report.sweep_files import write_summary
from .store import SweepFolder
from .summary import summarize


def merge_shards(sources: list[Path], target: Path, plot: bool = True, overwrite: bool = False) -> tuple[dict[str, Any], list[str]]:
    """Check the shards belong to one sweep, combine their points, write the merged folder's summary.

    Call with the target folder claimed (locked). Returns the summary and warnings for the
    user: unreadable lines in a shard's points.jsonl (their points count as pending), and
    why sweep.png was not written when it was asked for.
    """
    if not sources:
        raise UsageError("give the shard folders to merge, e.g. mha merge shard1 shard2 --output-dir merged")
    folders = [SweepFolder(path) for path in sources]
    definitions = [folder.definition() for folder in folders]
    grid = definitions[0][0]
    for path, (other, _) in zip(sources[1:], definitions[1:], strict=True):
        if other.to_dict() != grid.to_dict():
            raise UsageError(f"{path} is a different sweep from {sources[0]} (its base config or axes differ); merge shards of one sweep")
    shards = [str(shard) for _, shard in definitions]
    counts = {shard.count for _, shard in definitions}
    if len(counts) > 1:
        raise UsageError(f"the folders were sharded differently ({', '.join(shards)}); merge the shards of one --shard I/N split")
    if len(set(shards)) != len(shards):
        raise UsageError(f"a shard is given twice ({', '.join(shards)})")
    records: dict[int, dict[str, Any]] = {}
    warnings: list[str] = []
    for path, folder in zip(sources, folders, strict=True):
        for record in folder.records(grid.size()):
            if record["point"] in records:
                raise UsageError(f"point {record['point']} appears in two folders (the second is {path})")
            records[record["point"]] = record
        warnings += [f"{folder.points_file} line {bad.line}: {bad.why}; that point counts as pending" for bad in folder.bad_lines]
    if any(path.resolve() == target.resolve() for path in sources):
        raise UsageError(f"the merged folder {target} is one of the shards; write the merge somewhere else")
    out = SweepFolder(target)
    out.create(grid, Shard(1, 1), overwrite=overwrite)
    ordered = [records[i] for i in sorted(records)]
    for record in ordered:
        out.append(record)
    summary = summarize(grid, ordered, shards=shards, owned=grid.size())
    why_no_picture = write_summary(out.path, summary, plot=plot)
    return summary, warnings + ([why_no_picture] if why_no_picture else [])
