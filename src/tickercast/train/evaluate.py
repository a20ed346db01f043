"""Honest evaluation on the test split: the model against the forecasts anyone gets for free.

Every forecast reads only rows strictly before its target date (see
:func:`tickercast.model.inference.backtest`). The model's median is compared with the
naive forecast (next close = last close) and, on synthetic data, with the oracle that knows the
planted signal (``close_t * exp(planted_t)`` from ``synth_oracle.parquet``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tickercast import schema
from tickercast.model.inference import price_column

if TYPE_CHECKING:
    from tickercast.config import Settings
    from tickercast.model.bundle import ModelBundle

log = logging.getLogger(__name__)

SYNTH_TRUTH = "synth_truth.json"
PLOT_TICKERS = 3
COVERAGE_PLOT = "calibration_coverage.png"
# Nominal levels of the coverage-by-level plot (0.8 is the P10-P90 band).
LEVELS = (0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


@dataclass
class Evaluation:
    """Test-split forecasts and their metrics."""

    metrics: dict[str, float]
    predictions: pd.DataFrame
    importance: dict[str, dict[str, float]] | None = None
    context: dict[str, Any] = field(default_factory=dict)


def point_metrics(forecast: pd.Series, actual: pd.Series, prefix: str) -> dict[str, float]:
    """MAE, RMSE and MAPE (%) of a point forecast of the close."""
    error = forecast.to_numpy(float) - actual.to_numpy(float)
    return {
        f"{prefix}mae": float(np.mean(np.abs(error))),
        f"{prefix}rmse": float(np.sqrt(np.mean(error**2))),
        f"{prefix}mape": float(np.mean(np.abs(error) / np.abs(actual.to_numpy(float))) * 100),
    }


def pinball_loss(predictions: pd.DataFrame, quantiles: tuple[float, ...]) -> float:
    """Mean pinball (quantile) loss of the price quantiles, averaged over quantiles and samples."""
    actual = predictions["actual"].to_numpy(float)
    losses = []
    for q in quantiles:
        diff = actual - predictions[price_column(q)].to_numpy(float)
        losses.append(np.mean(np.maximum(q * diff, (q - 1) * diff)))
    return float(np.mean(losses))


def compute_metrics(
    predictions: pd.DataFrame, quantiles: tuple[float, ...], oracle: pd.DataFrame | None = None
) -> dict[str, float]:
    """All test metrics of a backtest frame.

    Args:
        predictions: From :meth:`ModelBundle.backtest` (``actual``, ``last_close``, ``p10``...).
        quantiles: The model's quantiles.
        oracle: Optional ``symbol, as_of, oracle`` frame (synthetic data only).

    Returns:
        ``mae, rmse, mape, pinball, coverage_p10_p90``, the same for ``naive_``, ``skill_vs_naive``
        (1 - MAE / naive MAE), ``mae_log_return`` for both, and ``oracle_*`` when given.

    """
    if predictions.empty:
        raise ValueError("no test forecasts to evaluate")
    median = price_column(0.5)
    metrics = point_metrics(predictions[median], predictions["actual"], "")
    metrics.update(point_metrics(predictions["last_close"], predictions["actual"], "naive_"))
    metrics["pinball"] = pinball_loss(predictions, quantiles)
    low, high = price_column(min(quantiles)), price_column(max(quantiles))
    inside = (predictions["actual"] >= predictions[low]) & (predictions["actual"] <= predictions[high])
    metrics["coverage_p10_p90"] = float(inside.mean())
    metrics["skill_vs_naive"] = 1.0 - metrics["mae"] / metrics["naive_mae"] if metrics["naive_mae"] else 0.0
    actual_ret = np.log(predictions["actual"] / predictions["last_close"])
    metrics["mae_log_return"] = float(
        np.mean(np.abs(np.log(predictions[median] / predictions["last_close"]) - actual_ret))
    )
    metrics["naive_mae_log_return"] = float(np.mean(np.abs(actual_ret)))
    metrics["samples"] = float(len(predictions))
    if oracle is not None:
        joined = predictions.merge(oracle, on=[schema.SYMBOL, "as_of"], how="inner")
        if len(joined) == len(predictions):
            metrics.update(point_metrics(joined["oracle"], joined["actual"], "oracle_"))
            metrics["oracle_mae_log_return"] = float(
                np.mean(
                    np.abs(
                        np.log(joined["oracle"] / joined["last_close"])
                        - np.log(joined["actual"] / joined["last_close"])
                    )
                )
            )
        else:
            log.warning(
                "synth oracle covers %d of %d test forecasts; oracle metrics skipped",
                len(joined),
                len(predictions),
            )
    return metrics


def load_oracle(data_root: Path, predictions: pd.DataFrame) -> pd.DataFrame | None:
    """Return the oracle forecast ``close_t * exp(planted_t)`` when ``DIR/synth_truth.json`` exists."""
    truth_path = data_root / SYNTH_TRUTH
    if not truth_path.is_file():
        return None
    truth = json.loads(truth_path.read_text())
    oracle_file = Path(truth.get("oracle_file") or "synth_oracle.parquet")
    if not oracle_file.is_absolute():
        oracle_file = data_root / oracle_file
    if not oracle_file.is_file():
        log.warning("%s names %s, which does not exist; oracle metrics skipped", truth_path, oracle_file)
        return None
    planted = pd.read_parquet(oracle_file)
    planted = pd.DataFrame(
        {
            schema.SYMBOL: planted["symbol"].astype(str),
            "as_of": pd.to_datetime(planted["date"]).dt.date,
            "planted": planted["planted"].astype(float),
        }
    )
    base = predictions[[schema.SYMBOL, "as_of", "last_close"]].merge(planted, on=[schema.SYMBOL, "as_of"])
    base["oracle"] = base["last_close"] * np.exp(base["planted"])
    return base[[schema.SYMBOL, "as_of", "oracle"]]


def evaluate_bundle(
    bundle: ModelBundle, curated: pd.DataFrame, start_idx: int, data_root: Path, *, interpret: bool = True
) -> Evaluation:
    """Backtest a bundle from ``start_idx`` on and compute every metric.

    Args:
        bundle: The model.
        curated: Curated rows of all symbols.
        start_idx: First target ``time_idx`` of the test window.
        data_root: Where to look for ``synth_truth.json``.
        interpret: Also compute mean variable importances.

    Returns:
        The evaluation.

    """
    predictions, importance = bundle.backtest(curated, start_idx, interpret=interpret)
    oracle = load_oracle(data_root, predictions)
    metrics = compute_metrics(predictions, bundle.quantiles, oracle)
    if oracle is not None:
        predictions = predictions.merge(oracle, on=[schema.SYMBOL, "as_of"], how="left")
    return Evaluation(metrics=metrics, predictions=predictions, importance=importance)


def common_mae(a: pd.DataFrame, b: pd.DataFrame) -> tuple[float, float, int]:
    """MAE of two backtests' medians on the (symbol, date) samples they share (for the gate)."""
    keys = [schema.SYMBOL, schema.DATE]
    median = price_column(0.5)
    joined = a[[*keys, "actual", median]].merge(b[[*keys, median]], on=keys, suffixes=("_a", "_b"))
    if joined.empty:
        return float("nan"), float("nan"), 0
    mae_a = float(np.mean(np.abs(joined[f"{median}_a"] - joined["actual"])))
    mae_b = float(np.mean(np.abs(joined[f"{median}_b"] - joined["actual"])))
    return mae_a, mae_b, len(joined)


# --- Report -------------------------------------------------------------------------------------


def write_report(
    out_dir: Path,
    evaluation: Evaluation,
    context: dict[str, Any],
    *,
    calibration: Mapping[Any, Mapping[str, Any]] | None = None,
    records: pd.DataFrame | None = None,
) -> Path:
    """Write ``report.md`` and its PNG plots into ``out_dir``.

    Args:
        out_dir: ``DIR/reports/<run>/``.
        evaluation: The test evaluation.
        context: Run facts shown in the header (run id, data version, split, gate decision...).
        calibration: The bundle's ``metadata["calibration"]``: per horizon ``shrink``,
            ``coverage_raw``, ``coverage_calibrated``, ``mae_vs_naive``, ``n``, ``skill``.
        records: The held-out walk-forward path records the calibration was fitted on (with
            ``c_q10, c_q50, c_q90`` where calibrated): drawn as coverage by nominal level.

    Returns:
        The report's path.

    """
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = [plot_forecasts(out_dir / "forecast_vs_actual.png", evaluation.predictions)]
    if evaluation.importance:
        plots.append(plot_importance(out_dir / "variable_importance.png", evaluation.importance))
    coverage = plot_coverage_by_level(out_dir / COVERAGE_PLOT, records) if records is not None else None
    m = evaluation.metrics
    has_oracle = "oracle_mae" in m

    def row(label: str, prefix: str) -> str:
        return f"| {label} | {m[prefix + 'mae']:.4f} | {m[prefix + 'rmse']:.4f} | {m[prefix + 'mape']:.3f} |"

    lines = ["# tickercast evaluation", ""]
    lines += [f"- **{key}**: {value}" for key, value in context.items()]
    lines += [
        f"- **test forecasts**: {int(m['samples'])}",
        "",
        "## Next-day close on the test split",
        "",
        "| forecast | MAE | RMSE | MAPE % |",
        "|---|---|---|---|",
        row("TFT median (P50)", ""),
        row("naive (next close = last close)", "naive_"),
    ]
    if has_oracle:
        lines.append(row("oracle (knows the planted signal)", "oracle_"))
    lines += [
        "",
        f"- Skill vs naive (1 - MAE / naive MAE): **{m['skill_vs_naive']:+.3%}**",
        f"- Pinball loss (mean over quantiles): {m['pinball']:.4f}",
        f"- P10–P90 coverage: {m['coverage_p10_p90']:.1%} (80% expected for calibrated quantiles)",
        f"- MAE of the log return: model {m['mae_log_return']:.5f}, naive {m['naive_mae_log_return']:.5f}"
        + (f", oracle {m['oracle_mae_log_return']:.5f}" if has_oracle else ""),
        "",
        "A model that does not beat the naive forecast has learnt nothing usable; one that beats the "
        "oracle on synthetic data has seen the future (leakage).",
        "",
    ]
    lines += calibration_section(calibration)
    if coverage is not None:
        lines += [f"![{coverage.stem}]({coverage.name})", ""]
    lines += [f"![{p.stem}]({p.name})" for p in plots if p is not None]
    report = out_dir / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report


def _share(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "–"
    return f"{number:.1%}" if np.isfinite(number) else "–"


def _figure(value: Any, digits: int) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "–"
    return f"{number:.{digits}f}" if np.isfinite(number) else "–"


def calibration_section(calibration: Mapping[Any, Mapping[str, Any]] | None) -> list[str]:
    """Markdown lines of the calibration: per horizon the shrink factor, coverage before/after, the skill.

    Args:
        calibration: ``metadata["calibration"]`` of the bundle (keys are horizons, as str or int).

    Returns:
        The section's lines; a line saying the model is not calibrated when there is nothing.

    """
    lines = ["## Calibration and stated skill", ""]
    if not calibration:
        return [*lines, "The model has no calibration: its raw P10–P90 band and median are served.", ""]
    horizons = sorted(calibration, key=lambda h: int(h))
    lines += [
        "Fitted on the model's walk-forward forecasts over the held-out window. The median is shrunk "
        "toward the random walk by `shrink` (0 = the random walk, 1 = the raw model); the conformal "
        "layer moves the P10–P90 band so that it covers 80% of outcomes.",
        "",
        "| horizon | shrink | P10–P90 coverage raw | calibrated | MAE vs naive | n | skill |",
        "|---|---|---|---|---|---|---|",
    ]
    for h in horizons:
        figures = calibration[h]
        n = figures.get("n")
        lines.append(
            f"| {int(h)} | {_figure(figures.get('shrink'), 2)} | {_share(figures.get('coverage_raw'))} | "
            f"{_share(figures.get('coverage_calibrated'))} | {_figure(figures.get('mae_vs_naive'), 3)} | "
            f"{'–' if n is None else int(n)} | {figures.get('skill') or '–'} |"
        )
    ends = list(dict.fromkeys([horizons[0], horizons[-1]]))
    said = [str(calibration[h].get("skill")) for h in ends if calibration[h].get("skill")]
    if said:
        sentence = "; ".join(said)
        lines += ["", f"**Skill:** {sentence[0].upper()}{sentence[1:]}."]
    return [*lines, ""]


def plot_coverage_by_level(
    path: Path, records: pd.DataFrame, levels: Sequence[float] = LEVELS
) -> Path | None:
    """Realised against nominal coverage of the walk-forward records at h = 1 and the largest horizon.

    The raw quantiles dashed, the calibrated ones (``c_q*``, where the records have them) solid.

    Returns:
        ``path``, or ``None`` when no record is settled.

    """
    from tickercast.model.calibration import coverage_by_level

    settled = records.dropna(subset=["actual", "q10", "q50", "q90"])
    if settled.empty:
        return None
    ordered = sorted(int(h) for h in settled["horizon"].unique())
    horizons = list(dict.fromkeys([ordered[0], ordered[-1]]))
    settled = settled[settled["horizon"].isin(horizons)]
    lines = {"raw": coverage_by_level(settled, levels)}
    if all(c in settled for c in ("c_q10", "c_q50", "c_q90")) and settled["c_q50"].notna().all():
        lines["calibrated"] = coverage_by_level(settled, levels, prefix="c_")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import PercentFormatter

    fig, axes = plt.subplots(1, len(horizons), figsize=(5 * len(horizons), 4.4), squeeze=False, sharey=True)
    for ax, h in zip(axes[0], horizons, strict=True):
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="calibrated (diagonal)")
        for name, table in lines.items():
            part = table[table["horizon"] == h]
            ax.plot(
                part["level"],
                part["coverage"],
                marker="o",
                markersize=3.5,
                color="#1d4ed8",
                linestyle="-" if name == "calibrated" else "--",
                linewidth=2.4 if name == "calibrated" else 1.4,
                label=f"{name} band",
            )
        n = int(settled["horizon"].eq(h).sum())
        ax.set_title(f"h={h}: {n} held-out forecasts", fontsize=10)
        ax.set_xlim(0.1, 1.0)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("nominal coverage of the central band")
        ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.axvline(0.8, color="grey", linewidth=0.6, alpha=0.5)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("realised coverage")
    axes[0][0].legend(fontsize=8, loc="upper left")
    fig.suptitle(
        "Coverage by nominal level on the calibration window\n"
        "(the calibrated band in sample; below the diagonal = too narrow, above = too wide)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_forecasts(path: Path, predictions: pd.DataFrame, tickers: int = PLOT_TICKERS) -> Path:
    """Forecast (P50 with the P10–P90 band) against the actual close for a few tickers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    symbols = sorted(predictions[schema.SYMBOL].unique())[:tickers]
    fig, axes = plt.subplots(len(symbols), 1, figsize=(9, 2.8 * max(1, len(symbols))), squeeze=False)
    for ax, symbol in zip(axes[:, 0], symbols, strict=True):
        part = predictions[predictions[schema.SYMBOL] == symbol]
        dates = pd.to_datetime(part[schema.DATE])
        ax.fill_between(dates, part["p10"], part["p90"], alpha=0.25, label="P10–P90")
        ax.plot(dates, part["p50"], label="P50 forecast")
        ax.plot(dates, part["actual"], color="black", linewidth=1, label="actual close")
        ax.set_title(symbol)
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_importance(path: Path, importance: dict[str, dict[str, float]]) -> Path:
    """Horizontal bars of the TFT's mean variable-selection weights (encoder, decoder, static)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [(k, v) for k, v in importance.items() if v]
    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 5), squeeze=False)
    for ax, (name, shares) in zip(axes[0], groups, strict=True):
        ordered = sorted(shares.items(), key=lambda kv: kv[1])
        ax.barh([k for k, _ in ordered], [v for _, v in ordered])
        ax.set_title(f"{name} variables")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def run_evaluation(settings: Settings, model_uri: str | None = None) -> Evaluation:
    """Evaluate a registered model (default: the champion) or a bundle folder on the test split.

    The test split is recomputed from the current curated data with the configured fractions, the
    metrics are logged to a new MLflow run, and the report goes to ``DIR/reports/<run>/``.

    Args:
        settings: The effective settings.
        model_uri: ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or a bundle folder.

    Returns:
        The evaluation; ``context`` holds ``model``, ``run_id`` and ``report``.

    Raises:
        UserError: No curated data, or no such model, or a bundle that fails verification.

    """
    from tickercast.config import CHAMPION_ALIAS
    from tickercast.errors import BundleError, UserError
    from tickercast.model.bundle import ModelBundle
    from tickercast.model.inputs import model_frame
    from tickercast.model.registry_client import load_from_registry
    from tickercast.train import dataset as ds
    from tickercast.train import tracking

    curated, manifest = ds.read_curated(settings)
    uri = model_uri or f"models:/{settings.registered_model_name}@{CHAMPION_ALIAS}"
    try:
        if Path(uri).is_dir():
            bundle, version = ModelBundle.load(Path(uri)), None
        else:
            bundle, version = load_from_registry(uri, settings.tracking_uri)
    except BundleError as exc:
        raise UserError(str(exc)) from None
    frame = model_frame(curated, bundle.spec)
    split = ds.compute_split(frame, settings.train.val_fraction, settings.train.test_fraction)
    evaluation = evaluate_bundle(bundle, curated, split.test_start_idx, settings.data_root)

    client = tracking.client_for(settings.tracking_uri)
    run = client.create_run(
        tracking.experiment_id(settings),
        tags={
            "mlflow.runName": f"evaluate-{'v' + version if version else 'bundle'}",
            "tickercast.kind": "evaluate",
            "model_uri": uri,
            "model_version": version or "",
            "model_run_id": str(bundle.metadata.get("run_id")),
            "data_version": manifest.data_version,
        },
    )
    run_id = run.info.run_id
    try:
        tracking.log_metrics(client, run_id, {f"test_{k}": v for k, v in evaluation.metrics.items()})
        report_dir = settings.reports_dir / run_id
        context = {
            "evaluation run": run_id,
            "model": uri + (f" (v{version})" if version else ""),
            "model trained in run": bundle.metadata.get("run_id"),
            "data version": manifest.data_version,
            "test window": f"{split.test_start.date()} .. {split.last_date.date()}",
        }
        report = write_report(report_dir, evaluation, context, calibration=bundle.metadata.get("calibration"))
        evaluation.predictions.to_csv(report_dir / "test_predictions.csv", index=False)
        client.log_artifacts(run_id, str(report_dir), "report")
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
    evaluation.context = {"model": context["model"], "run_id": run_id, "report": report}
    return evaluation
