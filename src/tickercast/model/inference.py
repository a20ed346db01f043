"""Inference over a loaded bundle: forecast paths, their explanations and walk-forward records.

The TFT forecasts the daily log return of each of the ``horizon`` trading days after an origin,
each with its quantiles. The return from the origin to day ``h`` is their sum: its median is taken
as the sum of the daily medians and its lower and upper half-widths as the daily half-widths added
in quadrature (daily returns are close to uncorrelated). That makes a band per horizon that widens
like a random walk's; :mod:`tickercast.model.calibration` then rescales it on walk-forward
residuals so that it keeps its nominal coverage.

:class:`tickercast.model.bundle.ModelBundle` exposes ``predict``, ``predict_paths``, ``explain`` and
``backtest``; serving, the pyfunc flavour, evaluation and the backtest call them there.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tickercast import schema
from tickercast.model import inputs, windows

if TYPE_CHECKING:
    from pytorch_forecasting import TemporalFusionTransformer

    from tickercast.model.bundle import ModelBundle

PREDICT_BATCH = 256


class InsufficientHistoryError(ValueError):
    """Some symbols have fewer usable rows than the model's encoder needs."""


def forecast_windows(
    network: TemporalFusionTransformer,
    layout: windows.Layout,
    series: windows.Series,
    samples: windows.Windows,
    *,
    interpret: bool = False,
    unique_origins: bool = False,
) -> tuple[pd.DataFrame, dict[str, np.ndarray] | None]:
    """Run the network over every window in batches, without gradients.

    Args:
        network: The TFT (any device; put in eval mode here).
        layout: The bundle's input layout.
        series: The encoded model rows.
        samples: The windows to forecast (one or more decoder steps each).
        interpret: Also return per-sample variable importances and attention.
        unique_origins: The windows start their decoders on distinct (symbol, day) pairs (one
            window per symbol): skip keeping the longest forecast per origin.

    Returns:
        A frame with one row per sample and decoder step: ``sample`` (the sample's position),
        ``symbol``, ``time_idx`` (the step's target), ``step`` (1 for the first day after the
        origin) and one column per quantile (``q10``, ``q50``, ``q90``: that day's log return), in
        the windows' order; and, when ``interpret``, per-sample arrays ``static``, ``encoder``,
        ``decoder`` (importances) and ``attention``.

    """
    import torch

    network.eval()
    quantiles = list(network.loss.quantiles)
    frames: list[pd.DataFrame] = []
    parts: dict[str, list[np.ndarray]] = {"static": [], "encoder": [], "decoder": [], "attention": []}
    symbols = np.asarray(series.symbols, dtype=object)
    seen = 0
    with torch.no_grad():
        for x, part in windows.batches(layout, series, samples, PREDICT_BATCH):
            out = network(x)
            pred = out["prediction"].cpu().numpy()  # (samples, steps, quantiles)
            lengths = part.decoder_lengths
            n_samples, n_steps = pred.shape[0], pred.shape[1]
            sample, step = np.divmod(np.arange(n_samples * n_steps), n_steps)
            keep = step < lengths[sample]
            sample, step = sample[keep], step[keep]
            frame = pd.DataFrame(
                {
                    "sample": seen + sample,
                    schema.SYMBOL: symbols[part.series[sample]].astype(str),
                    schema.TIME_IDX: (part.first + part.encoder_lengths)[sample] + step,
                    "step": step + 1,
                }
            )
            for i, q in enumerate(quantiles):
                frame[quantile_column(q)] = pred[sample, step, i]
            frames.append(frame)
            seen += n_samples
            if interpret:
                interpretation = network.interpret_output(out, reduction="none")
                parts["static"].append(interpretation["static_variables"].cpu().numpy())
                parts["encoder"].append(interpretation["encoder_variables"].cpu().numpy())
                parts["decoder"].append(interpretation["decoder_variables"].cpu().numpy())
                parts["attention"].append(interpretation["attention"].cpu().numpy())
    result = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if len(result) and not unique_origins:
        result = _longest_per_origin(result)
    if not interpret:
        return result, None
    return result, {k: np.concatenate(v) if v else np.empty((0, 0)) for k, v in parts.items()}


def forecast_rows(
    bundle: ModelBundle,
    rows: pd.DataFrame,
    *,
    interpret: bool = False,
    predict: bool = False,
    min_prediction_idx: int | None = None,
) -> tuple[pd.DataFrame, dict[str, np.ndarray] | None]:
    """Cut the windows of model ``rows`` and forecast them, as :func:`forecast_windows` does.

    Each symbol is its own series (:mod:`tickercast.model.windows`), known to the model or not.

    Args:
        bundle: The loaded model.
        rows: Model rows (:func:`tickercast.model.inputs.model_frame`).
        interpret: Also return the per-sample interpretation arrays.
        predict: One window per symbol, ending on its last row (the decoder rows of
            :func:`tickercast.model.inputs.prediction_rows`); otherwise every window.
        min_prediction_idx: First ``time_idx`` a decoder may start on (default: the training set's).

    Raises:
        ValueError: No symbol has a window.

    """
    layout = bundle.layout
    series = windows.encode(layout, rows)
    cut = windows.prediction_windows if predict else windows.all_windows
    samples = cut(layout, series, min_prediction_idx)
    if not len(samples):
        raise ValueError(
            "no forecast window: every symbol has too few rows for the encoder and horizon "
            "(or none reaches the first date to forecast)"
        )
    return forecast_windows(
        bundle.network, layout, series, samples, interpret=interpret, unique_origins=predict
    )


def _longest_per_origin(steps: pd.DataFrame) -> pd.DataFrame:
    """Keep one sample per symbol and first forecast day: the one that forecasts the most days.

    Near the end of a series the dataset also holds shorter decoders starting on the same day (they
    train the first days on the last dates); their common days forecast the same numbers.
    """
    first = steps[steps["step"] == 1][["sample", schema.SYMBOL, schema.TIME_IDX]]
    length = steps.groupby("sample")["step"].max()
    first = first.assign(length=first["sample"].map(length))
    best = first.sort_values("length", kind="stable").drop_duplicates(
        [schema.SYMBOL, schema.TIME_IDX], keep="last"
    )
    return steps[steps["sample"].isin(best["sample"])].reset_index(drop=True)


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


def prediction_inputs(bundle: ModelBundle, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Build the model rows that forecast the path after every symbol's last row in ``frame``.

    Args:
        bundle: The loaded model.
        frame: Curated rows, as for :func:`predict`.

    Returns:
        The rows and the per-symbol frame of :func:`tickercast.model.inputs.prediction_rows`.

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
    return inputs.prediction_rows(bundle.dataset_parameters, rows, bundle.max_encoder_length)


def cumulative_quantiles(steps: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Turn daily-return quantiles into quantiles of the return from the origin to each step.

    Args:
        steps: One row per forecast and ``step`` with ``q10, q50, q90`` of that day's log return,
            steps of a forecast in order.
        keys: The columns that identify a forecast (``sample`` or ``symbol``).

    Returns:
        The same rows with ``q10, q50, q90`` replaced: the median summed over the steps so far, the
        lower and upper half-widths added in quadrature.

    """
    out = steps.sort_values([*keys, "step"], kind="stable").reset_index(drop=True)
    grouped = out.groupby(keys, sort=False)
    median = grouped["q50"].cumsum()
    below = (out["q50"] - out["q10"]).clip(lower=0.0) ** 2
    above = (out["q90"] - out["q50"]).clip(lower=0.0) ** 2
    out["q10"] = median - np.sqrt(below.groupby([out[k] for k in keys], sort=False).cumsum())
    out["q90"] = median + np.sqrt(above.groupby([out[k] for k in keys], sort=False).cumsum())
    out["q50"] = median
    return out


def predict_paths(bundle: ModelBundle, frame: pd.DataFrame) -> pd.DataFrame:
    """Forecast each of the model's ``horizon`` trading days after every symbol's last row.

    Args:
        bundle: The loaded model.
        frame: Curated rows (one or many symbols, any order); each symbol needs at least
            ``metadata["min_history_rows"]`` rows outside the indicator warm-up.

    Returns:
        One row per symbol and horizon: ``symbol, as_of, horizon, forecast_for, last_close, vol``,
        ``q10, q50, q90`` (log return from the origin) and ``p10, p50, p90`` (prices).

    Raises:
        InsufficientHistoryError: A symbol has too little history.

    """
    rows, info = prediction_inputs(bundle, frame)
    steps, _ = forecast_rows(bundle, rows, predict=True)
    paths = cumulative_quantiles(steps, ["sample"]).rename(columns={"step": "horizon"})
    paths = paths.drop(columns=["sample", schema.TIME_IDX])
    merged = info.merge(paths, on=[schema.SYMBOL, "horizon"], how="left")
    for q in bundle.quantiles:
        merged[price_column(q)] = merged["last_close"] * np.exp(merged[quantile_column(q)])
    return merged.sort_values([schema.SYMBOL, "horizon"]).reset_index(drop=True)


def predict(bundle: ModelBundle, frame: pd.DataFrame) -> pd.DataFrame:
    """Forecast the next trading day's close for every symbol in ``frame``, in one batched pass.

    Args:
        bundle: The loaded model.
        frame: Curated rows, as for :func:`predict_paths`.

    Returns:
        One row per symbol: ``symbol, as_of, forecast_for, last_close, p10, p50, p90`` (prices).

    Raises:
        InsufficientHistoryError: A symbol has too little history.

    """
    paths = predict_paths(bundle, frame)
    first = paths[paths["horizon"] == 1]
    columns = [
        schema.SYMBOL,
        "as_of",
        "forecast_for",
        "last_close",
        *(price_column(q) for q in bundle.quantiles),
    ]
    return first[columns].reset_index(drop=True)


def explain(bundle: ModelBundle, frame: pd.DataFrame) -> dict[str, dict]:
    """Explain the forecast of every symbol in ``frame``: variable importances and attention.

    Args:
        bundle: The loaded model.
        frame: Curated rows, as for :func:`predict`.

    Returns:
        ``{symbol: {"encoder_importance", "decoder_importance", "static_importance"
        (feature -> share summing to 1), "attention" (list over encoder steps, oldest first)}}``.

    """
    rows, _ = prediction_inputs(bundle, frame)
    steps, parts = forecast_rows(bundle, rows, interpret=True, predict=True)
    assert parts is not None
    network = bundle.network
    result: dict[str, dict] = {}
    samples = steps[steps["step"] == 1]
    for i, symbol in zip(samples["sample"], samples[schema.SYMBOL], strict=True):
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
    rows = inputs.model_frame(curated, bundle.spec)
    steps, parts = forecast_rows(bundle, rows, interpret=interpret, min_prediction_idx=int(start_idx))
    quantiles = steps[steps["step"] == 1]
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


def walk_forward(
    bundle: ModelBundle, curated: pd.DataFrame, origins: Sequence[dt.date], horizon: int | None = None
) -> pd.DataFrame:
    """Forecast from each origin date, reading only rows dated on or before it, in one batched pass.

    Args:
        bundle: The loaded model.
        curated: Curated rows of all symbols (rows after an origin give the actual outcomes only).
        origins: The origin dates; a symbol is forecast from an origin where it has a row that day
            and the encoder's history before it.
        horizon: Days ahead to keep (at most the model's horizon; ``None`` = the model's).

    Returns:
        The path-record frame: ``model`` (``tft``), ``symbol, origin, horizon, forecast_for,
        last_close, q10, q50, q90`` (log return from the origin), ``vol`` (daily volatility at the
        origin) and ``actual`` (the realised log return; NaN where the data ends first).

    Raises:
        ValueError: ``horizon`` is above the model's.

    """
    model_horizon = inputs.horizon_of(bundle.dataset_parameters)
    horizon = model_horizon if horizon is None else int(horizon)
    if not 1 <= horizon <= model_horizon:
        raise ValueError(f"the model forecasts 1 to {model_horizon} days ahead; {horizon} was asked")
    rows = inputs.model_frame(curated, bundle.spec)
    wanted = pd.to_datetime(pd.Series(sorted(set(origins)))).astype("datetime64[ns]")
    columns = [schema.SYMBOL, "origin", "horizon", "forecast_for", "last_close", "q10", "q50", "q90", "vol"]
    at_origin = rows[rows[schema.DATE].isin(wanted)]
    if at_origin.empty:
        return pd.DataFrame(columns=["model", *columns, "actual"])
    inner = _paths_inside(bundle, rows, at_origin, horizon)
    # Origins on a symbol's last row have no rows after them: forecast those as serving does
    # (an origin with too short a history is not forecast, as in the batched pass).
    done = set(zip(inner[schema.SYMBOL], inner["origin"], strict=True))
    pairs = zip(at_origin[schema.SYMBOL], at_origin[schema.DATE].dt.date, strict=True)
    last_row = rows.groupby(schema.SYMBOL)[schema.DATE].transform("max").loc[at_origin.index]
    history = rows.groupby(schema.SYMBOL).cumcount().loc[at_origin.index] + 1
    pending = at_origin[
        np.array([pair not in done for pair in pairs], dtype=bool)
        & (at_origin[schema.DATE] == last_row).to_numpy()
        & (history >= bundle.max_encoder_length).to_numpy()
    ]
    parts = [inner]
    dates = pd.to_datetime(curated[schema.DATE])
    for origin, symbols in pending.groupby(schema.DATE)[schema.SYMBOL]:
        history = curated[(dates <= origin) & curated[schema.SYMBOL].astype(str).isin(set(symbols))]
        paths = predict_paths(bundle, history).rename(columns={"as_of": "origin"})
        parts.append(paths[paths["horizon"] <= horizon].assign(actual=np.nan))
    out = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else inner
    out = out.assign(model="tft")[["model", *columns, "actual"]]
    return out.sort_values([schema.SYMBOL, "origin", "horizon"]).reset_index(drop=True)


def _paths_inside(
    bundle: ModelBundle, rows: pd.DataFrame, at_origin: pd.DataFrame, horizon: int
) -> pd.DataFrame:
    """Walk-forward paths from origins that have rows after them, in one batched pass over ``rows``."""
    columns = [schema.SYMBOL, "origin", "horizon", "forecast_for", "last_close", "q10", "q50", "q90", "vol"]
    first_target = int(at_origin[schema.TIME_IDX].min()) + 1
    if not (rows[schema.TIME_IDX] >= first_target).any():
        return pd.DataFrame(columns=[*columns, "actual"])
    steps, _ = forecast_rows(bundle, rows, min_prediction_idx=first_target)
    # A sample's origin is the row before its first decoder step.
    first = steps.loc[steps["step"] == 1, ["sample", schema.TIME_IDX]]
    origin_idx = dict(zip(first["sample"], first[schema.TIME_IDX] - 1, strict=True))
    steps["origin_idx"] = steps["sample"].map(origin_idx)
    keys = at_origin[[schema.SYMBOL, schema.TIME_IDX, schema.DATE, schema.CLOSE, inputs.VOL_COLUMN]]
    steps = steps.merge(
        keys.rename(
            columns={
                schema.TIME_IDX: "origin_idx",
                schema.DATE: "origin",
                schema.CLOSE: "last_close",
                inputs.VOL_COLUMN: "vol",
            }
        ),
        on=[schema.SYMBOL, "origin_idx"],
        how="inner",
    )
    steps = steps[steps["step"] <= horizon]
    paths = cumulative_quantiles(steps, ["sample"]).rename(columns={"step": "horizon"})
    targets = rows[[schema.SYMBOL, schema.TIME_IDX, schema.DATE, schema.CLOSE]].rename(
        columns={schema.DATE: "forecast_for", schema.CLOSE: "actual_close"}
    )
    paths = paths.merge(targets, on=[schema.SYMBOL, schema.TIME_IDX], how="left")
    paths["actual"] = np.log(paths["actual_close"] / paths["last_close"])
    paths["vol"] = paths["vol"] / np.sqrt(252.0)
    paths["origin"] = paths["origin"].dt.date
    paths["forecast_for"] = paths["forecast_for"].dt.date
    return paths[[*columns, "actual"]]
