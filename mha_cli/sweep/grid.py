"""Sweep axes, their Cartesian product over a base config, and deterministic shards."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from ..config import Config, describe_error, field_at, field_paths, tag_choices, validate_data
from ..errors import ConfigError, UsageError
from ..yaml_source import PathKey, value_text

# CLI flag -> (config field path, type of one value)
FLAG_FIELDS: dict[str, tuple[str, type]] = {
    "heads": ("num_heads", int),
    "kv_heads": ("num_kv_heads", int),
    "seq_len": ("seq_len", int),
    "embed_dim": ("embed_dim", int),
    "batch": ("batch_size", int),
    "window": ("local.window", int),
    "variant": ("variant", str),
    "dtype": ("dtype", str),
    "pass": ("timing.pass", str),
}


def parse_list(flag: str, text: str, kind: type) -> list[Any]:
    """'1,2,4' -> [1, 2, 4], with a message naming the flag and the bad item."""
    items = [item.strip() for item in text.split(",")]
    if any(item == "" for item in items):
        raise UsageError(f"--{flag.replace('_', '-')} {text!r}: empty item; write a comma list such as 1,2,4")
    values: list[Any] = []
    for item in items:
        try:
            value = kind(item)
        except ValueError:
            raise UsageError(
                f"--{flag.replace('_', '-')} {text!r}: {item!r} is not {'an integer' if kind is int else 'valid'}"
            ) from None
        if value in values:
            raise UsageError(f"--{flag.replace('_', '-')} {text!r}: {item!r} is listed twice")
        values.append(value)
    return values


@dataclass(frozen=True)
class Axis:
    path: str  # dotted config field, e.g. "local.window"
    values: list[Any]


@dataclass(frozen=True)
class Point:
    index: int
    params: dict[str, Any]  # path -> value, in axis order
    config: Config | None  # None when the combination is invalid
    problem: str = ""  # why it is invalid

    @property
    def label(self) -> str:
        return " ".join(f"{k}={value_text(v)}" for k, v in self.params.items())


def _set_path(data: dict[str, Any], path: str, value: Any) -> None:
    node = data
    parts = path.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def config_with(base: dict[str, Any], params: dict[str, Any], given: dict[str, Any] | None = None) -> Config:
    """The base config with params applied, validated (raises ConfigError). given: implementations handed over
    from Python as objects, which the base (JSON) only holds by name."""
    import copy

    data = copy.deepcopy(base)
    data["sweep"] = None
    if given:
        data["implementations"] = {**data.get("implementations", {}), **given}
    for path, value in params.items():
        _set_path(data, path, value)
    origins: dict[PathKey, tuple[str, int | None]] = {
        tuple(path.split(".")): (f"sweep point {path}={value!r}", None) for path, value in params.items()
    }
    # The base is a resolved config: every field in it was set, by a file or a default file.
    return validate_data(data, origins, "base config", note_unset=False)


def check_axes(axes: list[Axis]) -> None:
    """Refuse (exit 2) values that are wrong on their own (type, range, choice, unknown field).

    Values that only clash with others (num_heads not dividing embed_dim, a window
    on a full variant) make their points skipped instead: another point may be fine.
    """
    import difflib
    from typing import Annotated

    from pydantic import TypeAdapter, ValidationError

    problems = []
    for axis in axes:
        choices = tag_choices(axis.path)
        if choices is not None:  # a union section's tag: any member's name (sparse.pattern, score_mod.kind)
            problems += [f"{axis.path} = {value!r}: {value!r} is not allowed; choose one of: {', '.join(choices)}"
                         for value in axis.values if value not in choices]
            continue
        info = field_at(axis.path)
        if info is None:
            close = difflib.get_close_matches(axis.path, field_paths(), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(f"{axis.path}: no such config field{hint}")
            continue
        adapter = TypeAdapter(Annotated[(info.annotation, *info.metadata)]) if info.metadata else TypeAdapter(info.annotation)
        for value in axis.values:
            try:
                adapter.validate_python(value)
            except ValidationError as error:
                problems.append(f"{axis.path} = {value!r}: {describe_error(error.errors()[0])}")
    if problems:
        raise UsageError("bad sweep values:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass
class Grid:
    base: dict[str, Any]  # resolved base config, as JSON
    axes: list[Axis] = field(default_factory=list)
    # Your implementations given from Python as objects (run_sweep): every point uses the objects themselves.
    # Not written to sweep.json (it holds them as module:name references).
    given: dict[str, Any] = field(default_factory=dict, compare=False)

    def size(self) -> int:
        total = 1
        for axis in self.axes:
            total *= len(axis.values)
        return total

    def points(self) -> list[Point]:
        """Every point, in a fixed order: the last axis varies fastest."""
        out = []
        for index, combo in enumerate(itertools.product(*(axis.values for axis in self.axes))):
            params = {axis.path: value for axis, value in zip(self.axes, combo, strict=True)}
            try:
                out.append(Point(index, params, config_with(self.base, params, self.given)))
            except ConfigError as error:
                out.append(Point(index, params, None, "; ".join(f"{p.field}: {p.message}" for p in error.problems)))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"base": self.base, "axes": [{"path": a.path, "values": a.values} for a in self.axes]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Grid:
        return cls(base=data["base"], axes=[Axis(a["path"], a["values"]) for a in data["axes"]])


def grid_for(config: Config, axes: dict[str, list[Any]]) -> Grid:
    """The grid of `axes` (config field path -> values, e.g. {"local.window": [64, 128]}) over `config`.

    The config's own `sweep:` section comes first; a path given here replaces it. Values
    wrong on their own are a UsageError; combinations that clash become skipped points.
    """
    merged = {path: Axis(path, list(values)) for path, values in (config.sweep or {}).items()}
    for path, values in axes.items():
        values = list(values)
        if not values:
            raise UsageError(f"sweep axis {path}: give at least one value")
        if len({repr(v) for v in values}) != len(values):
            raise UsageError(f"sweep axis {path}: a value is listed twice in {values}")
        merged[path] = Axis(path, values)
    if not merged:
        raise UsageError(
            "nothing to sweep: give at least one axis, e.g. --heads 1,2,4, or a `sweep:` section in the config"
        )
    base = config.to_dict()
    base["sweep"] = None
    given = {name: value for name, value in config.implementations.items() if not isinstance(value, str)}
    grid = Grid(base=base, axes=list(merged.values()), given=given)
    check_axes(grid.axes)
    return grid


def build_grid(config: Config, flags: dict[str, str | None], impls: str | None) -> Grid:
    """The grid the CLI's flags describe: comma lists per flag, --impl setting the implementations."""
    if impls is not None:
        data = {**config.to_dict(), "impls": parse_list("impl", impls, str)}
        config = validate_data(data, {("impls",): (f"--impl {impls}", None)}, "base config", note_unset=False)
    axes = {}
    for flag, text in flags.items():
        if text is not None:
            path, kind = FLAG_FIELDS[flag]
            axes[path] = parse_list(flag, text, kind)
    return grid_for(config, axes)


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based
    count: int

    @classmethod
    def parse(cls, text: str | None) -> Shard:
        if text is None:
            return cls(1, 1)
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise UsageError(f"--shard {text!r}: write I/N, e.g. 2/4 for the second of four shards") from None
        if not 1 <= index <= count:
            raise UsageError(f"--shard {text!r}: I must be between 1 and N")
        return cls(index, count)

    def owns(self, point_index: int) -> bool:
        # Round robin: neighbouring points (often similar cost) land in different shards.
        return point_index % self.count == self.index - 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
