"""Latency of one ticker's forecast: the fast input path beside pytorch-forecasting's dataset, in one run.

Two measurements, each with the fast path (``tickercast.model.windows``, the product path) and the
``TimeSeriesDataSet`` path it replaced (``tests/model/reference.py``, swapped in for the timing
only), calls interleaved so that both see the same machine load:

- the model part: ``bundle.predict_paths`` on one ticker's last ``min_history_rows`` curated rows
  (model rows, windows, forward pass, quantile paths);
- end to end: ``POST /forecast`` with the ticker's raw OHLCV history through FastAPI's TestClient
  (validation, raw -> curated features, the model part, calibration, the JSON response).

    .venv/bin/python benchmarks/forecast_latency.py --demo /tmp/demo1     # a demo run's bundle and data
    .venv/bin/python benchmarks/forecast_latency.py --demo /tmp/demo1 --calls 50 --json /tmp/lat.json

The demo folder is copied to a temporary folder first and never modified. Torch's thread count is
left as the process finds it unless ``--threads`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests/model/reference.py is the old path

from tests.model import reference  # noqa: E402

from tickercast.model import inference  # noqa: E402
from tickercast.model.bundle import ModelBundle  # noqa: E402


@contextmanager
def dataset_path() -> Iterator[None]:
    """Route inference through pytorch-forecasting's dataset (the old path) inside the block."""
    fast = inference.forecast_rows
    inference.forecast_rows = reference.forecast_rows  # type: ignore[assignment]
    try:
        yield
    finally:
        inference.forecast_rows = fast


def timed(calls: int, warmup: int, run: Callable[[], object]) -> tuple[list[float], list[float]]:
    """Interleave ``calls`` timed runs of the fast and the dataset path; seconds per call of each."""
    for _ in range(warmup):
        run()
        with dataset_path():
            run()
    fast: list[float] = []
    slow: list[float] = []
    for _ in range(calls):
        start = time.perf_counter()
        run()
        fast.append(time.perf_counter() - start)
        with dataset_path():
            start = time.perf_counter()
            run()
            slow.append(time.perf_counter() - start)
    return fast, slow


def summary(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95))}


def prepare(demo: Path, work: Path) -> tuple[Path, Path]:
    """Copy the demo's newest bundle and its curated data and raw prices under ``work``."""
    bundles = sorted((demo / "bundles").iterdir(), key=lambda p: p.stat().st_mtime)
    if not bundles:
        raise SystemExit(f"no bundle under {demo / 'bundles'}")
    bundle = work / "bundle"
    shutil.copytree(bundles[-1], bundle)
    root = work / "data"
    shutil.copytree(demo / "curated", root / "curated")
    shutil.copytree(demo / "raw", root / "raw")
    return bundle, root


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--demo", type=Path, default=Path("/tmp/demo1"), help="a demo run's folder")
    parser.add_argument("--ticker", default=None, help="ticker to forecast (default: the first)")
    parser.add_argument("--calls", type=int, default=200, help="timed calls per path")
    parser.add_argument("--warmup", type=int, default=10, help="untimed calls per path first")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--skip-http", action="store_true", help="time the model part only")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    import torch
    from fastapi.testclient import TestClient

    from tickercast.config import load_settings
    from tickercast.serve.app import create_app

    if args.threads:
        torch.set_num_threads(args.threads)
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="forecast-latency-") as tmp:
        bundle_dir, root = prepare(args.demo, Path(tmp))
        bundle = ModelBundle.load(bundle_dir)
        curated = pd.read_parquet(root / "curated" / "features")
        ticker = args.ticker or sorted(curated["symbol"].unique())[0]
        need = int(bundle.metadata["min_history_rows"])
        rows = curated[curated["symbol"] == ticker].sort_values("date").tail(need)
        fast, slow = timed(args.calls, args.warmup, lambda: bundle.predict_paths(rows))
        result: dict[str, object] = {
            "ticker": ticker,
            "bundle": bundle_dir.name,
            "curated_rows": len(rows),
            "calls": args.calls,
            "torch_threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
            "machine": platform.processor() or platform.machine(),
            "load_at_start": load_start,
            "model_part": {"fast": summary(fast), "dataset": summary(slow)},
        }
        if not args.skip_http:
            files = sorted((root / "raw" / "prices").glob("*.csv"))
            prices = pd.concat([pd.read_csv(f, dtype={"Date": str}) for f in files], ignore_index=True)
            prices = prices[prices["Symbol"] == ticker].sort_values("Date").tail(need + 250)
            history = prices[["Date", "Open", "High", "Low", "Close", "Volume"]].to_dict(orient="records")
            settings = load_settings(
                overrides={"data_root": root, "serve": {"reload_interval_s": 0, "model_dir": bundle_dir}}
            )
            with TestClient(create_app(settings)) as client:
                deadline = time.monotonic() + 120
                while client.get("/readyz").status_code != 200:
                    if time.monotonic() > deadline:
                        raise SystemExit("the service did not become ready in 120 s")
                    time.sleep(0.2)
                body = {"ticker": ticker, "history": history}

                def post() -> None:
                    response = client.post("/forecast", json=body)
                    response.raise_for_status()

                fast, slow = timed(args.calls, args.warmup, post)
            result["http_forecast"] = {
                "raw_rows": len(history),
                "fast": summary(fast),
                "dataset": summary(slow),
            }
        result["load_at_end"] = os.getloadavg()[0]
    for part in ("model_part", "http_forecast"):
        if part in result:
            figures = result[part]
            assert isinstance(figures, dict)
            ratio = figures["dataset"]["p50_ms"] / figures["fast"]["p50_ms"]
            figures["p50_ratio"] = ratio
            fast_ms, slow_ms = figures["fast"], figures["dataset"]
            print(
                f"{part:14s} fast p50 {fast_ms['p50_ms']:7.1f} ms  p95 {fast_ms['p95_ms']:7.1f} ms"
                f" | dataset p50 {slow_ms['p50_ms']:7.1f} ms  p95 {slow_ms['p95_ms']:7.1f} ms"
                f" | {ratio:4.1f}x"
            )
    print(json.dumps(result, indent=2, default=str))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
