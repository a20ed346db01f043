"""Training benchmark: DDP throughput with 1 and 2 processes, and the demo model on the real sample.

Usage::

    .venv/bin/python benchmarks/train_bench.py [--tickers 12] [--days 700] [--epochs 3] [--out DIR]

1. Generates a synthetic market, computes the curated features with the pandas twin of the Spark
   job, and trains the same model for the same fixed number of epochs (early stopping off) with
   ``--devices 1`` and ``--devices 2``; reports training samples/s (samples of the training split x
   epochs / fit time, validation included) as logged by the run, and the ratio.
2. Writes the real offline sample (``tickercast data sample``), preprocesses it (the Spark job with
   ``--spark``, else the pandas twin), and times ``tickercast train --devices 2`` with the default
   ``configs/tft.yaml``; reports the demo model's test metrics against the naive forecast.

Every training goes through the real CLI in a subprocess (DDP re-executes the command line).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
BENCH_PARAMS = {
    "hidden_size": 16,
    "attention_head_size": 2,
    "dropout": 0.1,
    "hidden_continuous_size": 8,
    "learning_rate": 0.01,
    "gradient_clip_val": 0.1,
    "max_encoder_length": 30,
    "batch_size": 64,
}


def curate_with_pandas(root: Path) -> float:
    """Compute and publish the curated dataset with the pandas twin; return seconds taken."""
    import hashlib

    from pandas_features import compute_features
    from tickercast.features.curate import read_raw

    started = time.perf_counter()
    curated = compute_features(read_raw(root, "prices"), read_raw(root, "indices"), read_raw(root, "news"))
    features = root / "curated" / "features"
    features.mkdir(parents=True, exist_ok=True)
    path = features / "part-00000.parquet"
    curated.to_parquet(path, index=False)
    manifest = {
        "run_id": "benchmark",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "schema_version": 1,
        "feature_spec": "benchmark",
        "mode": "full",
        "data_version": hashlib.sha256(path.read_bytes()).hexdigest()[:16],
        "counts": {"written": len(curated)},
    }
    (root / "curated" / "manifest.json").write_text(json.dumps(manifest))
    return time.perf_counter() - started


def curate_with_spark(root: Path) -> float:
    """Run the Spark preprocessing job on ``root``; return seconds taken (JVM start included)."""
    started = time.perf_counter()
    subprocess.run(
        [PYTHON, "-m", "tickercast", "preprocess", "--data", str(root)], cwd=REPO, check=True, env=_env()
    )
    return time.perf_counter() - started


def _env(**extra: str) -> dict[str, str]:
    dropped = ("MLFLOW_TRACKING_URI", "OMP_NUM_THREADS")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKERCAST_") and k not in dropped}
    # One intra-op thread per process in every configuration (what Lightning's DDP picks on 2 cores),
    # so the ratio measures data parallelism across processes. On a shared machine, letting a single
    # process spread OpenMP threads over busy cores was far slower (see docs/benchmarks.md).
    env.update(
        {"MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1", **extra}
    )
    return env


def train(root: Path, *args: str, env: dict[str, str] | None = None) -> tuple[float, dict, dict]:
    """Run ``tickercast train`` on ``root``; return wall seconds, the run's metrics and params."""
    from mlflow import MlflowClient

    started = time.perf_counter()
    subprocess.run(
        [PYTHON, "-m", "tickercast", "train", "--data", str(root), *args],
        cwd=REPO,
        check=True,
        env=_env(**(env or {})),
        capture_output=True,
    )
    wall = time.perf_counter() - started
    run_id = json.loads((root / "checkpoints" / "latest.json").read_text())["run_id"]
    run = MlflowClient(f"sqlite:///{(root / 'mlflow.db').resolve()}").get_run(run_id)
    return wall, run.data.metrics, run.data.params


def fresh_copy(curated_root: Path, target: Path) -> Path:
    """A data root with ``curated_root``'s curated data (and synth truth) but no MLflow store."""
    target.mkdir(parents=True)
    shutil.copytree(curated_root / "curated", target / "curated")
    for name in ("synth_truth.json", "synth_oracle.parquet"):
        if (curated_root / name).exists():
            shutil.copy(curated_root / name, target / name)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=12)
    parser.add_argument("--days", type=int, default=700)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--spark", action="store_true", help="Preprocess the real sample with the Spark job")
    parser.add_argument("--out", type=Path, default=None, help="Keep the data here (default: a temp dir)")
    args = parser.parse_args(argv)

    from tickercast.data.sample import write_sample
    from tickercast.data.synth import generate_market

    work = args.out or Path(tempfile.mkdtemp(prefix="tickercast-train-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    import yaml

    params = work / "bench-params.yaml"
    params.write_text(yaml.safe_dump(BENCH_PARAMS))

    load_before = os.getloadavg()
    # 1. Throughput: 1 vs 2 DDP processes, same data, same epochs, no early stopping.
    synth = work / "synth"
    if not (synth / "curated" / "manifest.json").exists():
        generate_market(synth, tickers=args.tickers, days=args.days, seed=7)
        curate_with_pandas(synth)
    rows = []
    for devices in (1, 2):
        root = work / f"ddp-{devices}"
        shutil.rmtree(root, ignore_errors=True)
        fresh_copy(synth, root)
        wall, metrics, run_params = train(
            root,
            *("--devices", str(devices), "--params", str(params), "--max-epochs", str(args.epochs)),
            env={"TICKERCAST_TRAIN__PATIENCE": str(args.epochs + 1)},
        )
        rows.append(
            {
                "processes": devices,
                "train_samples": int(run_params["data.train_samples"]),
                "epochs": int(metrics["epoch"]),
                "samples_per_s": metrics["train_samples_per_second"],
                "command_wall_s": wall,
            }
        )
    ratio = rows[1]["samples_per_s"] / rows[0]["samples_per_s"]

    # 2. The demo model on the real sample, as `make demo` trains it (2 processes, configs/tft.yaml).
    real = work / "real"
    shutil.rmtree(real, ignore_errors=True)
    write_sample(real)
    prep_s = curate_with_spark(real) if args.spark else curate_with_pandas(real)
    demo_wall, demo, demo_params = train(real, "--devices", "2")

    print(f"# Training benchmark ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}")
    load_after = os.getloadavg()
    print(f"load average (1/5/15 min) before: {load_before}, after: {load_after}")
    print(f"synthetic data: {args.tickers} tickers x {args.days} days; {args.epochs} epochs")
    print(f"params: {BENCH_PARAMS}")
    print()
    print("| DDP processes | training samples | epochs | samples/s | command wall time (s) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['processes']} | {r['train_samples']} | {r['epochs']} | {r['samples_per_s']:.0f} "
            f"| {r['command_wall_s']:.1f} |"
        )
    print(f"\nratio 2-process / 1-process samples/s: {ratio:.2f}")
    print()
    print(
        f"demo (real sample, {'Spark job' if args.spark else 'pandas twin'} preprocessing {prep_s:.1f} s): "
        f"`tickercast train --devices 2` wall time {demo_wall:.1f} s, {int(demo['epoch'])} epochs "
        f"(max {demo_params['train.max_epochs']}, early-stopping patience {demo_params['train.patience']}), "
        f"{demo_params['data.train_samples']} training samples"
    )
    print()
    print("| forecast (test split) | MAE | RMSE | MAPE % |")
    print("|---|---|---|---|")
    print(f"| TFT median | {demo['test_mae']:.3f} | {demo['test_rmse']:.3f} | {demo['test_mape']:.3f} |")
    naive = (demo["test_naive_mae"], demo["test_naive_rmse"], demo["test_naive_mape"])
    print("| naive | {:.3f} | {:.3f} | {:.3f} |".format(*naive))
    print(
        f"\nskill vs naive {demo['test_skill_vs_naive']:+.2%}; pinball {demo['test_pinball']:.3f}; "
        f"P10-P90 coverage {demo['test_coverage_p10_p90']:.1%}; {int(demo['test_samples'])} test forecasts"
    )
    if args.out is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
