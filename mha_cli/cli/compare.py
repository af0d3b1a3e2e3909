"""`mha compare`: the CI gate between two runs or sweeps."""


import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import ExitCode
from .common import JsonOption, handle_errors, stderr_console, stdout_console


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
    relative_to: Annotated[
        str | None,
        typer.Option("--relative-to", metavar="IMPL", help="Judge each implementation by its time over IMPL's alone at the "
                     "same point in the same file, repetition by repetition (for BASE and CURRENT from different "
                     "machines, IMPL one that did not change, e.g. sdpa)."),
    ] = None,
    as_json: JsonOption = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print a Markdown table (for a CI job summary).")] = False,
) -> None:
    """Compare CURRENT results with BASE, point by point, and fail on regressions.

    Points are matched by their swept parameters and implementation; unmatched
    ones are listed. A time is judged against the rest of its point (per
    repetition, over the other implementations' times beside it: the machine's
    speed cancels), in seconds when it is alone there. It regresses when it is
    slower than the threshold AND a rank test on the repetitions (Mann-Whitney
    U, 5%) says so; a slowdown the repetitions cannot decide (fewer than 4 a
    side) is UNDECIDED and fails too. A slowdown the whole point shares is
    "slower with the rest": the machine, not a failure.
    The gate fails closed. Exit codes: 0 no regression; 3 a regression or an
    undecided slowdown; 1 a result in CURRENT failed its check, crashed or timed
    out, or one measured in BASE is missing (unless --allow-missing); 2 bad input
    or nothing to match. Rows measured on a busy machine are marked. A warning
    (not a failure) says when the two ran on different machines or software.

    Examples:

      mha compare baseline/results.json outputs/latest --fail-on median:10%

      mha compare main-sweep/ pr-sweep/ --fail-on median:5% --fail-on peak_mem:20% --markdown >> $GITHUB_STEP_SUMMARY

      mha compare main-sweep/ pr-sweep/ --relative-to sdpa
    """
    from ..compare import Threshold, compare_results, load

    thresholds = [Threshold.parse(text) for text in (fail_on or ["median:10%"])]
    before, after = load(base), load(current)
    comparison = compare_results(before, after, thresholds, allow_missing=allow_missing, relative_to=relative_to)
    err = stderr_console()
    if comparison.env_differences:
        err.print("warning: BASE and CURRENT ran in different environments; timings may not be comparable: "
                  + "; ".join(comparison.env_differences), highlight=False, markup=False)
    if comparison.config_differences:
        err.print("warning: the base configs differ: " + "; ".join(comparison.config_differences), highlight=False, markup=False)
    if as_json:
        from ..results import to_json

        document: dict[str, Any] = {"fail_on": [str(t) for t in thresholds], **comparison.to_dict()}
        sys.stdout.write(to_json(document))  # NaN and infinity as null: always valid JSON
    elif markdown:
        from ..report.compare_tables import comparison_markdown

        typer.echo(comparison_markdown(comparison, thresholds))
    else:
        from ..report.compare_tables import print_comparison

        print_comparison(stdout_console(), comparison, thresholds)
    if comparison.exit_code != ExitCode.OK:
        raise typer.Exit(int(comparison.exit_code))
