"""Run one stage as a ``python -m tickercast <stage>`` child process and turn its failure into one line.

The child runs in its own process group, so that stopping the stage also stops what it started
(Spark's JVM, the other DDP ranks), and its full output goes to the stage's log file.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from pathlib import Path

from tickercast.errors import UserError
from tickercast.processes import stop_group

_KEPT_LINES = 500  # of a stage's output, in memory, to find its error line


class StageFailed(UserError):
    """A stage exited with an error; the message is that error on one line."""

    exit_code = 1


def run_cli(
    stage: str, args: list[str], *, cli_prefix: list[str], log_path: Path, on_line: Callable[[str], None]
) -> list[str]:
    """Run ``python -m tickercast <args>`` as a child process, logging its output to the stage's log.

    Args:
        stage: The stage name, for the error message.
        args: The sub-command and its options.
        cli_prefix: Root options passed on before the sub-command (``--config FILE``).
        log_path: The file that receives the full output.
        on_line: Called with each line of output as it arrives (the progress display shows it).

    Returns:
        The last lines of output (the full output is in the log file).

    Raises:
        StageFailed: The process exited non-zero; the message holds its error line.

    """
    command = [sys.executable, "-m", "tickercast", *cli_prefix, *args]
    env = {**os.environ, "COLUMNS": "160", "PYTHONUNBUFFERED": "1"}
    lines: deque[str] = deque(maxlen=_KEPT_LINES)
    with log_path.open("w") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            bufsize=1,
            env=env,
            start_new_session=True,
        )
        try:
            assert process.stdout is not None
            for line in process.stdout:
                log.write(line)
                log.flush()
                stripped = line.rstrip()
                if stripped:
                    lines.append(stripped)
                    on_line(stripped)
            returncode = process.wait()
        except BaseException:  # Ctrl-C, or the display failed: stop the stage and all it started
            _stop_group(process)
            raise
        finally:
            _reap_group(process.pid)
    if returncode != 0:
        raise StageFailed(f"{stage} failed: {_error_line(list(lines), returncode)} (full log: {log_path})")
    return list(lines)


def _stop_group(process: subprocess.Popen, grace_s: float = 10.0) -> None:
    """Interrupt a stage's process group as Ctrl-C would, then terminate what is left."""
    stop_group(process, ((signal.SIGINT, grace_s), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)))


def _reap_group(pgid: int) -> None:
    """Stop processes a finished stage left behind in its group (e.g. an orphaned JVM)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, 0)
        os.killpg(pgid, signal.SIGTERM)


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b")


def _error_line(lines: list[str], returncode: int) -> str:
    """Pick the line that says what went wrong.

    In order: the CLI's one-line ``error:`` message; else the exception line that ends a Python
    traceback (with the Java error that a Py4J exception line announces); else the last line that
    is not a stack frame.
    """
    for line in reversed(lines):
        text = line.strip()
        if text.lower().startswith("error:"):
            return text[len("error:") :].strip()
    for index in range(len(lines) - 1, -1, -1):
        if _EXCEPTION_LINE.match(lines[index]):
            text = lines[index].strip()
            follow = lines[index + 1].strip() if index + 1 < len(lines) else ""
            if follow.startswith(": "):
                text += " " + follow
            return text[:300]
    for line in reversed(lines):
        text = line.strip()
        if text and line == line.lstrip() and not text.startswith(("[", "│", "╰", "╭", "─", "File ")):
            return text[:300]
    return f"exit code {returncode}"
