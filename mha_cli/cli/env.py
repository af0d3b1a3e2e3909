"""`mha env`: the software and hardware that timings depend on."""


import json

from .common import JsonOption, handle_errors, stdout_console


@handle_errors
def env(as_json: JsonOption = False) -> None:
    """Show torch, CUDA, threads, CPU and BLAS: what makes two machines time differently.

    Example:

      mha env --json
    """
    from rich.markup import escape
    from rich.table import Table

    from ..envinfo import machine_report

    report = machine_report()
    console = stdout_console()
    if as_json:
        console.file.write(json.dumps(report, indent=2) + "\n")
        return
    table = Table(title="mha environment", title_justify="left", show_header=False)
    table.add_column("item", style="bold")
    table.add_column("value")
    for key, value in report.items():
        shown = ", ".join(value) if isinstance(value, list) else ("-" if value is None else str(value))
        table.add_row(key, escape(shown or "-"))
    console.print(table)
