"""`mha compare`: match two sets of results point by point and judge the changes (the CI gate).

A point regresses on `median` when it is slower by more than the threshold AND
a rank test on the stored repetitions (Mann-Whitney U, one-sided, rank_test.py)
says CURRENT's times are larger than BASE's at the 5% level: a change the
repetitions cannot tell from the spread between them is "slower within noise".
When a side has fewer repetitions than the test needs (results written before
repetitions, or timing.repetitions below 4) a slowdown beyond the threshold is
UNDECIDED, which fails the gate like a regression (exit 3): it never passes
silently. The machine's speed drifts between runs by more than a gate's
threshold (docs/performance.md), so a time is judged against the rest of its
point: per repetition, over the geometric mean of the other implementations'
times in the same repetition (they ran moments apart in the same process). A
slowdown the whole point shares is reported as "slower with the rest", not
failed; an implementation alone at its point is judged in seconds. With
relative_to, every implementation is judged by its time over that one
implementation's in the same repetition of the same file instead, so BASE and
CURRENT may come from different machines. Memory (`peak_mem`) regresses on the
threshold alone: it is not noisy.

The gate fails closed: what BASE measured and CURRENT crashed, timed out or
got wrong fails (exit 1); what BASE measured and CURRENT lacks fails unless
allowed; nothing matched at all is an error (exit 2), never "no regression".
No torch here: results are read from JSON.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

from .errors import ExitCode, UsageError
from .rank_test import ALPHA, MIN_SAMPLES, p_slower, paired_ratios, ratio_interval
from .results import Result, read_results

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
    verdict: str  # ok | faster | slower within noise | slower with the rest | REGRESSION | UNDECIDED | FAIL | MISSING | not compared
    note: str = ""
    interval: tuple[float, float] | None = None  # of the change: Hodges-Lehmann/Moses, 90%, from the repetitions
    p_value: float | None = None  # one-sided Mann-Whitney U: that CURRENT is slower
    busy: bool = False  # measured while other processes used a noticeable share of the CPUs (either side)


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

    relative_to: str | None = None  # times judged relative to this implementation's

    @property
    def regressions(self) -> list[Row]:
        """Slower beyond the threshold: shown by the rank test (REGRESSION), or not testable (UNDECIDED)."""
        return [r for r in self.rows if r.verdict in ("REGRESSION", "UNDECIDED")]

    @property
    def busy(self) -> list[Row]:
        return [r for r in self.rows if r.busy]

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
            "regressions": len([r for r in self.regressions if r.verdict == "REGRESSION"]),
            "undecided": len([r for r in self.regressions if r.verdict == "UNDECIDED"]),
            "failures": len(self.failures),
            "missing": len(self.missing),
            "busy": len(self.busy),
            "relative_to": self.relative_to,
            "allow_missing": self.allow_missing,
            "exit_code": int(self.exit_code),
        }


class Timed(NamedTuple):
    """What a row's time is judged on: its median, and its repetitions (one value each)."""

    value: float | None
    samples: list[float]


def timed(result: Result, reference: Result | None = None) -> Timed:
    """The result's time, or relative to a reference's (same point, same file): per repetition, paired."""
    samples = _values(result.samples_s)
    if reference is None:
        return Timed(result.median_s, samples)
    if not result.median_s or not reference.median_s:
        return Timed(None, [])
    paired = paired_ratios(result.samples_s, reference.samples_s)
    return Timed(statistics.median(paired) if paired else result.median_s / reference.median_s, paired)


def _judge(threshold: Threshold, base: Result, current: Result, before: Timed, after: Timed) -> Row:
    """The verdict of one metric for one matched pair (params and impl filled in by the caller)."""
    measured_before = base.status == "ok" and bool(before.value)
    verdict: Row
    if current.status in BROKEN:
        verdict = Row({}, "", "", before.value, after.value, None, "FAIL", f"{current.status} in CURRENT: {current.reason or current.status}")
    elif measured_before and (current.status != "ok" or after.value is None):
        verdict = Row({}, "", "", before.value, after.value, None, "MISSING",
                      f"{current.status} in CURRENT: {current.reason or 'no measurement'}")
    elif not measured_before or after.value is None:
        verdict = Row({}, "", "", before.value, after.value, None, "not compared", f"{base.status} in BASE")
    elif threshold.metric == "median":
        verdict = _judge_time(threshold, before, after)
    else:
        change = after.value / before.value - 1
        word = "REGRESSION" if change > threshold.fraction else ("faster" if change < -threshold.fraction else "ok")
        verdict = Row({}, "", "", before.value, after.value, change, word)
    return replace(verdict, busy=bool(base.busy or current.busy))


def _judge_time(threshold: Threshold, before: Timed, after: Timed) -> Row:
    """Slower beyond the threshold AND by the rank test; what the repetitions cannot decide fails as UNDECIDED."""
    assert before.value and after.value
    change = after.value / before.value - 1
    interval = ratio_interval(before.samples, after.samples)
    bounds = (interval.low - 1, interval.high - 1) if interval is not None else None
    enough = min(len(before.samples), len(after.samples)) >= MIN_SAMPLES
    p = p_slower(before.samples, after.samples) if enough else None
    if change <= threshold.fraction:
        word = "faster" if change < -threshold.fraction else "ok"
        return Row({}, "", "", before.value, after.value, change, word, "", bounds, p)
    if not enough:
        sides = f"{len(before.samples)} and {len(after.samples)}"
        return Row({}, "", "", before.value, after.value, change, "UNDECIDED",
                   f"{sides} repetitions: the rank test needs {MIN_SAMPLES} on each side (timing.repetitions)", bounds)
    if p is not None and p < ALPHA:
        return Row({}, "", "", before.value, after.value, change, "REGRESSION", f"p = {p:.3g}", bounds, p)
    return Row({}, "", "", before.value, after.value, change, "slower within noise", f"p = {p:.3g}", bounds, p)


def _values(samples: list[float | None] | None) -> list[float]:
    """The repetitions that have a time (a lost one is None)."""
    return [v for v in samples or [] if v]


def _rest(entries: dict[tuple[str, str, str], Entry], key: tuple[str, str, str]) -> Result | None:
    """The other implementations timed at the same point and pass, as one yardstick: per repetition the
    geometric mean of their times (None when there is no other, or no repetition they all have)."""
    point, impl, pass_ = key
    others = [e.result for (p, i, q), e in entries.items()
              if p == point and q == pass_ and i != impl and e.result.status in ("ok", "fail") and e.result.median_s]
    if not others:
        return None
    width = min(len(o.samples_s or []) for o in others)
    per_repetition: list[float | None] = []
    for index in range(width):
        values = [o.samples_s[index] for o in others]  # type: ignore[index]
        per_repetition.append(math.exp(statistics.fmean(math.log(v) for v in values)) if all(values) else None)
    median = math.exp(statistics.fmean(math.log(o.median_s) for o in others))  # type: ignore[arg-type]
    return replace(others[0], impl="the rest", median_s=median, samples_s=per_repetition, status="ok")


def _against_the_rest(threshold: Threshold, in_seconds: Row, base: Result, current: Result,
                      base_rest: Result | None, current_rest: Result | None) -> Row:
    """Judge a time by its change against the rest of its point: per repetition, its time over the geometric mean
    of the other implementations' times in the same repetition (they ran in the same process, moments apart).
    The machine's speed, which drifts between runs by more than a gate's threshold, cancels; the code's own
    change stays. A slowdown the whole point shares is reported ("slower with the rest"), never failed: from
    inside one machine it cannot be told from the machine. With no other implementation at the point (in
    either file) the seconds decide alone."""
    if base_rest is None or current_rest is None:
        return in_seconds
    own = _judge_time(threshold, timed(base, base_rest), timed(current, current_rest))
    point = current_rest.median_s / base_rest.median_s - 1  # type: ignore[operator]
    seconds = f"in seconds {100 * (in_seconds.change or 0):+.1f}%, the rest of the point {100 * point:+.1f}%"
    if own.verdict == "faster" and in_seconds.verdict != "faster":
        own = replace(own, verdict="ok")  # the rest slowed: this one is not faster for that, and says so in the note
    if in_seconds.verdict == "REGRESSION" and own.verdict not in ("REGRESSION", "UNDECIDED") and point > threshold.fraction:
        return replace(in_seconds, verdict="slower with the rest",
                       note=f"every implementation at this point is slower ({100 * point:+.0f}%; against them this one "
                            f"is {100 * (own.change or 0):+.1f}%): the machine, or a change common to all of them")
    return replace(own, base=in_seconds.base, current=in_seconds.current,
                   note="; ".join(part for part in (own.note, f"against the rest of the point ({seconds})") if part))


def _reference(entries: dict[tuple[str, str, str], Entry], key: tuple[str, str, str], impl: str) -> Result | None:
    """The yardstick implementation's result at the same point and pass, in the same file."""
    point, _, pass_ = key
    found = entries.get((point, impl, pass_))
    return found.result if found is not None else None


def _differences(a: dict[str, Any] | None, b: dict[str, Any] | None, keys: tuple[str, ...] | None = None) -> list[str]:
    if not a or not b:
        return []
    names = keys if keys is not None else tuple(sorted(set(a) | set(b)))
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in names if a.get(k) != b.get(k)]


def compare_results(base: Loaded, current: Loaded, thresholds: list[Threshold], *, allow_missing: bool = False,
                    relative_to: str | None = None) -> Comparison:
    """Match CURRENT's results to BASE's and judge each; UsageError when nothing can be matched.
    relative_to: judge times relative to that implementation's at the same point in the same file."""
    if base.kind != current.kind:
        raise UsageError(
            f"cannot compare a {base.kind} ({base.source}) with a {current.kind} ({current.source}): "
            "compare two runs or two sweeps"
        )
    result = Comparison(base.source, current.source, env_differences=_differences(base.env, current.env, ENV_FIELDS),
                        allow_missing=allow_missing, relative_to=relative_to)
    if relative_to is not None and not any(e.impl == relative_to for e in (*base.entries, *current.entries)):
        raise UsageError(f"--relative-to {relative_to}: neither {base.source} nor {current.source} measured {relative_to}")
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
        before_result = base_entries[key].result
        if relative_to is not None and entry.impl == relative_to:
            # The yardstick's time against itself is always 1; whether it still runs and agrees is judged.
            judged = _judge(Threshold("median", math.inf), before_result, entry.result, Timed(1.0, []), Timed(1.0, []))
            if judged.verdict in ("FAIL", "MISSING"):
                result.rows.append(replace(judged, params=entry.params, impl=entry.impl, metric="check"))
            continue
        for threshold in thresholds:
            if threshold.metric == "median" and relative_to is not None:
                yardsticks = _reference(base_entries, key, relative_to), _reference(current_entries, key, relative_to)
                if None in yardsticks or any(y.status != "ok" for y in yardsticks):  # type: ignore[union-attr]
                    result.rows.append(Row(entry.params, entry.impl, threshold.metric, None, None, None, "not compared",
                                           f"{relative_to} has no time at this point in both files"))
                    continue
                before = timed(before_result, yardsticks[0])
                after = timed(entry.result, yardsticks[1])
            else:
                column = METRICS[threshold.metric]
                before = Timed(getattr(before_result, column), _values(before_result.samples_s))
                after = Timed(getattr(entry.result, column), _values(entry.result.samples_s))
            judged = _judge(threshold, before_result, entry.result, before, after)
            if threshold.metric == "median" and relative_to is None and judged.change is not None:
                judged = _against_the_rest(threshold, judged, before_result, entry.result,
                                           _rest(base_entries, key), _rest(current_entries, key))
            result.rows.append(replace(judged, params=entry.params, impl=entry.impl, metric=threshold.metric))
            if judged.verdict in ("FAIL", "MISSING"):
                break  # one row says it; the other metrics have nothing to judge
    return result
