"""Result records: what a run found, in one typed, versioned form that survives JSON round trips.

Every reader (compare, sweep summaries, pictures, reports) goes through here:
read_results checks the document's schema_version (a newer one than this mha
knows is refused, older ones are read), and Result.from_dict checks every
number it reads. No torch here: `mha compare` and the report writers read
results without it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from .errors import UsageError

SCHEMA_VERSION = 3  # 3: results carry their repetitions (samples_s) and the machine's load; 2: sweep rows carry
# every result field, explain --json became {steps, totals, check}. Older files are read as they are.
NOISY_IQR_RATIO = 0.10  # IQR/median above this is flagged noisy: the machine was busy
MIN_RUNS = 3  # fewer timed runs give no IQR worth the name: flagged noisy too

Status = Literal["ok", "fail", "skipped", "error"]


@dataclass(frozen=True)
class Result:
    """One implementation measured on one config."""

    impl: str
    variant: str
    dtype: str
    device: str
    status: Status  # ok: agreed and timed; fail: disagreed; skipped: could not run here; error: crashed
    reason: str = ""  # why it failed/was skipped, and notes such as undefined rows
    scope: str = "layer"  # what was timed: the whole layer, or the attention core alone
    pass_: str = "forward"  # `pass` in JSON: forward, backward (alone) or forward_backward
    median_s: float | None = None  # the median of samples_s (of every measurement, before repetitions existed)
    iqr_s: float | None = None  # of the repetitions' medians; None with fewer than MIN_RUNS measurements
    runs: int | None = None  # measurements behind the median, over every repetition
    noisy: bool | None = None  # IQR/median > 10%, or fewer than 3 runs
    samples_s: list[float] | None = None  # one median per repetition, in repetition order: what compare tests
    load: float | None = None  # other processes' share of the CPUs while this point was timed (None: unknown)
    steal: float | None = None  # other guests' share (virtual machines)
    busy: bool | None = None  # load + steal above machine_load.BUSY_SHARE: the timing is not to be trusted
    flops: int | None = None
    gflops: float | None = None
    peak_mem_bytes: int | None = None
    max_abs_err: float | None = None
    grad_max_abs_err: float | None = None  # largest gradient error against float64 autograd (training passes)
    atol: float | None = None  # the absolute tolerance this row was held to
    speedup_vs_torch: float | None = None  # the median of the repetitions' ratios torch / this
    speedup_interval: list[float] | None = None  # [low, high]: an interval of at least 90% for that median (order statistics)
    density: float | None = None  # allowed (query, key) pairs / (N * H * L * S)
    compile_s: float | None = None  # FlexAttention: compilation before the first call, not in the median
    plan_s: float | None = None  # blocked: building its block plan (once per shape), not in the median
    peak_gflops: float | None = None  # this machine's matmul GFLOP/s in this dtype and thread count (peak.py)
    bytes_moved: int | None = None  # what one call must read and write at least (measure.count_bytes)
    gb_per_s: float | None = None  # bytes_moved / median, in 1e9
    bandwidth_gb_per_s: float | None = None  # this machine's copy bandwidth at this thread count (bandwidth.py)
    checked_rows: int | None = None  # query rows compared with the reference (all, or evenly spread)
    ok: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {("pass" if key == "pass_" else key): value for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Any, where: str = "a result") -> Result:
        """A result read back from JSON (a run's `results`, a sweep's `rows`): ValueError naming `where` and the
        field when it is not one mha writes. Fields written before they existed take their defaults."""
        if not isinstance(data, dict) or not isinstance(data.get("impl"), str) or not isinstance(data.get("status"), str):
            raise ValueError(f"{where} is not a result (it needs `impl` and `status`)")
        known = {f.name for f in fields(cls)}
        values = {("pass_" if key == "pass" else key): value for key, value in data.items()}
        values = {k: v for k, v in values.items() if k in known}
        for name in NUMBERS:
            if values.get(name) is not None:
                values[name] = _number(values[name], f"{where}.{name}")
        for name in LISTS:
            if values.get(name) is not None:
                if not isinstance(values[name], list):
                    raise ValueError(f"{where}.{name} is not a list of numbers")
                # samples_s: null is a repetition that was lost, as mha writes it; a number must be finite.
                numbers = [_number(v, f"{where}.{name}[{i}]") if v is not None or name not in NULLABLE else None
                           for i, v in enumerate(values[name])]
                if any(n is None and v is not None for n, v in zip(numbers, values[name], strict=True)):
                    raise ValueError(f"{where}.{name} holds a value that is not finite")
                values[name] = numbers
        for name in ("variant", "dtype", "device"):  # sweep rows before schema 2 did not repeat them
            values.setdefault(name, "")
        return cls(**values)


# The numeric fields a reader checks: finite (non-finite reads as None), not booleans, within float range.
NUMBERS = ("median_s", "iqr_s", "runs", "flops", "gflops", "peak_mem_bytes", "max_abs_err", "grad_max_abs_err", "atol",
           "speedup_vs_torch", "density", "compile_s", "plan_s", "peak_gflops", "checked_rows", "load", "steal",
           "bytes_moved", "gb_per_s", "bandwidth_gb_per_s")
LISTS = ("samples_s", "speedup_interval")  # lists of such numbers, every one finite
NULLABLE = ("samples_s",)  # ... or null: a lost repetition


def _number(value: Any, where: str) -> float | int | None:
    try:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError
        number = float(value)
    except (TypeError, OverflowError):
        raise ValueError(f"{where} is {str(value)[:40]!r}, not a number mha writes") from None
    if not math.isfinite(number):
        return None
    return value if isinstance(value, int) else number


@dataclass(frozen=True)
class ShapeRow:
    tensor: str
    shape: list[int] | None
    axes: str  # e.g. "(L=10, N=5, E=64)"
    note: str = ""


@dataclass(frozen=True)
class RunReport:
    """What run_experiment found: the resolved config, the environment, the shapes, and one Result per
    implementation. to_dict() is the JSON `mha run --json` prints; from_dict() reads it back.

    Example:

        >>> from mha_cli import RunReport
        >>> import json, pathlib
        >>> report = RunReport.from_dict(json.loads(pathlib.Path(folder, "results.json").read_text()))  # doctest: +SKIP
        >>> [(r.impl, r.status, r.median_s) for r in report.results]  # doctest: +SKIP
    """

    mha_version: str
    created: str  # UTC, ISO 8601
    config: dict[str, Any]
    env: dict[str, Any]
    shapes: dict[str, list[int] | None]
    results: list[Result]
    shape_table: list[ShapeRow] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    @property
    def ok(self) -> bool:
        """Every implementation that ran agrees with the reference, and one ran at least: a run in which every
        implementation was skipped measured nothing (exit 1, as a sweep with no result)."""
        statuses = [r.status for r in self.results]
        return "ok" in statuses and all(status in ("ok", "skipped") for status in statuses)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "mha_version": self.mha_version,
            "created": self.created,
            "config": self.config,
            "env": self.env,
            "shapes": self.shapes,
            "shape_table": [asdict(row) for row in self.shape_table],
            "results": [r.to_dict() for r in self.results],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunReport:
        return cls(
            schema_version=data["schema_version"],
            mha_version=data["mha_version"],
            created=data["created"],
            config=data["config"],
            env=data["env"],
            shapes=data["shapes"],
            shape_table=[ShapeRow(**row) for row in data.get("shape_table", [])],
            results=[Result.from_dict(r, f"results[{i}]") for i, r in enumerate(data["results"])],
        )


def _json_safe(value: Any) -> Any:
    """JSON has no NaN or infinity: write them as null rather than emit invalid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def to_json(document: dict[str, Any]) -> str:
    """A results document as the text mha writes: indented, NaN and infinity as null."""
    return json.dumps(_json_safe(document), indent=2, allow_nan=False, default=str) + "\n"


def check_schema(document: dict[str, Any], path: Path) -> None:
    """Refuse a document a newer mha wrote (its fields may mean other things); older ones are read as they are."""
    version = document.get("schema_version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise UsageError(f"{path}: its schema_version {str(version)[:20]!r} is not one mha writes")
    if version > SCHEMA_VERSION:
        raise UsageError(f"{path}: written by a newer mha (schema_version {version}; this mha reads up to "
                         f"{SCHEMA_VERSION}); upgrade mha to read it")


def read_results(path: Path) -> tuple[str, Path, dict[str, Any]]:
    """("run" | "sweep", the JSON file, its document) for a results.json, a summary.json, or their folder.

    Anything that is not such a document (garbage, another JSON value, another tool's
    file) is a UsageError naming the file, never a traceback.
    """
    if path.is_dir():
        found = next((path / name for name in ("results.json", "summary.json") if (path / name).exists()), None)
        if found is None:
            raise UsageError(f"{path}: neither results.json (a run folder) nor summary.json (a sweep folder) is there")
        path = found
    if not path.exists():
        raise UsageError(f"{path}: no such file or folder")
    try:
        text = path.read_bytes().decode("utf-8")
        document = json.loads(text)
    except OSError as error:
        raise UsageError(f"{path}: cannot be read: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text, so not an mha results.json or summary.json") from None
    except (json.JSONDecodeError, RecursionError) as error:
        raise UsageError(f"{path}: not valid JSON ({error}); is it an mha results.json or summary.json?") from None
    if isinstance(document, dict) and isinstance(document.get("results"), list) and isinstance(document.get("config"), dict):
        check_schema(document, path)
        return "run", path, document
    if isinstance(document, dict) and isinstance(document.get("rows"), list) and isinstance(document.get("axes"), list):
        check_schema(document, path)
        return "sweep", path, document
    got = f"a JSON {type(document).__name__}" if not isinstance(document, dict) else "a JSON object of another kind"
    raise UsageError(f"{path}: not an mha results.json or summary.json (it holds {got})")
