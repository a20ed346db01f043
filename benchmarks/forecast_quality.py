"""Forecast quality: walk-forward backtests of the TFT against the baselines, as a user runs them.

Two data sets, each through the CLI a user types (``data``, ``preprocess``, ``train --through``,
``backtest``), the TFT trained once on the data before the first origin:

- ``real``: the real sample's full histories (``data sample --all``), origins every 5 trading days
  from 2018-07 on, so that the last 500 trading days of every ticker with enough history are
  covered;
- ``synth``: a simulated market with a planted news signal, where the oracle (the planted part of
  each next-day return) is known, so the TFT's error can be set beside the best possible one.

Prints the figures ``docs/forecast-quality.md`` records and writes them to ``OUT/results.json``.

    .venv/bin/python benchmarks/forecast_quality.py --out /tmp/fq            # both, ~25 min
    .venv/bin/python benchmarks/forecast_quality.py --out /tmp/fq --which synth
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
STEP = 5
HORIZON = 5
REAL_ORIGINS = 330  # every 5 trading days from 2018-07-24 to the data's end (2025-02)
SYNTH = {"tickers": 20, "days": 1000, "seed": 7, "kappa": 0.02}
SYNTH_ORIGINS = 60


def cli(*args: str) -> None:
    """Run one tickercast command (the same process a user starts), echoing it."""
    command = [sys.executable, "-m", "tickercast", *args]
    print("$ tickercast", " ".join(args), flush=True)
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    print(f"  ({time.perf_counter() - started:.0f} s)", flush=True)


def first_origin(root: Path, origins: int) -> tuple[str, str]:
    """Return (the day before the first origin, the first origin) for ``origins`` origins."""
    from tickercast.train.backtest import choose_origins

    dates = sorted(pd.to_datetime(pd.read_parquet(root / "curated" / "features", columns=["date"])["date"]))
    days = sorted({d.date() for d in dates})
    chosen = choose_origins(days, origins, STEP, HORIZON)
    return days[days.index(chosen[0]) - 1].isoformat(), chosen[0].isoformat()


def latest_run(root: Path) -> Path:
    """Return the newest backtest run folder under ``root``."""
    return sorted((root / "reports" / "backtest").glob("2*"))[-1]


def leaderboard(run: Path) -> pd.DataFrame:
    """The run's leaderboard rows."""
    return pd.DataFrame(json.loads((run / "leaderboard.json").read_text()))


def per_ticker_tail(run: Path) -> pd.DataFrame:
    """TFT coverage and MAE relative to naive per ticker and horizon, on the rows both forecast."""
    records = pd.read_parquet(run / "records.parquet").dropna(subset=["actual"])
    key = ["symbol", "origin", "horizon"]
    tft = records[records["model"] == "tft"]
    naive = records.loc[records["model"] == "naive", [*key, "q50"]].rename(columns={"q50": "naive_q50"})
    both = tft.merge(naive, on=key, how="inner")
    both = both.assign(
        lo=both["c_q10"].where(both["c_q10"].notna(), both["q10"]),
        median=both["c_q50"].where(both["c_q50"].notna(), both["q50"]),
        hi=both["c_q90"].where(both["c_q90"].notna(), both["q90"]),
    )
    rows = []
    for (symbol, horizon), group in both.groupby(["symbol", "horizon"]):
        origins = sorted(group["origin"].unique())
        rows.append(
            {
                "symbol": symbol,
                "horizon": int(horizon),
                "origins": len(origins),
                "span": f"{origins[0]} .. {origins[-1]}",
                "coverage_80": float(group["actual"].between(group["lo"], group["hi"]).mean()),
                "mae_vs_naive": float(
                    np.mean(np.abs(group["actual"] - group["median"]))
                    / np.mean(np.abs(group["actual"] - group["naive_q50"]))
                ),
            }
        )
    return pd.DataFrame(rows)


def run_real(out: Path, devices: int) -> dict:
    """The real sample's full histories."""
    root = out / "real"
    cli("data", "sample", "--all", "--out", str(root), "--force")
    cli("preprocess", "--data", str(root), "--full")
    through, first = first_origin(root, REAL_ORIGINS)
    cli("train", "--data", str(root), "--through", through, "--devices", str(devices))
    cli("backtest", "--data", str(root), "--origins", str(REAL_ORIGINS), "--step", str(STEP))
    run = latest_run(root)
    return {
        "run": str(run),
        "through": through,
        "first_origin": first,
        "board": leaderboard(run),
        "tickers": per_ticker_tail(run),
    }


def run_synth(out: Path, devices: int) -> dict:
    """A simulated market with a planted signal and its oracle."""
    root = out / "synth"
    cli(
        "data",
        "synth",
        "--out",
        str(root),
        "--tickers",
        str(SYNTH["tickers"]),
        "--days",
        str(SYNTH["days"]),
        "--seed",
        str(SYNTH["seed"]),
        "--kappa",
        str(SYNTH["kappa"]),
        "--force",
    )
    cli("preprocess", "--data", str(root), "--full")
    through, first = first_origin(root, SYNTH_ORIGINS)
    cli("train", "--data", str(root), "--through", through, "--devices", str(devices))
    cli("backtest", "--data", str(root), "--origins", str(SYNTH_ORIGINS), "--step", str(STEP))
    run = latest_run(root)
    records = pd.read_parquet(run / "records.parquet")
    oracle = pd.read_parquet(root / "synth_oracle.parquet")
    oracle = oracle.assign(origin=pd.to_datetime(oracle["date"]).dt.date, symbol=oracle["symbol"].astype(str))
    one = records[(records["horizon"] == 1) & records["model"].isin(["tft", "tft_raw", "naive"])].dropna(
        subset=["actual"]
    )
    one = one.merge(oracle[["symbol", "origin", "planted"]], on=["symbol", "origin"], how="inner")
    median = one["c_q50"].where(one["c_q50"].notna(), one["q50"]) if "c_q50" in one else one["q50"]
    one = one.assign(
        error=np.abs(one["actual"] - median), oracle_error=np.abs(one["actual"] - one["planted"])
    )
    by_model = one.groupby("model")[["error", "oracle_error"]].mean()
    naive_mae = float(by_model.loc["naive", "error"])
    oracle_mae = float(by_model.loc["tft", "oracle_error"])
    return {
        "run": str(run),
        "through": through,
        "first_origin": first,
        "board": leaderboard(run),
        "h1": {
            model: {
                "mae": float(row["error"]),
                "mae_vs_naive": float(row["error"]) / naive_mae,
                "mae_vs_oracle": float(row["error"]) / oracle_mae,
            }
            for model, row in by_model.iterrows()
        },
        "oracle_vs_naive": oracle_mae / naive_mae,
    }


def show(name: str, result: dict) -> None:
    """Print a result in the shape of docs/forecast-quality.md."""
    board = result["board"]
    columns = [
        "horizon",
        "rank",
        "model",
        "n",
        "scaled_crps",
        "mae_vs_naive",
        "mae_vs_naive_lo",
        "mae_vs_naive_hi",
        "coverage_80",
        "width_80",
        "direction_accuracy",
    ]
    print(f"\n== {name}: TFT trained through {result['through']}, first origin {result['first_origin']}")
    print(board[board["horizon"].isin([1, HORIZON])][columns].to_string(index=False, float_format="%.4f"))
    if "tickers" in result:
        print(result["tickers"].to_string(index=False, float_format="%.3f"))
    if "h1" in result:
        print("h=1 against the oracle:", json.dumps(result["h1"], indent=1))
        print(f"oracle / naive MAE: {result['oracle_vs_naive']:.3f}")


def main() -> None:
    """Run the chosen data sets and print and save their figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="Folder for the data roots and results.")
    parser.add_argument("--which", nargs="+", choices=["real", "synth"], default=["real", "synth"])
    parser.add_argument("--devices", type=int, default=2, help="DDP processes for training.")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in args.which:
        started = time.perf_counter()
        result = run_real(args.out, args.devices) if name == "real" else run_synth(args.out, args.devices)
        result["seconds"] = time.perf_counter() - started
        show(name, result)
        results[name] = result
    serialisable = {
        name: {k: (v.to_dict(orient="records") if isinstance(v, pd.DataFrame) else v) for k, v in r.items()}
        for name, r in results.items()
    }
    (args.out / "results.json").write_text(json.dumps(serialisable, indent=2, default=str))
    print(f"\nresults: {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
