"""`mha compare`: the CI gate between two runs or sweeps."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import ExitCode
from .common import JsonOption, handle_errors, stderr_console, stdout_console


def _format(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    if metric == "median":
        from ..report.rows import format_seconds

        return format_seconds(value)
    from ..memory import format_bytes

    return format_bytes(value)


def _table_rows(comparison) -> tuple[list[str], list[list[str]]]:  # type: ignore[no-untyped-def]
    headers = ["point", "impl", "metric", "base", "current", "change", "verdict", "note"]
    body = []
    for row in comparison.rows:
        point = " ".join(f"{k}={v}" for k, v in row.params.items()) or "-"
        change = f"{100 * row.change:+.1f}%" if row.change is not None else "-"
        body.append([point, row.impl, row.metric, _format(row.metric, row.base), _format(row.metric, row.current), change,
                     row.verdict, row.note])
    return headers, body


def _notes(comparison, thresholds) -> list[str]:  # type: ignore[no-untyped-def]
    lines = []
    for params, impl in comparison.only_in_base:
        lines.append(f"only in BASE: {' '.join(f'{k}={v}' for k, v in params.items()) or '-'} {impl}")
    for params, impl in comparison.only_in_current:
        lines.append(f"only in CURRENT: {' '.join(f'{k}={v}' for k, v in params.items()) or '-'} {impl}")
    code = comparison.exit_code
    gates = ", ".join(map(str, thresholds))
    if comparison.missing:
        allowed = " (allowed by --allow-missing)" if comparison.allow_missing else "; pass --allow-missing if that is expected"
        lines.append(f"MISSING: {len(comparison.missing)} result(s) measured in BASE have no measurement in CURRENT{allowed}")
    if comparison.failures:
        lines.append(f"FAIL: {len(comparison.failures)} result(s) in CURRENT failed the correctness check, crashed or timed out (exit 1)")
    if code == ExitCode.FAILED:
        if not comparison.failures:
            lines.append("FAIL: CURRENT is missing results BASE measured (exit 1)")
    elif code == ExitCode.REGRESSION:
        lines.append(f"REGRESSION: {len(comparison.regressions)} point(s) beyond {gates} and the noise (exit 3)")
    else:
        lines.append(f"OK: no regression beyond {gates} and the noise")
    return lines


@handle_errors
def compare(
    base: Annotated[Path, typer.Argument(metavar="BASE", help="results.json, summary.json, or a run or sweep folder.", show_default=False)],
    current: Annotated[Path, typer.Argument(metavar="CURRENT", help="The same kinds of results to judge against BASE.", show_default=False)],
    fail_on: Annotated[
        list[str] | None,
        typer.Option("--fail-on", metavar="METRIC:PCT%", help="Regression threshold, repeatable: median:10% (default), peak_mem:20%."),
    ] = None,
    allow_missing: Annotated[
        bool, typer.Option("--allow-missing", help="Do not fail when results measured in BASE are missing from CURRENT.")
    ] = False,
    as_json: JsonOption = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print a Markdown table (for a CI job summary).")] = False,
) -> None:
    """Compare CURRENT results with BASE, point by point, and fail on regressions.

    Points are matched by their swept parameters and implementation; unmatched
    ones are listed. A point regresses when it is slower than the threshold AND
    its interquartile range lies entirely above the base one. The gate fails
    closed. Exit codes: 0 no regression; 3 a regression; 1 a result in CURRENT
    failed its check, crashed or timed out, or one measured in BASE is missing
    (unless --allow-missing); 2 bad input or nothing to match.
    A warning (not a failure) says when the two ran on different machines or software.

    Examples:

      mha compare baseline/results.json outputs/latest --fail-on median:10%

      mha compare main-sweep/ pr-sweep/ --fail-on median:5% --fail-on peak_mem:20% --markdown >> $GITHUB_STEP_SUMMARY
    """
    from ..compare import Threshold, compare_results, load

    thresholds = [Threshold.parse(text) for text in (fail_on or ["median:10%"])]
    before, after = load(base), load(current)
    comparison = compare_results(before, after, thresholds, allow_missing=allow_missing)
    err = stderr_console()
    if comparison.env_differences:
        err.print("warning: BASE and CURRENT ran in different environments; timings may not be comparable: "
                  + "; ".join(comparison.env_differences), highlight=False, markup=False)
    if comparison.config_differences:
        err.print("warning: the base configs differ: " + "; ".join(comparison.config_differences), highlight=False, markup=False)
    if as_json:
        from ..report.files import to_json

        document: dict[str, Any] = {"base": before.source, "current": after.source,
                                    "fail_on": [str(t) for t in thresholds], **comparison.to_dict()}
        sys.stdout.write(to_json(document))  # NaN and infinity as null: always valid JSON
    elif markdown:
        from ..report.markdown import markdown_table

        headers, body = _table_rows(comparison)
        lines = [f"## mha compare: {before.source} -> {after.source}", "", markdown_table(headers, body), ""]
        lines += [f"- {line}" for line in _notes(comparison, thresholds)]
        typer.echo("\n".join(lines))
    else:
        from rich.markup import escape
        from rich.table import Table

        headers, body = _table_rows(comparison)
        table = Table(title=escape(f"{before.source} -> {after.source}"), title_justify="left", header_style="bold")
        for header in headers:
            table.add_column(header)
        styles = {"REGRESSION": "bold red", "FAIL": "bold red", "MISSING": "bold red", "faster": "green", "slower within noise": "yellow"}
        for row in body:
            cells = [escape(c) for c in row]
            style = styles.get(row[6])
            cells[6] = f"[{style}]{cells[6]}[/]" if style else cells[6]
            table.add_row(*cells)
        out = stdout_console()
        out.print(table)
        for line in _notes(comparison, thresholds):
            out.print(escape(line), highlight=False)
    if comparison.exit_code != ExitCode.OK:
        raise typer.Exit(int(comparison.exit_code))
