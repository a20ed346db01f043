"""Inference over a loaded bundle: next-day forecasts, their explanations and backtests.

:class:`tickercast.model.bundle.ModelBundle` exposes these as its ``predict``, ``explain`` and
``backtest`` methods; serving, the pyfunc flavour and evaluation call them there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tickercast import schema
from tickercast.model import inputs

if TYPE_CHECKING:
    from pytorch_forecasting import TemporalFusionTransformer, TimeSeriesDataSet

    from tickercast.model.bundle import ModelBundle

PREDICT_BATCH = 256


class InsufficientHistoryError(ValueError):
    """Some symbols have fewer usable rows than the model's encoder needs."""


def forecast_dataset(
    network: TemporalFusionTransformer, dataset: TimeSeriesDataSet, *, interpret: bool = False
) -> tuple[pd.DataFrame, dict[str, np.ndarray] | None]:
    """Run the network over every sample of ``dataset`` in batches, without gradients.

    Args:
        network: The TFT (any device; put in eval mode here).
        dataset: Samples to forecast (one decoder step each).
        interpret: Also return per-sample variable importances and attention.

    Returns:
        A frame with ``symbol``, ``time_idx`` (the target step) and one column per quantile
        (``q10``, ``q50``, ``q90``: log returns), in the dataset's order; and, when ``interpret``,
        arrays ``static``, ``encoder``, ``decoder`` (importances) and ``attention``.

    """
    import torch

    network.eval()
    quantiles = list(network.loss.quantiles)
    frames: list[pd.DataFrame] = []
    parts: dict[str, list[np.ndarray]] = {"static": [], "encoder": [], "decoder": [], "attention": []}
    loader = dataset.to_dataloader(train=False, batch_size=PREDICT_BATCH, num_workers=0)
    with torch.no_grad():
        for x, _ in loader:
            out = network(x)
            pred = out["prediction"][:, 0, :].cpu().numpy()
            index = dataset.x_to_index(x)
            frame = pd.DataFrame({schema.SYMBOL: index[schema.SYMBOL].astype(str).to_numpy()})
            frame[schema.TIME_IDX] = index[schema.TIME_IDX].to_numpy()
            for i, q in enumerate(quantiles):
                frame[quantile_column(q)] = pred[:, i]
            frames.append(frame)
            if interpret:
                interpretation = network.interpret_output(out, reduction="none")
                parts["static"].append(interpretation["static_variables"].cpu().numpy())
                parts["encoder"].append(interpretation["encoder_variables"].cpu().numpy())
                parts["decoder"].append(interpretation["decoder_variables"].cpu().numpy())
                parts["attention"].append(interpretation["attention"].cpu().numpy())
    result = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if not interpret:
        return result, None
    return result, {k: np.concatenate(v) if v else np.empty((0, 0)) for k, v in parts.items()}


def quantile_column(q: float) -> str:
    """``0.1`` -> ``q10``: the column holding that quantile of the log return."""
    return f"q{round(q * 100):02d}"


def price_column(q: float) -> str:
    """``0.1`` -> ``p10``: the column holding that quantile of the next close."""
    return f"p{round(q * 100):02d}"


def _shares(values: np.ndarray, names: list[str]) -> dict[str, float]:
    total = float(np.nansum(values))
    if total <= 0:
        return dict.fromkeys(names, 0.0)
    return {name: float(v) / total for name, v in zip(names, values, strict=True)}


def prediction_inputs(bundle: ModelBundle, frame: pd.DataFrame) -> tuple[TimeSeriesDataSet, pd.DataFrame]:
    """Build the one-step-ahead dataset of every symbol in ``frame``.

    Args:
        bundle: The loaded model.
        frame: Curated rows, as for :func:`predict`.

    Returns:
        The dataset and the per-symbol frame of :func:`tickercast.model.inputs.prediction_dataset`.

    Raises:
        InsufficientHistoryError: A symbol has too little history.

    """
    rows = inputs.model_frame(frame, bundle.spec)
    counts = rows.groupby(schema.SYMBOL).size()
    symbols = sorted(set(pd.Series(frame[schema.SYMBOL]).astype(str)))
    short = [s for s in symbols if counts.get(s, 0) < bundle.max_encoder_length]
    if short:
        raise InsufficientHistoryError(
            f"not enough history for {', '.join(short)}: each symbol needs "
            f"{bundle.metadata.get('min_history_rows')} curated rows after the 200-day indicator warm-up"
        )
    return inputs.prediction_dataset(bundle.dataset_parameters, rows, bundle.max_encoder_length)


def predict(bundle: ModelBundle, frame: pd.DataFrame) -> pd.DataFrame:
    """Forecast the next trading day's close for every symbol in ``frame``, in one batched pass.

    Args:
        bundle: The loaded model.
        frame: Curated rows (one or many symbols, any order); each symbol needs at least
            ``metadata["min_history_rows"]`` rows outside the indicator warm-up.

    Returns:
        One row per symbol: ``symbol, as_of, forecast_for, last_close, p10, p50, p90`` (prices).

    Raises:
        InsufficientHistoryError: A symbol has too little history.

    """
    dataset, info = prediction_inputs(bundle, frame)
    quantiles, _ = forecast_dataset(bundle.network, dataset)
    merged = info.merge(quantiles.drop(columns=[schema.TIME_IDX]), on=schema.SYMBOL, how="left")
    out = merged[[schema.SYMBOL, "as_of", "forecast_for", "last_close"]].copy()
    for q in bundle.quantiles:
        out[price_column(q)] = merged["last_close"] * np.exp(merged[quantile_column(q)])
    return out.reset_index(drop=True)


def explain(bundle: ModelBundle, frame: pd.DataFrame) -> dict[str, dict]:
    """Explain the forecast of every symbol in ``frame``: variable importances and attention.

    Args:
        bundle: The loaded model.
        frame: Curated rows, as for :func:`predict`.

    Returns:
        ``{symbol: {"encoder_importance", "decoder_importance", "static_importance"
        (feature -> share summing to 1), "attention" (list over encoder steps, oldest first)}}``.

    """
    dataset, _ = prediction_inputs(bundle, frame)
    quantiles, parts = forecast_dataset(bundle.network, dataset, interpret=True)
    assert parts is not None
    network = bundle.network
    result: dict[str, dict] = {}
    for i, symbol in enumerate(quantiles[schema.SYMBOL]):
        attention = np.nan_to_num(parts["attention"][i][: bundle.max_encoder_length], nan=0.0)
        result[symbol] = {
            "encoder_importance": _shares(parts["encoder"][i], list(network.encoder_variables)),
            "decoder_importance": _shares(parts["decoder"][i], list(network.decoder_variables)),
            "static_importance": _shares(parts["static"][i], list(network.static_variables)),
            "attention": [float(a) for a in attention],
        }
    return result


def backtest(
    bundle: ModelBundle, curated: pd.DataFrame, start_idx: int, *, interpret: bool = False
) -> tuple[pd.DataFrame, dict | None]:
    """Forecast every (symbol, date) with ``time_idx >= start_idx`` from the rows before it.

    Used for honest evaluation (each forecast reads only rows strictly before its target date)
    and to re-evaluate the champion on a new test window.

    Args:
        bundle: The loaded model.
        curated: Curated rows of all symbols.
        start_idx: First target ``time_idx`` to forecast.
        interpret: Also return mean variable importances over the window.

    Returns:
        A frame with ``symbol, date, as_of, last_close, actual, p10, p50, p90`` and, when
        ``interpret``, ``{"encoder": {feature: share}, "decoder": ..., "static": ...}``.

    """
    from pytorch_forecasting import TimeSeriesDataSet

    rows = inputs.model_frame(curated, bundle.spec)
    dataset = TimeSeriesDataSet.from_parameters(
        bundle.dataset_parameters, rows, min_prediction_idx=int(start_idx), stop_randomization=True
    )
    quantiles, parts = forecast_dataset(bundle.network, dataset, interpret=interpret)
    lookup = rows[
        [schema.SYMBOL, schema.TIME_IDX, schema.DATE, inputs.PREV_DATE, inputs.PREV_CLOSE, schema.CLOSE]
    ]
    merged = quantiles.merge(lookup, on=[schema.SYMBOL, schema.TIME_IDX], how="inner")
    out = pd.DataFrame(
        {
            schema.SYMBOL: merged[schema.SYMBOL],
            schema.DATE: merged[schema.DATE].dt.date,
            "as_of": merged[inputs.PREV_DATE].dt.date,
            "last_close": merged[inputs.PREV_CLOSE],
            "actual": merged[schema.CLOSE],
        }
    )
    for q in bundle.quantiles:
        out[price_column(q)] = merged[inputs.PREV_CLOSE] * np.exp(merged[quantile_column(q)])
    importance = None
    network = bundle.network
    if interpret and parts is not None and len(out):
        importance = {
            "encoder": _shares(np.nanmean(parts["encoder"], axis=0), list(network.encoder_variables)),
            "decoder": _shares(np.nanmean(parts["decoder"], axis=0), list(network.decoder_variables)),
            "static": _shares(np.nanmean(parts["static"], axis=0), list(network.static_variables)),
        }
    return out.sort_values([schema.SYMBOL, schema.DATE]).reset_index(drop=True), importance
