"""``tickercast pipeline run`` end to end on small synthetic data.

One data root is shared by the tests in file order (each builds on the one before, as a user's
reruns do): the first run publishes every stage, the second skips every stage and serves, and a
failing stage then leaves everything published earlier as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.factories import REPO, TINY_PARAMS, tickercast_env

pytestmark = [pytest.mark.slow, pytest.mark.spark, pytest.mark.distributed]

DEVICES = 2
SYNTH = ["--source", "synth", "--tickers", "3", "--days", "420", "--seed", "11"]
STAGES = ("data", "preprocess", "train", "evaluate", "backtest")


def _pipeline_command(root: Path, config: Path) -> list[str]:
    tickercast = [sys.executable, "-m", "tickercast", "--config", str(config)]
    return [*tickercast, "pipeline", "run", "--data", str(root)]


def _pipeline(root: Path, config: Path, *args: str, timeout: float = 420) -> subprocess.CompletedProcess:
    command = _pipeline_command(root, config)
    return subprocess.run(
        [*command, *SYNTH, *args],
        cwd=REPO,
        env={**tickercast_env(root), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _stage_lines(output: str) -> dict[str, str]:
    """Map each stage to its line in the pipeline's final progress display.

    The display comes before the closing summary, whose ``backtest`` line is not the stage's.
    """
    lines: dict[str, str] = {}
    for line in output.splitlines():
        words = line.split()
        if words and words[0] in (*STAGES, "serve"):
            lines.setdefault(words[0], line)
    return lines


def _tree_digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _mlflow_runs(root: Path) -> list[str]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    return sorted(r.info.run_id for r in client.search_runs(experiments, max_results=1000))


def _champion(root: Path) -> str | None:
    from tickercast.model.registry_client import champion_version

    return champion_version(f"sqlite:///{root / 'mlflow.db'}")


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pipeline-config")
    params = folder / "tiny.yaml"
    params.write_text(yaml.safe_dump({**TINY_PARAMS, "batch_size": 128}))
    config = folder / "tickercast.yaml"
    settings = {
        "train": {"params_file": str(params), "max_epochs": 1},
        "spark": {"master": "local[2]", "shuffle_partitions": 2},
    }
    config.write_text(yaml.safe_dump(settings))
    return config


@pytest.fixture(scope="module")
def first_run(
    tmp_path_factory: pytest.TempPathFactory, config: Path
) -> tuple[Path, subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("pipeline-data")
    return root, _pipeline(root, config, "--no-serve", "--devices", str(DEVICES))


def test_first_run_publishes_every_stage(first_run: tuple[Path, subprocess.CompletedProcess]) -> None:
    root, result = first_run
    assert result.returncode == 0, result.stderr[-4000:]
    lines = _stage_lines(result.stderr)
    for stage in STAGES:
        assert "✔" in lines[stage], lines
    assert "not requested" in lines["serve"]

    manifest = json.loads((root / "curated" / "manifest.json").read_text())
    state = json.loads((root / ".pipeline" / "state.json").read_text())
    assert state["preprocess"]["data_version"] == manifest["data_version"]
    assert state["train"]["data_version"] == manifest["data_version"]
    champion = _champion(root)
    assert champion is not None and state["train"]["model_version"] == champion
    assert state["evaluate"]["model_version"] == champion
    # The champion's backtest: its leaderboard, and the tft rows at h = 1 and the largest horizon.
    backtest = state["backtest"]
    assert backtest["model_version"] == champion and backtest["data_version"] == manifest["data_version"]
    leaderboard = json.loads((root / backtest["leaderboard"]).read_text())
    models = {row["model"] for row in leaderboard}
    assert models == {"tft", "tft_raw", "naive", "drift", "auto_ets", "lightgbm"}
    assert [row["horizon"] for row in backtest["tft"]] == [1, max(row["horizon"] for row in leaderboard)]
    tft_h1 = next(r for r in leaderboard if r["model"] == "tft" and r["horizon"] == 1)
    assert backtest["tft"][0]["scaled_crps"] == tft_h1["scaled_crps"]
    # Each stage's full output is kept for the user.
    train_log = (root / ".pipeline" / "logs" / "train.log").read_text()
    assert " train --data " in train_log.splitlines()[0] and "promoted to champion" in train_log
    # The closing summary: curated rows, the champion and its test metrics against the naive forecast.
    assert f"v{champion}" in result.stderr
    assert "vs naive" in result.stderr
    summary = " ".join(result.stderr.split())
    assert f"backtest tft h1 sCRPS {tft_h1['scaled_crps']:.3f}" in summary
    assert "ran data, preprocess, train, evaluate, backtest" in summary


def test_second_run_skips_every_stage_and_serves(
    first_run: tuple[Path, subprocess.CompletedProcess], config: Path, tmp_path: Path
) -> None:
    root, first = first_run
    assert first.returncode == 0, "the first run failed"
    manifest_before = (root / "curated" / "manifest.json").read_bytes()
    features_before = _tree_digest(root / "curated" / "features")
    runs_before = _mlflow_runs(root)

    from tests.serve.webdriver import free_port

    port = free_port()
    log_path = tmp_path / "pipeline.log"
    command = _pipeline_command(root, config)
    command += [*SYNTH, "--devices", str(DEVICES), "--serve", "--host", "127.0.0.1", "--port", str(port)]
    started = time.monotonic()
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env={**tickercast_env(root), "COLUMNS": "200"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        ready = False
        while time.monotonic() - started < 180 and process.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
            if ready:
                break
            time.sleep(0.5)
        assert ready, log_path.read_text()[-4000:]
        tickers = httpx.get(f"http://127.0.0.1:{port}/tickers", timeout=10).json()["tickers"]
        assert len(tickers) == 3
        prediction = httpx.get(f"http://127.0.0.1:{port}/predict", params={"ticker": tickers[0]}, timeout=10)
        assert prediction.status_code == 200, prediction.text
        assert prediction.json()["model_version"] == _champion(root)
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    output = log_path.read_text()
    lines = _stage_lines(output)
    for stage in STAGES:
        assert "skipped" in lines[stage], lines
    assert f"http://127.0.0.1:{port}" in output
    assert (root / "curated" / "manifest.json").read_bytes() == manifest_before
    assert _tree_digest(root / "curated" / "features") == features_before
    assert _mlflow_runs(root) == runs_before


def test_failed_stage_keeps_earlier_outputs(
    first_run: tuple[Path, subprocess.CompletedProcess], config: Path
) -> None:
    root, first = first_run
    assert first.returncode == 0, "the first run failed"
    manifest_before = (root / "curated" / "manifest.json").read_bytes()
    features_before = _tree_digest(root / "curated" / "features")
    state_before = json.loads((root / ".pipeline" / "state.json").read_text())
    runs_before = _mlflow_runs(root)
    champion_before = _champion(root)

    # Every price becomes unreadable: the Spark job must refuse to publish.
    for path in sorted((root / "raw" / "prices").glob("*.csv")):
        header, *rows = path.read_text().splitlines()
        columns = header.split(",")
        close = columns.index("Close")
        corrupt = []
        for row in rows:
            cells = row.split(",")
            cells[close] = "n/a"
            corrupt.append(",".join(cells))
        path.write_text("\n".join([header, *corrupt]) + "\n")

    result = _pipeline(root, config, "--no-serve", "--devices", str(DEVICES))
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "preprocess failed" in errors[0], result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    lines = _stage_lines(result.stderr)
    assert "skipped" in lines["data"]
    assert "✘" in lines["preprocess"]
    assert all("not run" in lines[stage] for stage in ("train", "evaluate", "backtest"))

    assert (root / "curated" / "manifest.json").read_bytes() == manifest_before
    assert _tree_digest(root / "curated" / "features") == features_before
    state_after = json.loads((root / ".pipeline" / "state.json").read_text())
    for stage in ("preprocess", "train", "evaluate", "backtest"):
        assert state_after[stage] == state_before[stage], stage
    assert _mlflow_runs(root) == runs_before
    assert _champion(root) == champion_before
    assert os.path.getsize(root / ".pipeline" / "logs" / "preprocess.log") > 0
