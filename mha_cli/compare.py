"""`mha compare`: match two sets of results point by point and judge the changes (the CI gate).

A point regresses on `median` when it is slower by more than the threshold AND
the gap is larger than the measurement noise: the current interquartile range,
taken as median +- IQR/2, lies entirely above the base one. Memory
(`peak_mem`) regresses on the threshold alone: it is not noisy.
No torch here: results are read from JSON.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import ExitCode, UsageError

METRICS = {"median": "median_s", "peak_mem": "peak_mem_bytes"}
ENV_FIELDS = ("cpu", "device", "torch", "num_threads")


@dataclass(frozen=True)
class Threshold:
    metric: str  # "median" or "peak_mem"
    fraction: float  # 0.10 for 10%

    @classmethod
    def parse(cls, text: str) -> Threshold:
        match = re.fullmatch(r"\s*(\w+)\s*:\s*([0-9]*\.?[0-9]+)\s*%\s*", text)
        if not match or match.group(1) not in METRICS:
            raise UsageError(
                f"--fail-on {text!r}: write METRIC:PERCENT%, METRIC one of {', '.join(METRICS)} (e.g. median:10%)"
            )
        return cls(match.group(1), float(match.group(2)) / 100)

    def __str__(self) -> str:
        return f"{self.metric}:{100 * self.fraction:g}%"


@dataclass(frozen=True)
class Entry:
    params: dict[str, Any]
    impl: str
    row: dict[str, Any]  # a result record: status, median_s, iqr_s, peak_mem_bytes, ok, ...

    @property
    def key(self) -> tuple[str, str]:
        return json.dumps(self.params, sort_keys=True), self.impl


@dataclass
class Loaded:
    source: str
    kind: str  # "run" or "sweep"
    entries: list[Entry]
    env: dict[str, Any] | None
    config: dict[str, Any] | None  # a run's config, a sweep's base config


def read_results(path: Path) -> tuple[str, Path, dict[str, Any]]:
    """("run" | "sweep", the JSON file, its document) for a results.json, a summary.json, or their folder."""
    if path.is_dir():
        found = next((path / name for name in ("results.json", "summary.json") if (path / name).exists()), None)
        if found is None:
            raise UsageError(f"{path}: neither results.json (a run folder) nor summary.json (a sweep folder) is there")
        path = found
    if not path.exists():
        raise UsageError(f"{path}: no such file or folder")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise UsageError(f"{path}: cannot read results: {error}") from None
    if "results" in document and "config" in document:
        return "run", path, document
    if "rows" in document and "axes" in document:
        return "sweep", path, document
    raise UsageError(f"{path}: not an mha results.json or summary.json")


def load(path: Path) -> Loaded:
    """A results.json (run), a summary.json (sweep), or a run or sweep folder."""
    kind, path, document = read_results(path)
    if kind == "run":
        entries = [Entry({}, r["impl"], r) for r in document["results"]]
        return Loaded(str(path), "run", entries, document.get("env"), document["config"])
    axes = [a["path"] for a in document["axes"]]
    entries = [Entry({a: row[a] for a in axes}, row["impl"], row) for row in document["rows"]]
    return Loaded(str(path), "sweep", entries, document.get("env"), document.get("base_config"))


@dataclass(frozen=True)
class Row:
    params: dict[str, Any]
    impl: str
    metric: str
    base: float | None
    current: float | None
    change: float | None  # current / base - 1
    verdict: str  # ok | faster | slower within noise | REGRESSION | FAIL | not compared


@dataclass
class Comparison:
    rows: list[Row] = field(default_factory=list)
    only_in_base: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    only_in_current: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    env_differences: list[str] = field(default_factory=list)
    config_differences: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[Row]:
        return [r for r in self.rows if r.verdict == "REGRESSION"]

    @property
    def failures(self) -> list[Row]:
        return [r for r in self.rows if r.verdict == "FAIL"]

    @property
    def exit_code(self) -> ExitCode:
        # A wrong answer is worse than a slow one: failures decide first.
        if self.failures:
            return ExitCode.FAILED
        if self.regressions:
            return ExitCode.REGRESSION
        return ExitCode.OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": [asdict(r) for r in self.rows],
            "only_in_base": [{"params": p, "impl": i} for p, i in self.only_in_base],
            "only_in_current": [{"params": p, "impl": i} for p, i in self.only_in_current],
            "env_differences": self.env_differences,
            "config_differences": self.config_differences,
            "regressions": len(self.regressions),
            "failures": len(self.failures),
            "exit_code": int(self.exit_code),
        }


def _judge(threshold: Threshold, base: dict[str, Any], current: dict[str, Any]) -> tuple[float | None, float | None, float | None, str]:
    column = METRICS[threshold.metric]
    before, after = base.get(column), current.get(column)
    if current.get("status") in ("fail", "error"):
        return before, after, None, "FAIL"
    if not before or after is None or base.get("status") != "ok" or current.get("status") != "ok":
        return before, after, None, "not compared"
    change = after / before - 1
    if change <= 0:
        return before, after, change, "faster" if change < -threshold.fraction else "ok"
    if change <= threshold.fraction:
        return before, after, change, "ok"
    if threshold.metric == "median":
        base_high = before + (base.get("iqr_s") or 0) / 2
        current_low = after - (current.get("iqr_s") or 0) / 2
        if current_low <= base_high:
            return before, after, change, "slower within noise"
    return before, after, change, "REGRESSION"


def _differences(a: dict[str, Any] | None, b: dict[str, Any] | None, keys: tuple[str, ...] | None = None) -> list[str]:
    if not a or not b:
        return []
    names = keys if keys is not None else tuple(sorted(set(a) | set(b)))
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in names if a.get(k) != b.get(k)]


def compare(base: Loaded, current: Loaded, thresholds: list[Threshold]) -> Comparison:
    result = Comparison(env_differences=_differences(base.env, current.env, ENV_FIELDS))
    ignore = {"name", "timing", "impls", "sweep"}
    result.config_differences = [
        d for d in _differences(
            {k: v for k, v in (base.config or {}).items() if k not in ignore},
            {k: v for k, v in (current.config or {}).items() if k not in ignore},
        )
    ]
    base_entries = {e.key: e for e in base.entries}
    current_entries = {e.key: e for e in current.entries}
    for key, entry in base_entries.items():
        if key not in current_entries:
            result.only_in_base.append((entry.params, entry.impl))
    for key, entry in current_entries.items():
        if key not in base_entries:
            result.only_in_current.append((entry.params, entry.impl))
            if entry.row.get("status") in ("fail", "error"):
                result.rows.append(Row(entry.params, entry.impl, "check", None, None, None, "FAIL"))
            continue
        for threshold in thresholds:
            before, after, change, verdict = _judge(threshold, base_entries[key].row, entry.row)
            result.rows.append(Row(entry.params, entry.impl, threshold.metric, before, after, change, verdict))
    return result
