"""The job on a real Spark standalone cluster (a master and one worker on 127.0.0.1) via spark-submit."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tickercast.processes import stop_group

pytestmark = [pytest.mark.spark, pytest.mark.slow, pytest.mark.distributed]

REPO = Path(__file__).resolve().parents[2]


def _spark_bin() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent / "bin"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    handle = log.open("w")
    return subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _wait_for(log: Path, text: str, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        if process.poll() is not None:
            raise AssertionError(f"process exited early:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.5)
    raise AssertionError(
        f"{text!r} not seen in {log} within {timeout}s:\n{log.read_text(errors='replace')[-3000:]}"
    )


@pytest.fixture
def standalone_cluster(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A standalone master and one 1-core worker, both stopped (process groups) afterwards."""
    spark_class = str(_spark_bin() / "spark-class")
    env = {
        **os.environ,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOG_DIR": str(tmp_path / "logs"),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
    }
    port, master_ui, worker_ui = _free_port(), _free_port(), _free_port()
    url = f"spark://127.0.0.1:{port}"
    master_log, worker_log = tmp_path / "master.log", tmp_path / "worker.log"
    master = _start(
        [
            spark_class,
            "org.apache.spark.deploy.master.Master",
            *("--host", "127.0.0.1", "--port", str(port), "--webui-port", str(master_ui)),
        ],
        master_log,
        env,
    )
    processes = [master]
    try:
        _wait_for(master_log, "I have been elected leader", master)
        worker = _start(
            [
                spark_class,
                "org.apache.spark.deploy.worker.Worker",
                url,
                *("--host", "127.0.0.1", "--cores", "1", "--memory", "1g"),
                *("--webui-port", str(worker_ui), "--work-dir", str(tmp_path / "work")),
            ],
            worker_log,
            env,
        )
        processes.append(worker)
        _wait_for(worker_log, "Successfully registered with master", worker)
        yield url, env
    finally:
        for process in reversed(processes):
            stop_group(process)


def test_spark_submit_on_a_standalone_cluster_matches_local_mode(
    standalone_cluster, full_run, tmp_path: Path
) -> None:
    url, env = standalone_cluster
    local_result, local_curated, source = full_run
    root = tmp_path / "data"
    shutil.copytree(source / "raw", root / "raw")
    command = [
        str(_spark_bin() / "spark-submit"),
        "--master",
        url,
        "--conf",
        "spark.ui.enabled=false",
        "--conf",
        "spark.driver.host=127.0.0.1",
        "--conf",
        "spark.executor.memory=512m",
        "--conf",
        "spark.sql.shuffle.partitions=2",
        str(REPO / "src" / "tickercast" / "preprocess" / "submit.py"),
        "--data",
        str(root),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=480)
    assert done.returncode == 0, done.stderr[-4000:]
    manifest = json.loads((root / "curated" / "manifest.json").read_text())
    assert manifest["data_version"] == local_result.manifest.data_version
    curated = (
        pd.read_parquet(root / "curated" / "features").sort_values(["symbol", "date"]).reset_index(drop=True)
    )
    pd.testing.assert_frame_equal(curated, local_curated, check_exact=True)
    assert json.loads(done.stdout.strip().splitlines()[-1])["rows"] == len(local_curated)
