"""SIGTERM and SIGHUP end a command the way Ctrl-C does.

CI runners and Slurm send SIGTERM on a timeout; a closed terminal sends
SIGHUP. Both become `Interrupted`, a KeyboardInterrupt, so every place that
keeps work safe on Ctrl-C (a sweep's summary marked `interrupted`, an isolated
point's process group killed, temporary folders removed) does the same for
them. The exit code is 128 + the signal number, as a shell reports it.
"""

from __future__ import annotations

import signal
from types import FrameType


class Interrupted(KeyboardInterrupt):
    """A signal asked the command to stop."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def exit_code_for(interrupt: KeyboardInterrupt) -> int:
    return 128 + getattr(interrupt, "signum", signal.SIGINT)


def signal_name(interrupt: KeyboardInterrupt) -> str:
    return signal.Signals(getattr(interrupt, "signum", signal.SIGINT)).name


_stopping = False


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    global _stopping
    if _stopping:  # a second signal while the first is being handled: let the clean-up finish
        return
    _stopping = True
    raise Interrupted(signum)


def install_handlers() -> None:
    """Turn SIGTERM and SIGHUP into Interrupted. A SIGHUP that is ignored (nohup) stays ignored."""
    signal.signal(signal.SIGTERM, _raise_interrupted)
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signal.signal(signal.SIGHUP, _raise_interrupted)
