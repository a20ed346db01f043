"""Shared test-data factories: a curated synthetic market and a tiny trained model.

Other test packages (serving, pipeline) import these; keep the signatures stable.

- :func:`make_curated` writes a synthetic market (raw CSVs, ``synth_truth.json``,
  ``synth_oracle.parquet``) and the curated dataset + manifest computed from it with
  :func:`tickercast.features.curate.curate`, the Spark job's feature kernel on one machine (no JVM).
- :func:`train_tiny_model` trains a tiny TFT through the real CLI in a subprocess and returns the
  bundle folder; the model is registered in ``root``'s MLflow store and is the champion.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
TINY_PARAMS = {
    "hidden_size": 8,
    "attention_head_size": 1,
    "dropout": 0.0,
    "hidden_continuous_size": 4,
    "learning_rate": 0.01,
    "gradient_clip_val": 0.5,
    "max_encoder_length": 10,
    "batch_size": 32,
}


def write_curated(root: Path, frame: pd.DataFrame, data_version: str | None = None) -> Path:
    """Publish ``frame`` as ``root/curated/features/*.parquet`` plus a manifest; returns the features dir."""
    features = root / "curated" / "features"
    features.mkdir(parents=True, exist_ok=True)
    for old in features.glob("*.parquet"):
        old.unlink()
    path = features / "part-00000.parquet"
    frame.to_parquet(path, index=False)
    digest = data_version or hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    per_symbol = frame.groupby("symbol")["date"].agg(["min", "max", "size"])
    manifest = {
        "run_id": f"factory-{digest}",
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "schema_version": 1,
        "feature_spec": "factory",
        "mode": "full",
        "data_version": digest,
        "input_files": [],
        "counts": {"read": len(frame), "valid": len(frame), "quarantined": 0, "written": len(frame)},
        "symbols": {
            s: {"first_date": str(r["min"]), "last_date": str(r["max"]), "rows": int(r["size"])}
            for s, r in per_symbol.iterrows()
        },
    }
    (root / "curated" / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return features


def make_curated(root: Path, tickers: int = 6, days: int = 520, seed: int = 3, kappa: float = 0.02) -> Path:
    """Write a synthetic market and its curated dataset under ``root``.

    Args:
        root: The data root (created if needed).
        tickers: Number of synthetic tickers.
        days: Trading days (the first 200 are the indicator warm-up).
        seed: Random seed.
        kappa: Strength of the planted sentiment signal.

    Returns:
        ``root``.

    """
    from tickercast.data.synth import generate_market
    from tickercast.features.curate import curate, read_raw

    root.mkdir(parents=True, exist_ok=True)
    generate_market(root, tickers=tickers, days=days, seed=seed, kappa=kappa)
    curated = curate(read_raw(root, "prices"), read_raw(root, "indices"), read_raw(root, "news"))
    write_curated(root, curated)
    return root


def kernel_rows(symbols: dict[str, int], seed: int = 0) -> pa.Table:
    """Rows as the job hands them to the feature kernel: grouped by symbol, in date order, numbered."""
    import numpy as np
    import pyarrow as pa

    from tickercast import schema
    from tickercast.features import indicators

    rng = np.random.default_rng(seed)
    parts = []
    for symbol, n in symbols.items():
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
        previous = np.concatenate([[np.nan], close[:-1]])
        mean = np.where(rng.random(n) < 0.3, rng.uniform(-1, 1, n), np.nan)
        dates = [dt.date(2020, 1, 1) + dt.timedelta(days=d) for d in range(n)]
        parts.append(
            pa.table(
                {
                    schema.DATE: pa.array(dates, pa.date32()),
                    schema.SYMBOL: [symbol] * n,
                    schema.OPEN: close,
                    schema.HIGH: close * 1.01,
                    schema.LOW: close * 0.99,
                    schema.CLOSE: close,
                    schema.VOLUME: np.full(n, 1000.0),
                    schema.TIME_IDX: np.arange(n, dtype=np.int64),
                    indicators.SENTIMENT_MEAN: pa.array(mean, mask=np.isnan(mean)),
                    schema.NEWS_COUNT: pa.array(np.where(np.isnan(mean), 0, 2), mask=np.isnan(mean)),
                    indicators.PREVIOUS_CLOSE: pa.array(previous, mask=np.isnan(previous)),
                    indicators.ROW_NUMBER: np.arange(1, n + 1, dtype=np.int64),
                }
            )
        )
    return pa.concat_tables(parts)


def kernel_batches(table: pa.Table, size: int) -> list[pa.RecordBatch]:
    """Cut ``table`` into record batches of ``size`` rows, as Spark hands them to a worker."""
    return table.combine_chunks().to_batches(max_chunksize=size)


def tickercast_env(root: Path) -> dict[str, str]:
    """Environment for a ``python -m tickercast`` subprocess: quiet, local, no stray settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TICKERCAST_") and k not in ("MLFLOW_TRACKING_URI", "LOCAL_RANK", "NODE_RANK")
    }
    env.update(
        {
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "1",
            "PYTHONWARNINGS": "ignore",
            "OMP_NUM_THREADS": "1",
        }
    )
    return env


def write_params(path: Path, **overrides: object) -> Path:
    """Write a tiny-model params YAML (``TINY_PARAMS`` with overrides) and return its path."""
    import yaml

    path.write_text(yaml.safe_dump({**TINY_PARAMS, **overrides}))
    return path


def run_train(
    root: Path, *args: str, timeout: float = 300, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``python -m tickercast train --data root ARGS`` in a subprocess and return the result.

    Args:
        root: The data root.
        *args: More command-line arguments.
        timeout: Seconds before the run is killed.
        check: Raise ``AssertionError`` (with the output) when the command fails.
        env: Extra environment variables (e.g. ``TICKERCAST_TRAIN__PATIENCE``).

    """
    cmd = [PYTHON, "-m", "tickercast", "train", "--data", str(root), *args]
    result = subprocess.run(
        cmd,
        cwd=REPO,
        env={**tickercast_env(root), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


def train_tiny_model(root: Path, max_epochs: int = 2) -> Path:
    """Train a tiny TFT on ``root``'s curated data (one process) and return its bundle folder.

    Creates the curated data first when ``root`` has none. The model is registered in
    ``root``'s MLflow store (``sqlite:///root/mlflow.db``) and, as the first version, is the champion.
    """
    if not (root / "curated" / "manifest.json").is_file():
        make_curated(root)
    params = write_params(root / "tiny-params.yaml")
    run_train(root, "--devices", "1", "--params", str(params), "--max-epochs", str(max_epochs))
    latest = json.loads((root / "checkpoints" / "latest.json").read_text())
    bundle = root / "bundles" / latest["run_id"]
    if not (bundle / "manifest.json").is_file():
        raise AssertionError(f"training left no bundle at {bundle}")
    return bundle
