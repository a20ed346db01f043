"""Honest evaluation on the test split: the model against the forecasts anyone gets for free.

Every forecast reads only rows strictly before its target date (see
:func:`tickercast.model.inference.backtest`). The model's median is compared with the
naive forecast (next close = last close) and, on synthetic data, with the oracle that knows the
planted signal (``close_t * exp(planted_t)`` from ``synth_oracle.parquet``).
"""

from __future__ import annotations

import json
import logging
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


def write_report(out_dir: Path, evaluation: Evaluation, context: dict[str, Any]) -> Path:
    """Write ``report.md`` and its PNG plots into ``out_dir``.

    Args:
        out_dir: ``DIR/reports/<run>/``.
        evaluation: The test evaluation.
        context: Run facts shown in the header (run id, data version, split, gate decision...).

    Returns:
        The report's path.

    """
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = [plot_forecasts(out_dir / "forecast_vs_actual.png", evaluation.predictions)]
    if evaluation.importance:
        plots.append(plot_importance(out_dir / "variable_importance.png", evaluation.importance))
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
    lines += [f"![{p.stem}]({p.name})" for p in plots if p is not None]
    report = out_dir / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report


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
        report = write_report(report_dir, evaluation, context)
        evaluation.predictions.to_csv(report_dir / "test_predictions.csv", index=False)
        client.log_artifacts(run_id, str(report_dir), "report")
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
    evaluation.context = {"model": context["model"], "run_id": run_id, "report": report}
    return evaluation
