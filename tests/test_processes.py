"""Stopping a child's whole process group."""

from __future__ import annotations

import signal
import subprocess
import time

from tickercast.processes import stop_group


def test_a_group_that_ignores_sigterm_is_killed_at_the_next_step() -> None:
    process = subprocess.Popen(["bash", "-c", 'trap "" TERM; sleep 60 & wait'], start_new_session=True)
    time.sleep(0.3)  # let bash install its trap
    started = time.monotonic()
    stop_group(process, ((signal.SIGTERM, 0.5), (signal.SIGKILL, 5.0)))
    assert process.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 5


def test_stopping_a_finished_process_is_not_an_error() -> None:
    process = subprocess.Popen(["true"], start_new_session=True)
    process.wait()
    stop_group(process)
    assert process.returncode == 0
