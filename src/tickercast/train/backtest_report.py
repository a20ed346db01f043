"""Backtest outputs: ``leaderboard.json``, ``report.md``, ``records.parquet``, the plots, ``latest.json``.

Files of one run, in ``DIR/reports/backtest/<run>/`` (the whole folder is the MLflow run's
``backtest/`` artifact):

- ``leaderboard.json``: one object per model and horizon (the fields of
  :data:`tickercast.train.metrics.METRICS` plus ``model``, ``horizon``, ``rank``, ``champion``),
  ranked by scaled CRPS within each horizon; ``leaderboard_by_ticker.json`` the same per ticker;
- ``records.parquet``: every path record of every model;
- ``report.md``: the leaderboard as one table per horizon, the skill sentence per horizon, the
  calibration figures, the per-ticker view and every plot under its heading (:data:`PLOT_TITLES`).

Plots are drawn from the rows the leaderboard scored (every model's settled forecasts at the same
cells, calibrated quantiles where a model has them) at h = 1 and the largest horizon.

``DIR/reports/backtest/latest.json`` (:func:`write_latest`, rewritten atomically after the run's
folder is complete) points to the newest run and carries its leaderboard, so the service reads one
file instead of listing folders.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tickercast.files import write_json
from tickercast.model.calibration import coverage_by_level, pit_values
from tickercast.train.metrics import METRICS, NAIVE, common_rows, effective_quantiles

if TYPE_CHECKING:
    from tickercast.train.backtest import BacktestResult

SUBJECT = "tft"
SUBJECT_RAW = "tft_raw"
# Origins in the rolling window of the coverage-over-time plot.
COVERAGE_WINDOW = 10
# Trading days of closes drawn before the cone's origin.
CONE_HISTORY = 30
# Tickers drawn in the cone plot (one panel each).
CONE_TICKERS = 3
# Nominal levels of the calibration plot (0.8 is the P10-P90 band).
LEVELS = (0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
PIT_BINS = 10
LATEST = "latest.json"
# Version of the latest.json layout; the service's reader refuses others.
LATEST_FORMAT = 1
PLOT_SCALED_CRPS = "scaled_crps.png"
PLOT_CALIBRATION = "calibration.png"
PLOT_PIT = "pit.png"
PLOT_CONE = "cone.png"


def coverage_plot_name(horizon: int) -> str:
    """File name of the coverage-over-time plot at ``horizon``, e.g. ``coverage_h1.png``."""
    return f"coverage_h{int(horizon)}.png"


# What each plot shows, for its heading in report.md (the service's panel uses the same titles).
PLOT_TITLES = {
    PLOT_SCALED_CRPS: "Scaled CRPS by model and horizon",
    PLOT_CALIBRATION: "Calibration: realised against nominal coverage",
    PLOT_PIT: "PIT histogram",
    PLOT_CONE: "The cone against what happened",
}


def plot_title(name: str) -> str:
    """Heading of a plot file in the report."""
    if name in PLOT_TITLES:
        return PLOT_TITLES[name]
    return f"Realised P10–P90 coverage over time at h={name.removeprefix('coverage_h').removesuffix('.png')}"


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


def skill_sentences(board: pd.DataFrame) -> dict[int, str]:
    """Return the skill sentence of the subject model (:func:`subject_model`) per horizon."""
    subject = subject_model(board)
    out: dict[int, str] = {}
    if subject is None:
        return out
    for horizon, part in board.groupby("horizon", sort=True):
        mine = part.loc[part["model"] == subject]
        if mine.empty:
            continue
        naive = part.loc[part["model"] == NAIVE, "scaled_crps"]
        out[int(horizon)] = skill_sentence(mine.iloc[0], float(naive.iloc[0]) if len(naive) else None)
    return out


def scored_rows(records: pd.DataFrame) -> pd.DataFrame:
    """Return what the leaderboard scores: settled cells every model forecast, calibrated quantiles in q*."""
    return common_rows(effective_quantiles(records))


def report_horizons(horizons: Sequence[int] | pd.Series) -> list[int]:
    """Return the smallest horizon (h = 1) and the largest, once each."""
    ordered = sorted({int(h) for h in horizons})
    return list(dict.fromkeys([ordered[0], ordered[-1]])) if ordered else []


def model_order(models: Sequence[str] | set[str], subject: str | None) -> list[str]:
    """Order models for legends and tables: the subject, its raw self, naive, then the rest by name."""
    present = set(models)
    first = [m for m in (subject, SUBJECT_RAW, NAIVE) if m is not None and m in present]
    return [*dict.fromkeys(first), *sorted(present - set(first))]


def calibration_table(
    records: pd.DataFrame, horizons: Sequence[int], levels: Sequence[float] = LEVELS
) -> pd.DataFrame:
    """Realised coverage of central bands at each nominal level, per model and horizon.

    Uses :func:`tickercast.model.calibration.coverage_by_level` on the scored rows, with the
    calibrated quantiles (prefix ``c_``) for a model that has them.

    Args:
        records: Path records of every model.
        horizons: Horizons to keep.
        levels: Nominal coverages.

    Returns:
        ``model, horizon, level, n, coverage``.

    """
    rows = scored_rows(records)
    rows = rows[rows["horizon"].isin(list(horizons))]
    parts = []
    for model, part in rows.groupby("model", sort=True):
        calibrated = all(c in part for c in ("c_q10", "c_q50", "c_q90")) and part["c_q50"].notna().all()
        table = coverage_by_level(part, levels, prefix="c_" if calibrated else "")
        parts.append(table.assign(model=str(model)))
    if not parts:
        return pd.DataFrame(columns=["model", "horizon", "level", "n", "coverage"])
    return pd.concat(parts, ignore_index=True)[["model", "horizon", "level", "n", "coverage"]]


def _label(model: str, subject: str | None) -> str:
    if model == SUBJECT_RAW:
        return f"{SUBJECT_RAW} (before calibration)"
    if model == NAIVE:
        return "naive (random walk)"
    return model


# Colours of the models other than the subject, its raw self and naive (which stand out), the same
# in every plot; a model not named here takes one from the spare list by its name.
_MODEL_COLOURS = {"drift": "#f59e0b", "auto_ets": "#10b981", "auto_arima": "#a855f7", "lightgbm": "#ef4444"}
_SPARE_COLOURS = ("#0891b2", "#84cc16", "#db2777", "#92400e")
_SUBJECT_COLOUR = "#1d4ed8"


def _colour(model: str) -> str:
    if model in _MODEL_COLOURS:
        return _MODEL_COLOURS[model]
    return _SPARE_COLOURS[sum(map(ord, model)) % len(_SPARE_COLOURS)]


def _style(model: str, subject: str | None) -> dict[str, Any]:
    """Line style: the subject bold, its raw self dashed in the same colour, naive black, others thin."""
    if model == subject:
        return {"color": _SUBJECT_COLOUR, "linewidth": 2.6, "zorder": 5}
    if model == SUBJECT_RAW:
        return {"color": _SUBJECT_COLOUR, "linewidth": 1.5, "linestyle": "--", "zorder": 4}
    if model == NAIVE:
        return {"color": "black", "linewidth": 1.5, "zorder": 3}
    return {"color": _colour(model), "linewidth": 1.0, "alpha": 0.75, "zorder": 2}


def _bar_colour(model: str, subject: str | None) -> str:
    """Bar colour matching :func:`_style`: the raw model a paler shade of the subject, naive dark grey."""
    if model == SUBJECT_RAW:
        return "#93c5fd"
    if model == NAIVE:
        return "#374151"
    return str(_style(model, subject)["color"])


def _days(h: int) -> str:
    return f"{h} trading day{'s' if h != 1 else ''}"


def write_report(
    run_dir: Path,
    board: pd.DataFrame,
    by_ticker: pd.DataFrame,
    context: dict[str, Any],
    plots: list[Path],
    calibration: pd.DataFrame | None = None,
) -> Path:
    """Write ``report.md``: context, ranked tables with skill sentences, calibration, per ticker, plots.

    Args:
        run_dir: The run's folder.
        board: The leaderboard.
        by_ticker: The per-ticker leaderboard.
        context: Run facts for the header.
        plots: The plot files (in the run's folder), each embedded under its heading.
        calibration: From :func:`calibration_table` (optional): coverage at 50/80/95% per model.

    Returns:
        The report's path.

    """
    columns = ["rank", "model", *METRICS]
    if "champion" in board:
        columns.append("champion")
    sentences = skill_sentences(board)
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
        lines += [f"## Horizon {_days(int(horizon))}", ""]
        if int(horizon) in sentences:
            lines += [sentences[int(horizon)], ""]
        lines += [*markdown_table(part, columns), ""]
    if calibration is not None and not calibration.empty:
        lines += _calibration_section(calibration, subject_model(board))
    lines += ["## Per ticker", ""]
    ticker_columns = ["horizon", "symbol", "rank", "model", "n", "mae_vs_naive", "scaled_crps", "coverage_80"]
    lines += [*markdown_table(by_ticker, ticker_columns), ""]
    if plots:
        lines += ["## Plots", ""]
        for plot in plots:
            lines += [f"### {plot_title(plot.name)}", "", PLOT_CAPTIONS.get(_caption_key(plot.name), ""), ""]
            lines += [f"![{plot.stem}]({plot.name})", ""]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines).rstrip() + "\n")
    return path


PLOT_CAPTIONS = {
    PLOT_SCALED_CRPS: "Scaled CRPS of every model at every horizon (lower is better).",
    PLOT_CALIBRATION: "Share of outcomes inside each model's central band against the band's nominal "
    "level; on the diagonal is calibrated, below it the bands are too narrow, above too wide.",
    PLOT_PIT: "Where each outcome fell in the forecast distribution (probability integral transform). "
    "Flat at 1 is calibrated; a U shape means bands too narrow, a hump too wide, a slope a biased median.",
    PLOT_CONE: "The forecasts made at the last origin against the closes that followed, for a few tickers.",
    "coverage": "Share of outcomes inside the P10–P90 band over a rolling window of origins; the band "
    "promises 80%.",
}


def _caption_key(name: str) -> str:
    return "coverage" if name.startswith("coverage_h") else name


def _calibration_section(table: pd.DataFrame, subject: str | None) -> list[str]:
    """Markdown: realised coverage of the 50%, 80% and 95% bands per model, at each plotted horizon."""
    shown = [0.5, 0.8, 0.95]
    lines = [
        "## Calibration",
        "",
        "Realised coverage of the central band at each nominal level (the P10–P90 band is the 80% one; "
        "the others come from the split normal through P10, P50 and P90). "
        + (
            f"`{subject}` is scored with its calibrated band, `{SUBJECT_RAW}` without it."
            if subject == SUBJECT
            else ""
        ),
        "",
    ]
    for horizon, part in table.groupby("horizon", sort=True):
        wide = part[part["level"].isin(shown)].pivot_table(index="model", columns="level", values="coverage")
        order = [m for m in model_order(set(wide.index), subject) if m in wide.index]
        wide = wide.loc[order]
        lines += [
            f"**Horizon {_days(int(horizon))}** ({int(part['n'].iloc[0])} outcomes per model)",
            "",
            "| model | " + " | ".join(f"{lvl:.0%} band" for lvl in wide.columns) + " |",
            "|---|" + "---|" * len(wide.columns),
        ]
        lines += [
            f"| {model} | " + " | ".join(f"{value:.0%}" for value in row) + " |"
            for model, row in wide.iterrows()
        ]
        lines.append("")
    return lines


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _percent_axis(axis: Any) -> None:
    from matplotlib.ticker import PercentFormatter

    axis.set_major_formatter(PercentFormatter(1.0, decimals=0))


def _save(fig: Any, path: Path) -> Path:
    plt = _pyplot()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


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
    subject = subject_model(board)
    for i, model in enumerate(table.columns):
        colour = _bar_colour(str(model), subject)
        bars = ax.bar(x + i * width, table[model].to_numpy(), width, label=model, color=colour)
        ax.bar_label(bars, fmt="%.3f", fontsize=6, rotation=90, padding=2)
    ax.set_xticks(x + width * (len(table.columns) - 1) / 2, [f"h={h}" for h in table.index])
    # Models differ by a few percent: start the axis near the smallest value so the gaps show.
    low, high = float(np.nanmin(table.to_numpy())), float(np.nanmax(table.to_numpy()))
    ax.set_ylim(low - 0.5 * (high - low) - 0.01 * high, high + 0.25 * (high - low) + 0.02 * high)
    ax.set_ylabel("scaled CRPS (lower is better)")
    ax.set_title("Scaled CRPS by model and horizon; models ordered by mean rank", fontsize=10, pad=34)
    ax.legend(fontsize=8, ncols=min(7, len(table.columns)), loc="lower center", bbox_to_anchor=(0.5, 1.0))
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_calibration(path: Path, table: pd.DataFrame, subject: str | None) -> Path | None:
    """Draw realised against nominal coverage, one panel per horizon, one line per model.

    Args:
        path: The PNG to write.
        table: From :func:`calibration_table`.
        subject: The model under test (drawn bold).

    Returns:
        ``path``, or ``None`` when there is nothing to draw.

    """
    if table.empty:
        return None
    plt = _pyplot()
    horizons = sorted(table["horizon"].unique())
    fig, axes = plt.subplots(1, len(horizons), figsize=(5.2 * len(horizons), 4.6), squeeze=False, sharey=True)
    models = model_order(set(table["model"]), subject)
    for ax, horizon in zip(axes[0], horizons, strict=True):
        part = table[table["horizon"] == horizon]
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="calibrated (diagonal)")
        ax.axvline(0.8, color="grey", linewidth=0.6, alpha=0.5)
        for model in models:
            line = part[part["model"] == model].sort_values("level")
            if line.empty:
                continue
            ax.plot(
                line["level"],
                line["coverage"],
                marker="o",
                markersize=3.5,
                label=_label(model, subject),
                **_style(model, subject),
            )
        n = int(part["n"].max())
        ax.set_title(f"h={horizon}: {n} outcomes per model", fontsize=10)
        ax.set_xlim(0.1, 1.0)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("nominal coverage of the central band")
        _percent_axis(ax.xaxis)
        _percent_axis(ax.yaxis)
        ax.grid(alpha=0.3)
        ax.annotate("P10–P90", (0.8, 0.02), fontsize=7, color="grey", ha="center")
    axes[0][0].set_ylabel("realised coverage")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        fontsize=8,
        loc="lower center",
        ncols=min(4, len(labels)),
        bbox_to_anchor=(0.5, -0.02),
    )
    fig.suptitle("Calibration: below the diagonal the bands are too narrow, above too wide", fontsize=11)
    fig.tight_layout(rect=(0, 0.1 if len(labels) > 4 else 0.07, 1, 1))
    return _save(fig, path)


def plot_pit(path: Path, records: pd.DataFrame, horizons: Sequence[int], subject: str | None) -> Path | None:
    """Draw the PIT histogram of the subject model (calibrated) at each horizon, its raw self outlined.

    Args:
        path: The PNG to write.
        records: Path records of every model.
        horizons: One panel per horizon.
        subject: The model to draw.

    Returns:
        ``path``, or ``None`` when the subject has no scored rows.

    """
    rows = scored_rows(records)
    if subject is None or not (rows["model"] == subject).any():
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(horizons), figsize=(5.2 * len(horizons), 3.8), squeeze=False, sharey=True)
    bins = np.linspace(0, 1, PIT_BINS + 1)
    for ax, horizon in zip(axes[0], horizons, strict=True):
        at_h = rows[rows["horizon"] == horizon]
        mine = at_h[at_h["model"] == subject]
        prefix = "c_" if "c_q50" in mine and mine["c_q50"].notna().all() else ""
        pit = pit_values(mine, prefix=prefix).dropna()
        ax.hist(pit, bins=bins, density=True, color=_SUBJECT_COLOUR, alpha=0.55, label=f"{subject}")
        raw = at_h[at_h["model"] == SUBJECT_RAW]
        if subject == SUBJECT and not raw.empty:
            ax.hist(
                pit_values(raw).dropna(),
                bins=bins,
                density=True,
                histtype="step",
                color=_SUBJECT_COLOUR,
                linestyle="--",
                linewidth=1.5,
                label=_label(SUBJECT_RAW, subject),
            )
        ax.axhline(1.0, color="black", linestyle=":", linewidth=1, label="calibrated (flat)")
        ax.set_title(f"h={horizon}: {len(pit)} outcomes", fontsize=10)
        ax.set_xlabel("PIT: where the outcome fell in the forecast distribution")
        ax.set_xlim(0, 1)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("density")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncols=3, bbox_to_anchor=(0.5, 0.0))
    fig.suptitle(
        f"PIT histogram of {subject}: U = bands too narrow, hump = too wide, slope = biased", fontsize=11
    )
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return _save(fig, path)


def cone_origin(records: pd.DataFrame, model: str | None = None) -> dt.date | None:
    """Return the last origin whose every horizon is settled (for ``model`` when given)."""
    rows = records if model is None else records[records["model"] == model]
    rows = rows[["origin", "horizon", "actual"]]
    if rows.empty:
        return None
    horizons = rows["horizon"].nunique()
    settled = rows.dropna(subset=["actual"]).groupby("origin")["horizon"].nunique()
    full = settled[settled == horizons]
    return None if full.empty else max(full.index)


def plot_cone(
    path: Path,
    records: pd.DataFrame,
    history: pd.DataFrame,
    models: list[str],
    origin: dt.date | None = None,
    tickers: int = CONE_TICKERS,
) -> Path | None:
    """Draw the P10–P90 cone and median of ``models`` at one past origin, against the closes that followed.

    One panel per ticker (the first ``tickers`` by name); calibrated quantiles where a model has them.

    Args:
        path: The PNG to write.
        records: Path records.
        history: ``symbol, date, close`` of the data.
        models: Models to draw (first the subject, then naive).
        origin: The origin to draw; default the last one with every horizon settled.
        tickers: Most tickers (panels).

    Returns:
        ``path``, or ``None`` when there is nothing to draw.

    """
    rows = effective_quantiles(records).dropna(subset=["q10", "q50", "q90"])
    origin = origin or cone_origin(rows, models[0] if models else None)
    if origin is None:
        return None
    at_origin = rows[(rows["origin"] == origin) & rows["model"].isin(models)]
    symbols = sorted(set(at_origin["symbol"]))[:tickers]
    if not symbols:
        return None
    horizon = int(at_origin["horizon"].max())
    shown = max(15, 3 * horizon, CONE_HISTORY if horizon > 5 else 0)
    plt = _pyplot()
    fig, axes = plt.subplots(
        len(symbols), 1, figsize=(9, 2.9 * len(symbols) + 0.9), squeeze=False, sharex=True
    )
    fills = {models[0]: _SUBJECT_COLOUR} | {m: "#9ca3af" for m in models[1:]}
    for ax, symbol in zip(axes[:, 0], symbols, strict=True):
        closes = history[history["symbol"] == symbol].sort_values("date")
        mine = at_origin[at_origin["symbol"] == symbol]
        last = mine["forecast_for"].max()
        before = closes[closes["date"] <= origin].tail(shown)
        after = closes[(closes["date"] > origin) & (closes["date"] <= last)]
        ax.plot(pd.to_datetime(before["date"]), before["close"], color="black", linewidth=1.2, label="close")
        for model in models:
            part = mine[mine["model"] == model].sort_values("horizon")
            if part.empty:
                continue
            close = float(part["last_close"].iloc[0])
            days = pd.to_datetime([origin, *part["forecast_for"]])
            band = {
                q: close * np.exp(np.concatenate([[0.0], part[q].to_numpy(float)]))
                for q in ("q10", "q50", "q90")
            }
            colour = fills.get(model, "#9ca3af")
            ax.fill_between(
                days,
                band["q10"],
                band["q90"],
                color=colour,
                alpha=0.22 if model == models[0] else 0.18,
                label=f"{_label(model, models[0])} P10–P90",
            )
            ax.plot(
                days,
                band["q50"],
                color=colour,
                linewidth=1.6,
                linestyle="-" if model == models[0] else "--",
                label=f"{_label(model, models[0])} P50",
            )
        if not after.empty:
            joined = pd.concat([before.tail(1), after])
            ax.plot(
                pd.to_datetime(joined["date"]),
                joined["close"],
                color="#dc2626",
                linewidth=1.4,
                marker="o",
                markersize=4,
                label="what happened",
                zorder=6,
            )
        ax.axvline(pd.Timestamp(origin), color="grey", linestyle=":", linewidth=1)
        subject_rows = mine[mine["model"] == models[0]]
        inside = subject_rows["actual"].between(subject_rows["q10"], subject_rows["q90"])
        ax.set_title(
            f"{symbol}: inside the {models[0]} band on {int(inside.sum())} of {len(inside)} day(s)",
            fontsize=10,
            loc="left",
        )
        ax.set_ylabel("close")
        ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncols=3, bbox_to_anchor=(0.5, 0.0))
    fig.suptitle(
        f"Forecasts made at the origin {origin.isoformat()} (dotted line) against what happened", fontsize=11
    )
    fig.autofmt_xdate()
    fig.tight_layout(rect=(0, 0.09 / len(symbols) ** 0.5, 1, 1))
    return _save(fig, path)


def plot_coverage(
    path: Path, records: pd.DataFrame, horizon: int = 1, subject: str | None = None
) -> Path | None:
    """Draw the rolling P10–P90 coverage over the origins at one horizon, one line per model, 80% marked.

    Each point is the share of outcomes inside the band over the last :data:`COVERAGE_WINDOW`
    origins (every ticker of each), drawn once the window is half full.
    """
    rows = scored_rows(records)
    part = rows[rows["horizon"] == horizon]
    if part.empty:
        return None
    part = part.assign(inside=part["actual"].between(part["q10"], part["q90"]).astype(float))
    origins = part["origin"].nunique()
    window = min(COVERAGE_WINDOW, origins)
    tickers = part["symbol"].nunique()
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(11, 4.2))
    ax.axhspan(0.75, 0.85, color="#10b981", alpha=0.08, label="80% ± 5%")
    ax.axhline(0.8, color="#10b981", linestyle="--", linewidth=1, label="80% promised")
    for model in model_order(set(part["model"]), subject):
        line = part[part["model"] == model]
        by_origin = line.groupby("origin").agg(inside=("inside", "sum"), n=("inside", "size")).sort_index()
        # Pool the outcomes of the window (not a mean of per-origin shares), so every outcome weighs the same.
        rolling = (
            by_origin["inside"].rolling(window, min_periods=max(1, window // 2)).sum()
            / by_origin["n"].rolling(window, min_periods=max(1, window // 2)).sum()
        )
        overall = float(line["inside"].mean())
        ax.plot(
            pd.to_datetime(pd.Series(by_origin.index)),
            rolling.to_numpy(),
            label=f"{_label(model, subject)}: {overall:.0%} overall",
            **_style(model, subject),
        )
    ax.set_ylim(0, 1.02)
    _percent_axis(ax.yaxis)
    ax.set_ylabel("share of outcomes in the P10–P90 band")
    ax.set_title(
        f"Realised P10–P90 coverage at h={horizon}: rolling {window} origins × {tickers} ticker(s)",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.autofmt_xdate()
    fig.tight_layout()
    return _save(fig, path)


def origin_step(origins: Sequence[dt.date], history: pd.DataFrame) -> int | None:
    """Return the trading days between consecutive origins (``None`` for one origin or uneven steps)."""
    if len(origins) < 2:
        return None
    dates = sorted(set(history["date"]))
    index = {d: i for i, d in enumerate(dates)}
    if not all(o in index for o in origins):
        return None
    steps = {index[b] - index[a] for a, b in itertools.pairwise(origins)}
    return steps.pop() if len(steps) == 1 else None


def latest_payload(
    result: BacktestResult, context: dict[str, Any], plots: Sequence[Path], step: int | None
) -> dict[str, Any]:
    """Build ``latest.json``: where the newest run is, what it covered and its leaderboard.

    Returns:
        ``format``, ``run`` (folder name under ``reports/backtest``), ``created_at``,
        ``data_version``, ``horizon`` (largest), ``horizons``, ``origins`` (``count``, ``first``,
        ``last``, ``step``), ``models``, ``subject``, ``champion`` (model name or null), ``skill``
        (sentence per horizon), ``report``, ``plots`` (``name``, ``title``), ``context`` and
        ``leaderboard`` (the rows of ``leaderboard.json``).

    """
    board = result.leaderboard
    champions = sorted(set(board.loc[board["champion"].astype(bool), "model"])) if "champion" in board else []
    return {
        "format": LATEST_FORMAT,
        "run": result.run_dir.name,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "data_version": context.get("data version"),
        "horizon": int(result.horizon),
        "horizons": sorted(int(h) for h in board["horizon"].unique()),
        "origins": {
            "count": len(result.origins),
            "first": result.origins[0].isoformat() if result.origins else None,
            "last": result.origins[-1].isoformat() if result.origins else None,
            "step": step,
        },
        "models": model_order(set(board["model"]), subject_model(board)),
        "subject": subject_model(board),
        "champion": champions[0] if champions else None,
        "skill": {str(h): text for h, text in skill_sentences(board).items()},
        "report": "report.md",
        "plots": [{"name": p.name, "title": plot_title(p.name)} for p in plots],
        "context": {str(k): str(v) for k, v in context.items()},
        "leaderboard": _json_rows(board),
    }


def write_latest(backtest_dir: Path, payload: dict[str, Any]) -> Path:
    """Point ``backtest_dir/latest.json`` at a finished run (atomic: readers never see half a file)."""
    path = backtest_dir / LATEST
    write_json(path, payload)
    return path


def write_outputs(result: BacktestResult, context: dict[str, Any], history: pd.DataFrame) -> list[Path]:
    """Write every file of a backtest run into ``result.run_dir``, then point ``latest.json`` at it.

    Args:
        result: The run's leaderboard, per-ticker table and records.
        context: Run facts for the report's header.
        history: ``symbol, date, close`` of the data (for the cone).

    Returns:
        The files written (``latest.json`` last).

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
    horizons = report_horizons(result.leaderboard["horizon"])
    calibration = calibration_table(result.records, horizons)
    cone_models = [m for m in dict.fromkeys([subject, NAIVE]) if m is not None]
    drawn = [
        plot_scaled_crps(run_dir / PLOT_SCALED_CRPS, result.leaderboard),
        plot_calibration(run_dir / PLOT_CALIBRATION, calibration, subject),
        plot_pit(run_dir / PLOT_PIT, result.records, horizons, subject),
        *(plot_coverage(run_dir / coverage_plot_name(h), result.records, h, subject) for h in horizons),
        plot_cone(run_dir / PLOT_CONE, result.records, history, cone_models),
    ]
    plots = [p for p in drawn if p is not None]
    report = write_report(run_dir, result.leaderboard, result.by_ticker, context, plots, calibration)
    payload = latest_payload(result, context, plots, origin_step(result.origins, history))
    latest = write_latest(run_dir.parent, payload)
    return [leaderboard, by_ticker, records, report, *plots, latest]
