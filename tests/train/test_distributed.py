"""Distributed training: Lightning-launched DDP on one node, torchrun with two nodes, and resume.

Lightning's DDP launcher re-runs the command line for the other ranks, so these tests start the
real CLI in subprocesses (never DDP inside pytest).
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.factories import PYTHON, REPO, make_curated, run_train, tickercast_env, write_params

pytestmark = [pytest.mark.slow, pytest.mark.distributed]

BATCH = 32


@pytest.fixture(scope="module")
def small_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Curated data small enough for multi-process runs to be quick (3 tickers, 300 days)."""
    root = make_curated(tmp_path_factory.mktemp("ddp-data"), tickers=3, days=300, seed=5)
    write_params(root / "p.yaml", batch_size=BATCH)
    return root


def _fresh(small_root: Path, tmp_path: Path) -> Path:
    """A data root with the shared curated data and an empty MLflow store."""
    root = tmp_path / "data"
    (root / "curated").mkdir(parents=True)
    for item in ("features", "manifest.json"):
        src = small_root / "curated" / item
        dst = root / "curated" / item
        if src.is_dir():
            dst.mkdir()
            for f in src.iterdir():
                (dst / f.name).write_bytes(f.read_bytes())
        else:
            dst.write_bytes(src.read_bytes())
    return root


def _client(root: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{(root / 'mlflow.db').resolve()}")


def _training_runs(client: MlflowClient) -> list:
    experiment = client.get_experiment_by_name("tickercast")
    return client.search_runs([experiment.experiment_id])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_process_ddp_trains_registers_and_resumes_in_the_same_run(
    small_root: Path, tmp_path: Path
) -> None:
    root = _fresh(small_root, tmp_path)
    params = str(small_root / "p.yaml")
    run_train(root, "--devices", "2", "--params", params, "--max-epochs", "1")

    client = _client(root)
    (run,) = _training_runs(client)
    run_id = run.info.run_id
    assert run.info.status == "FINISHED"
    assert run.data.tags["world_size"] == "2"
    # Each rank trained on its own half of the samples (distributed sampler, last batch dropped).
    samples = int(run.data.params["data.train_samples"])
    assert run.data.metrics["train_batches_per_rank"] == math.ceil(samples / 2) // BATCH
    version = client.get_model_version_by_alias("tickercast-tft", "champion")
    assert (str(version.version), version.run_id) == ("1", run_id)
    record = json.loads((root / "checkpoints" / "latest.json").read_text())
    assert record["run_id"] == run_id
    assert (root / "checkpoints" / run_id / "last.ckpt").is_file()
    assert (root / "checkpoints" / run_id / "best.ckpt").is_file()

    run_train(root, "--devices", "2", "--params", params, "--max-epochs", "2", "--resume")

    runs = _training_runs(client)
    assert [r.info.run_id for r in runs] == [run_id], "resume must not create another run"
    epochs = client.get_metric_history(run_id, "epoch")
    assert sorted(int(m.value) for m in epochs) == [1, 2], "epoch 2 continues the run; epoch 1 is not redone"
    assert len(client.get_metric_history(run_id, "val_loss")) == 2
    assert client.get_run(run_id).data.tags.get("resumed") == "true"
    # The resumed run registered its own bundle; version 1 still points at the first one.
    v1, v2 = (client.get_model_version("tickercast-tft", v) for v in ("1", "2"))
    assert v1.source != v2.source and v2.run_id == run_id


def test_resume_without_a_previous_run_is_a_clear_error(small_root: Path, tmp_path: Path) -> None:
    root = _fresh(small_root, tmp_path)
    result = run_train(root, "--devices", "1", "--resume", check=False)
    assert result.returncode == 2
    assert "nothing to resume" in result.stderr
    assert "Traceback" not in result.stderr


def test_torchrun_with_two_nodes_on_loopback_trains_and_registers(small_root: Path, tmp_path: Path) -> None:
    root = _fresh(small_root, tmp_path)
    port = _free_port()
    torchrun = str(Path(PYTHON).parent / "torchrun")
    node_cmd = [
        torchrun,
        "--nnodes", "2",
        "--nproc-per-node", "1",
        "--rdzv-backend", "c10d",
        "--rdzv-endpoint", f"127.0.0.1:{port}",
        "--rdzv-id", "tickercast-test",
        "-m", "tickercast", "train",
        "--data", str(root), "--num-nodes", "2", "--devices", "1",
        "--params", str(small_root / "p.yaml"), "--max-epochs", "1",
    ]  # fmt: skip
    env = tickercast_env(root)
    nodes = [
        subprocess.Popen(
            node_cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(2)
    ]
    try:
        outputs = [node.communicate(timeout=300)[0] for node in nodes]
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
                node.wait()
    assert [n.returncode for n in nodes] == [0, 0], "\n".join(outputs)

    client = _client(root)
    (run,) = _training_runs(client)
    assert run.info.status == "FINISHED"
    assert run.data.tags["world_size"] == "2"
    assert run.data.params["train.num_nodes"] == "2"
    assert client.get_model_version_by_alias("tickercast-tft", "champion").run_id == run.info.run_id
