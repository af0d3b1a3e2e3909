from mha_cli.report.markdown import markdown_table, run_markdown

from ..helpers import sample_report


def test_markdown_table_escapes_pipes() -> None:
    table = markdown_table(["a", "b"], [["x|y", "z"]])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| x\\|y | z |"]


def test_run_markdown_has_both_tables_and_the_verdict() -> None:
    text = run_markdown(sample_report())
    assert "## Shapes" in text and "## Timing and agreement" in text
    assert "| torch | ok |" in text and "| sdpa | skipped |" in text
    assert "**OK: torch agrees with" in text and "sdpa (skipped): no kernel" in text
