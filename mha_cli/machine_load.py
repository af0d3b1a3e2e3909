"""How busy the rest of the machine was while something was timed.

Read from the OS, not guessed from the timings (a slowed call can still have a
tight IQR): the CPU time every CPU spent busy (/proc/stat), less the CPU time
this process itself used (all its threads), over the wall time and the CPU
count, is the share of the machine other processes took; steal time (a
virtual machine's CPUs given to another guest) is counted apart. Linux only;
elsewhere the load is unknown (None), and said so. No torch here.
"""

from __future__ import annotations

import os
import time
from typing import NamedTuple

# Other processes' share of the CPUs above which a measurement is flagged `busy`. A quiet 2-core
# machine shows 0-3% (the OS, the terminal); another process busy on one of its two cores, ~50%.
BUSY_SHARE = 0.15
PROC_STAT = "/proc/stat"


class Snapshot(NamedTuple):
    wall: float  # time.perf_counter()
    own: float  # this process's CPU seconds, every thread
    busy: float  # CPU seconds every CPU spent busy, since boot
    steal: float  # CPU seconds taken by other guests of the host
    cpus: int


class Load(NamedTuple):
    """Shares of the machine's CPU time over an interval: 0 = idle, 1 = every CPU."""

    others: float  # used by other processes (and the kernel on their behalf)
    steal: float  # taken by the hypervisor for other guests

    @property
    def busy(self) -> bool:
        return self.others + self.steal > BUSY_SHARE


def _cpu_seconds() -> tuple[float, float, int] | None:
    """(busy, steal) seconds summed over every CPU since boot, and the CPU count; None where unreadable."""
    try:
        with open(PROC_STAT, encoding="ascii") as stat:
            lines = stat.read().splitlines()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    total = next((line.split() for line in lines if line.startswith("cpu ")), None)
    if total is None or len(total) < 9:
        return None
    # user nice system idle iowait irq softirq steal [guest guest_nice]; guest time is inside user already.
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in total[1:9])
    cpus = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
    return (user + nice + system + irq + softirq) / ticks, steal / ticks, max(cpus, 1)


def snapshot() -> Snapshot | None:
    seconds = _cpu_seconds()
    if seconds is None:
        return None
    return Snapshot(time.perf_counter(), time.process_time(), seconds[0], seconds[1], seconds[2])


def load_between(start: Snapshot | None, end: Snapshot | None) -> Load | None:
    """Other processes' and other guests' shares of the CPUs from start to end; None when unknown."""
    if start is None or end is None:
        return None
    capacity = (end.wall - start.wall) * end.cpus
    if capacity <= 0:
        return None
    others = max(0.0, (end.busy - start.busy) - (end.own - start.own))
    return Load(min(1.0, others / capacity), min(1.0, max(0.0, end.steal - start.steal) / capacity))
