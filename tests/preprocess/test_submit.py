"""The spark-submit entry, run the way spark-submit runs it: as a file, not a module."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tickercast.preprocess import submit

SUBMIT = Path(submit.__file__)


def test_a_user_error_is_one_line_and_its_exit_code(tmp_path: Path, capsys) -> None:
    assert submit.main(["--data", str(tmp_path)]) == 2
    out = capsys.readouterr()
    assert "no raw prices" in out.out + out.err


def test_runs_as_a_plain_file_path(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(SUBMIT.parents[2])}
    done = subprocess.run(
        [sys.executable, str(SUBMIT), "--data", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    assert "no raw prices" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
