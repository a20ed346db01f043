"""Backtest outputs: ``leaderboard.json``, ``report.md``, ``records.parquet`` and the plots.

Files of one run, in ``DIR/reports/backtest/<run>/``:

- ``leaderboard.json``: one object per model and horizon (the fields of
  :data:`tickercast.train.metrics.METRICS` plus ``model``, ``horizon``, ``rank``, ``champion``),
  ranked by scaled CRPS within each horizon; ``leaderboard_by_ticker.json`` the same per ticker;
- ``records.parquet``: every path record of every model;
- ``report.md``: the leaderboard as one table per horizon, the skill sentence per horizon, the
  per-ticker view and the plots: ``scaled_crps.png`` (by model and horizon), ``cone.png`` (the
  forecast cone against what happened at a past origin), ``coverage_h1.png`` (rolling P10–P90
  coverage over the origins at h = 1).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tickercast.files import write_json
from tickercast.train.metrics import METRICS, NAIVE

if TYPE_CHECKING:
    from tickercast.train.backtest import BacktestResult

SUBJECT = "tft"
# Origins in the rolling window of the coverage-over-time plot.
COVERAGE_WINDOW = 10
# Trading days of closes drawn before the cone's origin.
CONE_HISTORY = 30


def _json_rows(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Return the rows as records with plain Python values; NaN becomes ``null``."""
    rows = []
    for row in table.to_dict("records"):
        clean: dict[str, Any] = {}
        for key, value in row.items():
            if isinstance(value, np.generic):
                value = value.item()
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            clean[str(key)] = value
        rows.append(clean)
    return rows


def subject_model(board: pd.DataFrame) -> str | None:
    """Name the model the skill sentence is about: ``tft`` when it ran, else the best model but naive."""
    models = set(board["model"])
    if SUBJECT in models:
        return SUBJECT
    others = board[board["model"] != NAIVE].sort_values(["horizon", "rank"])
    return None if others.empty else str(others.iloc[0]["model"])


def skill_sentence(row: pd.Series | dict[str, Any], naive_crps: float | None = None) -> str:
    """One plain sentence on a model's skill over the random walk at one horizon, with its interval.

    Args:
        row: The model's leaderboard row (``model``, ``horizon``, ``mae_vs_naive`` and its interval,
            ``scaled_crps``).
        naive_crps: The random walk's scaled CRPS at that horizon.

    Returns:
        E.g. "At 5 trading days, tft has no measurable skill over the random walk: ...".

    """
    model, h = row["model"], int(row["horizon"])
    ratio, lo, hi = row["mae_vs_naive"], row["mae_vs_naive_lo"], row["mae_vs_naive_hi"]
    days = f"{h} trading day{'s' if h != 1 else ''}"
    figure = f"MAE {ratio:.3f} × naive (90% interval {lo:.3f}–{hi:.3f})"
    if hi < 1:
        verdict = f"At {days}, {model} beats the random walk: {figure}"
    elif lo > 1:
        verdict = f"At {days}, {model} is worse than the random walk: {figure}"
    else:
        verdict = f"At {days}, {model} has no measurable skill over the random walk: {figure}"
    if naive_crps is not None and math.isfinite(naive_crps):
        verdict += f"; scaled CRPS {row['scaled_crps']:.4f} against the random walk's {naive_crps:.4f}"
    return verdict + "."


def _fmt(value: Any) -> str:
    if isinstance(value, bool | np.bool_):
        return "yes" if value else ""
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return "–" if not math.isfinite(float(value)) else f"{float(value):.4g}"
    return str(value)


def markdown_table(table: pd.DataFrame, columns: list[str]) -> list[str]:
    """Render a GitHub-flavoured Markdown table of ``columns``."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(row[c]) for c in columns) + " |" for _, row in table.iterrows()]
    return lines


def write_report(
    run_dir: Path, board: pd.DataFrame, by_ticker: pd.DataFrame, context: dict[str, Any], plots: list[Path]
) -> Path:
    """Write ``report.md``: context, a ranked table and skill sentence per horizon, per ticker, plots."""
    columns = ["rank", "model", *METRICS]
    if "champion" in board:
        columns.append("champion")
    subject = subject_model(board)
    lines = ["# tickercast walk-forward backtest", ""]
    lines += [f"- **{key}**: {value}" for key, value in context.items()]
    lines += [
        "",
        "Every model forecasts from the same origins using only rows dated up to the origin, and is "
        "scored on the forecasts every model made. Ranked by scaled CRPS (lower is better); "
        "`mae_vs_naive_lo/hi` is the 90% moving-block bootstrap interval over origins.",
        "",
    ]
    for horizon, part in board.groupby("horizon", sort=True):
        lines += [f"## Horizon {horizon} trading day{'s' if horizon != 1 else ''}", ""]
        if subject is not None and subject in set(part["model"]):
            naive = part.loc[part["model"] == NAIVE, "scaled_crps"]
            row = part.loc[part["model"] == subject].iloc[0]
            lines += [skill_sentence(row, float(naive.iloc[0]) if len(naive) else None), ""]
        lines += [*markdown_table(part, columns), ""]
    lines += ["## Per ticker", ""]
    ticker_columns = ["horizon", "symbol", "rank", "model", "n", "mae_vs_naive", "scaled_crps", "coverage_80"]
    lines += [*markdown_table(by_ticker, ticker_columns), ""]
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_scaled_crps(path: Path, board: pd.DataFrame) -> Path:
    """Draw grouped bars of the scaled CRPS of every model at every horizon."""
    plt = _pyplot()
    table = board.pivot_table(index="horizon", columns="model", values="scaled_crps")
    # Models in the order of their mean rank, so the best stands first in every group.
    order = board.groupby("model")["rank"].mean().sort_values().index
    table = table[list(order)]
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / max(1, len(table.columns))
    x = np.arange(len(table.index))
    for i, model in enumerate(table.columns):
        bars = ax.bar(x + i * width, table[model].to_numpy(), width, label=model)
        ax.bar_label(bars, fmt="%.3f", fontsize=6, rotation=90, padding=2)
    ax.set_xticks(x + width * (len(table.columns) - 1) / 2, [f"h={h}" for h in table.index])
    # Models differ by a few percent: start the axis near the smallest value so the gaps show.
    low, high = float(np.nanmin(table.to_numpy())), float(np.nanmax(table.to_numpy()))
    ax.set_ylim(low - 0.5 * (high - low) - 0.01 * high, high + 0.25 * (high - low) + 0.02 * high)
    ax.set_ylabel("scaled CRPS (lower is better)")
    ax.legend(fontsize=8, ncols=min(6, len(table.columns)), loc="lower center", bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_cone(path: Path, records: pd.DataFrame, history: pd.DataFrame, models: list[str]) -> Path | None:
    """Draw the P10–P90 cone and median of ``models`` at the last origin for one ticker, against the closes.

    Args:
        path: The PNG to write.
        records: Path records.
        history: ``symbol, date, close`` of the data.
        models: Models to draw (first the subject, then naive).

    Returns:
        ``path``, or ``None`` when there is nothing to draw.

    """
    settled = records.dropna(subset=["actual"])
    if settled.empty:
        return None
    origin = max(settled["origin"])
    symbol = sorted(settled.loc[settled["origin"] == origin, "symbol"])[0]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 4))
    closes = history[history["symbol"] == symbol]
    last = settled.loc[(settled["origin"] == origin) & (settled["symbol"] == symbol), "forecast_for"].max()
    before = closes[closes["date"] <= origin].tail(CONE_HISTORY)
    after = closes[(closes["date"] >= origin) & (closes["date"] <= last)]
    ax.plot(pd.to_datetime(before["date"]), before["close"], color="black", linewidth=1, label="close")
    ax.plot(
        pd.to_datetime(after["date"]), after["close"], color="black", linestyle=":", label="what happened"
    )
    for model in models:
        part = settled[
            (settled["model"] == model) & (settled["origin"] == origin) & (settled["symbol"] == symbol)
        ]
        if part.empty:
            continue
        part = part.sort_values("horizon")
        close = float(part["last_close"].iloc[0])
        days = pd.to_datetime([origin, *part["forecast_for"]])
        p10 = close * np.exp(np.concatenate([[0.0], part["q10"].to_numpy(float)]))
        p50 = close * np.exp(np.concatenate([[0.0], part["q50"].to_numpy(float)]))
        p90 = close * np.exp(np.concatenate([[0.0], part["q90"].to_numpy(float)]))
        ax.fill_between(days, p10, p90, alpha=0.2, label=f"{model} P10–P90")
        ax.plot(days, p50, label=f"{model} P50")
    ax.set_title(f"{symbol}: forecast from {origin.isoformat()} against what happened")
    ax.legend(fontsize=8, loc="upper left")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_coverage(path: Path, records: pd.DataFrame, horizon: int = 1) -> Path | None:
    """Draw the rolling P10–P90 coverage over the origins at one horizon, one line per model, 80% marked."""
    part = records[(records["horizon"] == horizon)].dropna(subset=["actual", "q10", "q90"])
    if part.empty:
        return None
    part = part.assign(inside=part["actual"].between(part["q10"], part["q90"]).astype(float))
    by_origin = part.groupby(["model", "origin"])["inside"].mean().reset_index()
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 4))
    for model, line in by_origin.groupby("model", sort=True):
        rolling = line.sort_values("origin")["inside"].rolling(COVERAGE_WINDOW, min_periods=1).mean()
        ax.plot(pd.to_datetime(line.sort_values("origin")["origin"]), rolling, label=model)
    ax.axhline(0.8, color="grey", linestyle="--", linewidth=1, label="80% promised")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel(f"P10–P90 coverage at h={horizon} (rolling {COVERAGE_WINDOW} origins)")
    ax.legend(fontsize=8, ncols=3, loc="lower left")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_outputs(result: BacktestResult, context: dict[str, Any], history: pd.DataFrame) -> list[Path]:
    """Write every file of a backtest run into ``result.run_dir``.

    Args:
        result: The run's leaderboard, per-ticker table and records.
        context: Run facts for the report's header.
        history: ``symbol, date, close`` of the data (for the cone).

    Returns:
        The files written.

    """
    run_dir = result.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    leaderboard = run_dir / "leaderboard.json"
    write_json(leaderboard, _json_rows(result.leaderboard))
    by_ticker = run_dir / "leaderboard_by_ticker.json"
    write_json(by_ticker, _json_rows(result.by_ticker))
    records = run_dir / "records.parquet"
    result.records.to_parquet(records, index=False)
    subject = subject_model(result.leaderboard)
    cone_models = [m for m in dict.fromkeys([subject, NAIVE]) if m is not None]
    plots = [
        p
        for p in (
            plot_scaled_crps(run_dir / "scaled_crps.png", result.leaderboard),
            plot_cone(run_dir / "cone.png", result.records, history, cone_models),
            plot_coverage(run_dir / "coverage_h1.png", result.records, 1),
        )
        if p is not None
    ]
    report = write_report(run_dir, result.leaderboard, result.by_ticker, context, plots)
    return [leaderboard, by_ticker, records, report, *plots]
