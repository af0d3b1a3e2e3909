"""Result records: what a run found, in a form that survives JSON round trips.

No torch here: `mha compare` and the report writers read results without it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from .errors import UsageError

SCHEMA_VERSION = 2  # 2: explain --json became {steps, totals, check}
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
    median_s: float | None = None
    iqr_s: float | None = None
    runs: int | None = None  # measurements behind the median
    noisy: bool | None = None  # IQR/median > 10%, or fewer than 3 runs
    flops: int | None = None
    gflops: float | None = None
    peak_mem_bytes: int | None = None
    max_abs_err: float | None = None
    grad_max_abs_err: float | None = None  # largest gradient error against float64 autograd (training passes)
    atol: float | None = None  # the absolute tolerance this row was held to
    speedup_vs_torch: float | None = None
    density: float | None = None  # allowed (query, key) pairs / (N * H * L * S)
    compile_s: float | None = None  # FlexAttention: compilation before the first call, not in the median
    plan_s: float | None = None  # blocked: building its block plan (once per shape), not in the median
    peak_gflops: float | None = None  # this machine's matmul GFLOP/s in this dtype and thread count (peak.py)
    checked_rows: int | None = None  # query rows compared with the reference (all, or evenly spread)
    ok: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {("pass" if key == "pass_" else key): value for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Result:
        known = {f.name for f in fields(cls)}
        data = {("pass_" if key == "pass" else key): value for key, value in data.items()}
        return cls(**{k: v for k, v in data.items() if k in known})


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
        return all(r.status in ("ok", "skipped") for r in self.results)

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
            results=[Result.from_dict(r) for r in data["results"]],
        )


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
        return "run", path, document
    if isinstance(document, dict) and isinstance(document.get("rows"), list) and isinstance(document.get("axes"), list):
        return "sweep", path, document
    got = f"a JSON {type(document).__name__}" if not isinstance(document, dict) else "a JSON object of another kind"
    raise UsageError(f"{path}: not an mha results.json or summary.json (it holds {got})")
