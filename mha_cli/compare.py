"""`mha compare`: match two sets of results point by point and judge the changes (the CI gate).

A point regresses on `median` when it is slower by more than the threshold AND
the gap is larger than the measurement noise: the current interquartile range,
taken as median +- IQR/2, lies entirely above the base one (with fewer than 3
timed runs on either side the noise is unknown and the slowdown stands).
Memory (`peak_mem`) regresses on the threshold alone: it is not noisy.

The gate fails closed: what BASE measured and CURRENT crashed, timed out or
got wrong fails (exit 1); what BASE measured and CURRENT lacks fails unless
allowed; nothing matched at all is an error (exit 2), never "no regression".
No torch here: results are read from JSON.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import ExitCode, UsageError
from .results import MIN_RUNS, Result, read_results

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
    result: Result

    @property
    def impl(self) -> str:
        return self.result.impl

    @property
    def key(self) -> tuple[str, str, str]:
        # The pass timed is part of what is measured: a backward never matches a forward.
        # Results written before passes existed timed the forward (Result's default).
        return json.dumps(self.params, sort_keys=True), self.impl, self.result.pass_


@dataclass
class Loaded:
    source: str
    kind: str  # "run" or "sweep"
    entries: list[Entry]
    env: dict[str, Any] | None
    config: dict[str, Any] | None  # a run's config, a sweep's base config


def _result(path: Path, data: Any, where: str) -> Result:
    try:
        return Result.from_dict(data, where)
    except ValueError as error:
        raise UsageError(f"{path}: {error}") from None


def load(path: Path) -> Loaded:
    """A results.json (run), a summary.json (sweep), or a run or sweep folder."""
    kind, path, document = read_results(path)
    if kind == "run":
        entries = [Entry({}, _result(path, r, f"results[{i}]")) for i, r in enumerate(document["results"])]
        return Loaded(str(path), "run", entries, _mapping(document.get("env")), document["config"])
    try:
        axes = [str(a["path"]) for a in document["axes"]]
    except (TypeError, KeyError):
        raise UsageError(f"{path}: its `axes` are not a list of {{path, values}}") from None
    entries = []
    for index, row in enumerate(document["rows"]):
        result = _result(path, row, f"rows[{index}]")
        try:
            params = {a: row[a] for a in axes}
        except KeyError as missing:
            raise UsageError(f"{path}: rows[{index}] has no value for the swept {missing}") from None
        entries.append(Entry(params, result))
    return Loaded(str(path), "sweep", entries, _mapping(document.get("env")), _mapping(document.get("base_config")))


def _mapping(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


@dataclass(frozen=True)
class Row:
    params: dict[str, Any]
    impl: str
    metric: str
    base: float | None
    current: float | None
    change: float | None  # current / base - 1
    verdict: str  # ok | faster | slower within noise | REGRESSION | FAIL | MISSING | not compared
    note: str = ""


# CURRENT statuses that fail the gate where BASE has a measurement: it crashed, timed out or was wrong.
BROKEN = ("fail", "error", "crashed", "timeout")


@dataclass
class Comparison:
    base: str  # where BASE and CURRENT were read from
    current: str
    rows: list[Row] = field(default_factory=list)
    only_in_base: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    only_in_current: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    env_differences: list[str] = field(default_factory=list)
    config_differences: list[str] = field(default_factory=list)
    allow_missing: bool = False

    @property
    def regressions(self) -> list[Row]:
        return [r for r in self.rows if r.verdict == "REGRESSION"]

    @property
    def failures(self) -> list[Row]:
        return [r for r in self.rows if r.verdict == "FAIL"]

    @property
    def missing(self) -> list[Row]:
        """What BASE measured and CURRENT did not (absent, or skipped there)."""
        return [r for r in self.rows if r.verdict == "MISSING"]

    @property
    def exit_code(self) -> ExitCode:
        # Fail closed: a wrong answer, a crash, or a gap in CURRENT decides before a slowdown.
        if self.failures or (self.missing and not self.allow_missing):
            return ExitCode.FAILED
        if self.regressions:
            return ExitCode.REGRESSION
        return ExitCode.OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "current": self.current,
            "rows": [asdict(r) for r in self.rows],
            "only_in_base": [{"params": p, "impl": i} for p, i in self.only_in_base],
            "only_in_current": [{"params": p, "impl": i} for p, i in self.only_in_current],
            "env_differences": self.env_differences,
            "config_differences": self.config_differences,
            "regressions": len(self.regressions),
            "failures": len(self.failures),
            "missing": len(self.missing),
            "allow_missing": self.allow_missing,
            "exit_code": int(self.exit_code),
        }


def _few_runs(result: Result) -> bool:
    return result.runs is None or result.runs < MIN_RUNS


def _judge(threshold: Threshold, base: Result, current: Result) -> tuple[float | None, float | None, float | None, str, str]:
    column = METRICS[threshold.metric]
    before, after = getattr(base, column), getattr(current, column)
    measured_before = base.status == "ok" and bool(before)
    if current.status in BROKEN:
        return before, after, None, "FAIL", f"{current.status} in CURRENT: {current.reason or current.status}"
    if measured_before and (current.status != "ok" or after is None):
        return before, after, None, "MISSING", f"{current.status} in CURRENT: {current.reason or 'no measurement'}"
    if not measured_before or after is None:
        return before, after, None, "not compared", f"{base.status} in BASE"
    change = after / before - 1
    if change <= 0:
        return before, after, change, "faster" if change < -threshold.fraction else "ok", ""
    if change <= threshold.fraction:
        return before, after, change, "ok", ""
    if threshold.metric == "median":
        if _few_runs(base) or _few_runs(current):
            # An IQR from one or two measurements is no evidence of noise: the slowdown stands.
            return before, after, change, "REGRESSION", f"fewer than {MIN_RUNS} timed runs: noise unknown"
        base_high = before + (base.iqr_s or 0) / 2
        current_low = after - (current.iqr_s or 0) / 2
        if current_low <= base_high:
            return before, after, change, "slower within noise", ""
    return before, after, change, "REGRESSION", ""


def _differences(a: dict[str, Any] | None, b: dict[str, Any] | None, keys: tuple[str, ...] | None = None) -> list[str]:
    if not a or not b:
        return []
    names = keys if keys is not None else tuple(sorted(set(a) | set(b)))
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in names if a.get(k) != b.get(k)]


def compare_results(base: Loaded, current: Loaded, thresholds: list[Threshold], *, allow_missing: bool = False) -> Comparison:
    """Match CURRENT's results to BASE's and judge each; UsageError when nothing can be matched."""
    if base.kind != current.kind:
        raise UsageError(
            f"cannot compare a {base.kind} ({base.source}) with a {current.kind} ({current.source}): "
            "compare two runs or two sweeps"
        )
    result = Comparison(base.source, current.source, env_differences=_differences(base.env, current.env, ENV_FIELDS),
                        allow_missing=allow_missing)
    ignore = {"name", "timing", "impls", "sweep"}
    result.config_differences = [
        d for d in _differences(
            {k: v for k, v in (base.config or {}).items() if k not in ignore},
            {k: v for k, v in (current.config or {}).items() if k not in ignore},
        )
    ]
    base_entries = {e.key: e for e in base.entries}
    current_entries = {e.key: e for e in current.entries}
    if not base_entries.keys() & current_entries.keys():
        raise UsageError(
            f"nothing to compare: no (point, implementation, pass) of {current.source} matches one of {base.source} "
            "(different sweep grids, implementations or timing.pass?)"
        )
    for key, entry in base_entries.items():
        if key not in current_entries:
            result.only_in_base.append((entry.params, entry.impl))
            if entry.result.status == "ok":
                result.rows.append(Row(entry.params, entry.impl, "all", None, None, None, "MISSING", "not in CURRENT"))
    for key, entry in current_entries.items():
        if key not in base_entries:
            result.only_in_current.append((entry.params, entry.impl))
            if entry.result.status in BROKEN:
                result.rows.append(Row(entry.params, entry.impl, "check", None, None, None, "FAIL",
                                       f"{entry.result.status} in CURRENT"))
            continue
        judged = [_judge(threshold, base_entries[key].result, entry.result) for threshold in thresholds]
        for threshold, (before, after, change, verdict, note) in zip(thresholds, judged, strict=True):
            result.rows.append(Row(entry.params, entry.impl, threshold.metric, before, after, change, verdict, note))
            if verdict in ("FAIL", "MISSING"):
                break  # one row says it; the other metrics have nothing to judge
    return result
