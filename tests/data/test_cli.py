from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yfinance
from typer.testing import CliRunner

from tickercast.cli import app
from tickercast.errors import UserError

from .test_fetch import RecordedTicker


def _tickercast(*args: str) -> subprocess.CompletedProcess:
    # A wide terminal, so rich does not wrap the one-line error for the assertion below.
    env = {**os.environ, "COLUMNS": "300"}
    return subprocess.run(
        [sys.executable, "-m", "tickercast", *args], capture_output=True, text=True, env=env, timeout=60
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["data", "synth", "--tickers", "0"], "--tickers must be between 1"),
        (["data", "synth", "--days", "10"], "--days must be at least 260"),
        (["data", "fetch", "--tickers", "AAPL,NOT VALID", "--start", "2024-01-02"], "invalid ticker"),
    ],
)
def test_bad_arguments_get_one_line_and_a_non_zero_exit(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = _tickercast(*args, "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("error:")
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "out").exists()


def test_unwritable_out_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = _tickercast("data", "synth", "--tickers", "2", "--days", "260", "--out", str(blocker / "data"))
    assert result.returncode == 2
    assert "cannot write to --out" in result.stderr and "Traceback" not in result.stderr


def test_synth_and_sample_commands_write_and_summarise(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "data",
            "synth",
            "--out",
            str(tmp_path),
            "--tickers",
            "3",
            "--days",
            "260",
            "--seed",
            "4",
            "--start",
            "2019-01-02",
            "--kappa",
            "0.03",
        ],
    )
    assert result.exit_code == 0, result.output
    truth = json.loads((tmp_path / "synth_truth.json").read_text())
    assert (truth["seed"], truth["tickers"], truth["kappa"], truth["start"]) == (4, 3, 0.03, "2019-01-02")
    result = runner.invoke(app, ["data", "sample", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "raw" / "prices" / "sample-msft.csv").exists()
    again = runner.invoke(
        app,
        [
            "data",
            "synth",
            "--out",
            str(tmp_path),
            "--tickers",
            "3",
            "--days",
            "260",
            "--seed",
            "5",
            "--start",
            "2019-01-02",
        ],
    )
    assert isinstance(again.exception, UserError) and "--force" in str(again.exception)


def test_fetch_command_reports_an_unknown_ticker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(yfinance, "Ticker", RecordedTicker)
    runner = CliRunner()
    ok = runner.invoke(
        app,
        [
            "data",
            "fetch",
            "--out",
            str(tmp_path),
            "--tickers",
            "AAPL,MSFT",
            "--start",
            "2024-01-02",
            "--end",
            "2024-01-08",
            "--indices",
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert len(list((tmp_path / "raw").rglob("*.csv"))) == 5
    bad = runner.invoke(
        app,
        [
            "data",
            "fetch",
            "--out",
            str(tmp_path / "x"),
            "--tickers",
            "QQQQQQ",
            "--start",
            "2024-01-02",
            "--end",
            "2024-01-08",
        ],
    )
    assert isinstance(bad.exception, UserError) and "QQQQQQ" in str(bad.exception)
