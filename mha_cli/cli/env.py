"""`mha env`: the software and hardware that timings depend on."""


import json
from dataclasses import asdict

from .common import (
    JsonOption,
    ReprobeOption,
    handle_errors,
    stderr_console,
    stdout_console,
)


@handle_errors
def env(as_json: JsonOption = False, reprobe: ReprobeOption = False) -> None:
    """Show torch, CUDA, threads, CPU and BLAS: what makes two machines time differently,
    the matmul peak that GFLOP/s are shown against (float32, this many threads), the copy
    bandwidth that GB/s are shown against, and every
    implementation `impls` can name: built in, or offered by an installed package.

    Examples:

      mha env --json

      mha env --reprobe
    """
    from rich.markup import escape
    from rich.table import Table

    from ..bandwidth import bandwidth
    from ..envinfo import machine_report
    from ..peak import cache_folder, peak_gflops

    report = machine_report()
    import torch

    peak = peak_gflops("float32", torch.get_num_threads(), torch.device("cpu"), reprobe=reprobe,
                       probing=lambda: stderr_console().print("measuring the matmul peak (about half a second)"))
    report["matmul_peak"] = asdict(peak) if as_json else peak.describe()
    memory = bandwidth(torch.get_num_threads(), torch.device("cpu"), reprobe=reprobe,
                       probing=lambda: stderr_console().print("measuring the memory bandwidth (about half a second)"))
    report["memory_bandwidth"] = asdict(memory) if as_json else memory.describe()
    report["peak_cache"] = str(cache_folder())
    console = stdout_console()
    if as_json:
        console.file.write(json.dumps(report, indent=2) + "\n")
        return
    table = Table(title="mha environment", title_justify="left", show_header=False)
    table.add_column("item", style="bold")
    table.add_column("value")
    for key, value in report.items():
        if key == "implementations":
            value = [f"{entry['name']} ({entry['origin']})" for entry in value]
        shown = ", ".join(value) if isinstance(value, list) else ("-" if value is None else str(value))
        table.add_row(key, escape(shown or "-"))
    console.print(table)
