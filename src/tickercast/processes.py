"""Stopping child processes that run in their own process group (``start_new_session=True``)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence

TERMINATE_THEN_KILL = ((signal.SIGTERM, 30.0), (signal.SIGKILL, 30.0))


def stop_group(
    process: subprocess.Popen, steps: Sequence[tuple[signal.Signals, float | None]] = TERMINATE_THEN_KILL
) -> None:
    """Signal a process's whole group, one step at a time, until the process has exited.

    Each step sends its signal to the group and waits up to its seconds (``None``: for as long as
    it takes) for the group's leader to exit; a group that is already gone is not an error.

    Args:
        process: A process started with ``start_new_session=True`` (it leads its own group).
        steps: ``(signal, seconds to wait)`` pairs, gentlest first; default SIGTERM, then SIGKILL.

    """
    for sig, wait_s in steps:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue
