"""Scores of path records: the leaderboard's metrics per model and horizon (and per ticker).

Every model is scored on the same rows: the (symbol, origin, horizon) cells that every model
forecast and whose actual is known. Library losses come from ``utilsforecast.losses`` (``mae``,
``mqloss``, ``scaled_crps``, ``coverage``), each called with one group per leaderboard row.

- ``mae``: mean absolute error of the median price ``last_close * exp(q50)`` against the close;
  ``mae_vs_naive`` its ratio to the naive model's on the same rows, with a moving-block bootstrap
  90% interval (blocks of consecutive origins, fixed seed).
- ``mase``: absolute error of the median log return scaled by the in-sample MAE of h-day log-close
  changes (the :data:`SCALE_WINDOW` closes up to the origin), averaged over rows: the random walk
  scores about 1.
- ``pinball`` (mean over q10/q50/q90) and ``scaled_crps`` on log returns, so tickers priced
  differently weigh the same.
- ``coverage_80``: share of actuals inside [q10, q90]; ``width_80``: mean (P90 - P10) / last close.
- ``direction_accuracy``: the median's sign matches the realised sign; a median of exactly 0
  (the random walk) makes no call and counts as half a hit, so the random walk scores 0.5.

Calibrated columns ``c_q10, c_q50, c_q90`` (:mod:`tickercast.model.calibration`), where a model has
them, replace its raw quantiles.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

QUANTILES = (0.1, 0.5, 0.9)
QUANTILE_COLUMNS = ("q10", "q50", "q90")
CALIBRATED_COLUMNS = ("c_q10", "c_q50", "c_q90")
KEY = ("symbol", "origin", "horizon")
METRICS = (
    "n",
    "mae",
    "mae_vs_naive",
    "mae_vs_naive_lo",
    "mae_vs_naive_hi",
    "mase",
    "pinball",
    "scaled_crps",
    "coverage_80",
    "width_80",
    "direction_accuracy",
)
NAIVE = "naive"
SCALE_WINDOW = 500
BOOTSTRAP_DRAWS = 2000
BOOTSTRAP_SEED = 0
INTERVAL = 0.9


def effective_quantiles(records: pd.DataFrame) -> pd.DataFrame:
    """Return ``records`` with ``q10, q50, q90`` taken from the calibrated columns where present."""
    if not all(c in records.columns for c in CALIBRATED_COLUMNS):
        return records
    out = records.copy()
    for raw, calibrated in zip(QUANTILE_COLUMNS, CALIBRATED_COLUMNS, strict=True):
        out[raw] = out[calibrated].where(out[calibrated].notna(), out[raw])
    return out


def common_rows(records: pd.DataFrame) -> pd.DataFrame:
    """Keep the settled (symbol, origin, horizon) cells that every model forecast (no NaN quantile)."""
    usable = records.dropna(subset=["actual", "last_close", *QUANTILE_COLUMNS])
    models = usable["model"].nunique()
    counts = usable.groupby(list(KEY))["model"].transform("nunique")
    return usable[counts == models].reset_index(drop=True)


def naive_scales(
    closes: pd.DataFrame, origins: Sequence, horizon: int, window: int = SCALE_WINDOW
) -> pd.DataFrame:
    """In-sample naive MAE of h-day log-close changes per symbol, origin and horizon (MASE's denominator).

    Log closes keep the scale comparable when a price has moved a long way over its history.

    Args:
        closes: ``symbol, date, close`` (from :func:`tickercast.train.baselines.closes`).
        origins: Origin dates.
        horizon: Largest horizon ``H``.
        window: Rows up to and including the origin that the scale averages over.

    Returns:
        ``symbol, origin, horizon, scale``: the mean of ``|ln close_s - ln close_{s-h}|`` over the
        last ``window`` rows up to the origin.

    """
    c = closes.sort_values(["symbol", "date"])
    log_close = np.log(c["close"].astype(float))
    wanted = set(origins)
    parts = []
    for h in range(1, horizon + 1):
        change = (log_close - log_close.groupby(c["symbol"]).shift(h)).abs()
        scale = change.groupby(c["symbol"]).transform(lambda s: s.rolling(window, min_periods=1).mean())
        rows = pd.DataFrame({"symbol": c["symbol"], "origin": c["date"], "horizon": h, "scale": scale})
        parts.append(rows[rows["origin"].isin(wanted)])
    return pd.concat(parts, ignore_index=True)


def _wide(rows: pd.DataFrame, group: pd.Series) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Lay the rows out as utilsforecast wants them: ``group``, target ``y``, columns per model.

    Returns:
        Frames ``returns`` (log returns: ``<m>-q10/q50/q90`` and ``<m>-lo-80/hi-80``), ``prices``
        (median price ``<m>``, relative band width ``<m>-width``, direction hit ``<m>-direction``)
        and ``scaled`` (log returns divided by the MASE scale), and the model names.

    """
    models = sorted(rows["model"].unique())
    cell = rows.pivot_table(index=list(KEY), columns="model", values=list(QUANTILE_COLUMNS), aggfunc="first")
    truth = rows.drop_duplicates(list(KEY)).set_index(list(KEY))[["last_close", "actual", "scale"]]
    truth = truth.loc[cell.index]
    gid = group.loc[cell.index].to_numpy()
    close, actual, scale = (truth[c].to_numpy(float) for c in ("last_close", "actual", "scale"))
    returns = pd.DataFrame({"group": gid, "y": actual})
    prices = pd.DataFrame({"group": gid, "y": close * np.exp(actual)})
    scaled = pd.DataFrame({"group": gid, "y": actual / scale})
    for m in models:
        q10, q50, q90 = (cell[(c, m)].to_numpy(float) for c in QUANTILE_COLUMNS)
        returns[f"{m}-q10"], returns[f"{m}-q50"], returns[f"{m}-q90"] = q10, q50, q90
        returns[f"{m}-lo-80"], returns[f"{m}-hi-80"] = q10, q90
        prices[m] = close * np.exp(q50)
        scaled[m] = q50 / scale
        prices[f"{m}-width"] = np.exp(q90) - np.exp(q10)  # (P90 - P10) / last close
        hit = (np.sign(q50) == np.sign(actual)).astype(float)
        prices[f"{m}-direction"] = np.where(q50 == 0, 0.5, hit)
    return {"returns": returns, "prices": prices, "scaled": scaled}, models


def _long(frame: pd.DataFrame, models: list[str], name: str) -> pd.DataFrame:
    """Turn utilsforecast's ``group, <model>...`` result into ``group, model, <name>``."""
    return frame.melt(id_vars="group", value_vars=models, var_name="model", value_name=name)


def score(rows: pd.DataFrame, by: Sequence[str] = ("horizon",)) -> pd.DataFrame:
    """Metrics per model and group (without the bootstrap interval).

    Args:
        rows: Common rows (:func:`common_rows`) with a ``scale`` column (:func:`naive_scales`);
            must include the ``naive`` model.
        by: Record columns that make a group besides the model (``horizon``, ``symbol``...).

    Returns:
        One row per model and group: the group columns, ``model`` and every metric but the interval.

    """
    from utilsforecast.losses import coverage, mae, mqloss, scaled_crps

    if NAIVE not in set(rows["model"]):
        raise ValueError("the naive model is needed to score mae_vs_naive")
    cells = rows.drop_duplicates(list(KEY)).set_index(list(KEY), drop=False)
    group = cells[list(by)].astype(str).agg("|".join, axis=1)
    frames, models = _wide(rows, group)
    returns, prices = frames["returns"], frames["prices"]
    quantiles = np.array(QUANTILES)
    per_q = {m: [f"{m}-q10", f"{m}-q50", f"{m}-q90"] for m in models}
    ids = {"id_col": "group", "target_col": "y"}
    parts = [
        _long(mae(prices, models, **ids), models, "mae"),
        _long(mae(frames["scaled"], models, **ids), models, "mase"),
        _long(mqloss(returns, per_q, quantiles, **ids), models, "pinball"),
        _long(scaled_crps(returns, per_q, quantiles, **ids), models, "scaled_crps"),
        _long(coverage(returns, models, level=80, **ids), models, "coverage_80"),
    ]
    means = prices.groupby("group")[[f"{m}-{k}" for m in models for k in ("width", "direction")]].mean()
    extra = pd.concat(
        [
            pd.DataFrame(
                {
                    "group": means.index,
                    "model": m,
                    "width_80": means[f"{m}-width"].to_numpy(),
                    "direction_accuracy": means[f"{m}-direction"].to_numpy(),
                    "n": prices.groupby("group").size().reindex(means.index).to_numpy(),
                }
            )
            for m in models
        ]
    )
    table = extra
    for part in parts:
        table = table.merge(part, on=["group", "model"], how="left")
    naive_mae = table.loc[table["model"] == NAIVE].set_index("group")["mae"]
    table["mae_vs_naive"] = table["mae"] / table["group"].map(naive_mae)
    lookup = cells[list(by)].assign(group=group.to_numpy()).drop_duplicates("group")
    table = table.merge(lookup.reset_index(drop=True), on="group").drop(columns="group")
    return table[[*by, "model", *(m for m in METRICS if m in table.columns)]]


def block_bootstrap_ratio(
    numerator: np.ndarray,
    denominator: np.ndarray,
    *,
    block: int,
    draws: int = BOOTSTRAP_DRAWS,
    seed: int = BOOTSTRAP_SEED,
    interval: float = INTERVAL,
) -> tuple[float, float]:
    """Moving-block bootstrap interval of ``sum(numerator) / sum(denominator)`` over a time series.

    Args:
        numerator: Per-origin sums (in origin order), e.g. the model's absolute errors.
        denominator: Per-origin sums of the reference, e.g. naive's absolute errors.
        block: Consecutive origins per block (keeps their dependence inside a resample).
        draws: Bootstrap resamples.
        seed: Random seed (fixed: the interval is reproducible).
        interval: Central coverage of the interval.

    Returns:
        ``(lo, hi)``; NaN with fewer than two origins.

    """
    n = len(numerator)
    if n < 2:
        return math.nan, math.nan
    block = max(1, min(block, n))
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n - block + 1, size=(draws, math.ceil(n / block)))
    index = (starts[:, :, None] + np.arange(block)).reshape(draws, -1)[:, :n]
    ratios = numerator[index].sum(axis=1) / denominator[index].sum(axis=1)
    tail = (1 - interval) / 2
    lo, hi = np.quantile(ratios, [tail, 1 - tail])
    return float(lo), float(hi)


def block_length(origins: int, horizon: int, step: int) -> int:
    """Origins per bootstrap block: the cube root of their number, at least the forecasts' overlap."""
    return max(math.ceil(origins ** (1 / 3)), math.ceil(horizon / max(step, 1)))


def mae_intervals(rows: pd.DataFrame, by: Sequence[str], step: int) -> pd.DataFrame:
    """Bootstrap interval of ``mae_vs_naive`` per model and group, resampling blocks of origins.

    Args:
        rows: Common rows, as for :func:`score`.
        by: Group columns (must include ``horizon``).
        step: Trading days between origins (sets the block length with the horizon).

    Returns:
        The group columns, ``model``, ``mae_vs_naive_lo``, ``mae_vs_naive_hi``.

    """
    frame = rows.assign(error=(rows["last_close"] * (np.exp(rows["q50"]) - np.exp(rows["actual"]))).abs())
    naive = frame.loc[frame["model"] == NAIVE, [*KEY, "error"]].rename(columns={"error": "naive_error"})
    frame = frame.merge(naive, on=list(KEY))
    out = []
    for key, group in frame.groupby([*by, "model"], sort=True):
        per_origin = group.groupby("origin")[["error", "naive_error"]].sum().sort_index()
        values = dict(zip([*by, "model"], key, strict=True))
        block = block_length(len(per_origin), int(values["horizon"]), step)
        lo, hi = block_bootstrap_ratio(
            per_origin["error"].to_numpy(), per_origin["naive_error"].to_numpy(), block=block
        )
        out.append({**values, "mae_vs_naive_lo": lo, "mae_vs_naive_hi": hi})
    return pd.DataFrame(out)


def leaderboard_table(rows: pd.DataFrame, by: Sequence[str] = ("horizon",), step: int = 1) -> pd.DataFrame:
    """Every metric per model and group with the bootstrap interval, ranked by scaled CRPS per group.

    Args:
        rows: Common rows with ``scale`` (see :func:`score`).
        by: Group columns besides the model; ``horizon`` first.
        step: Trading days between origins.

    Returns:
        The group columns, ``model``, :data:`METRICS` and ``rank`` (1 = lowest scaled CRPS).

    """
    table = score(rows, by).merge(mae_intervals(rows, by, step), on=[*by, "model"], how="left")
    table = table.sort_values([*by, "scaled_crps", "model"], kind="stable").reset_index(drop=True)
    table["rank"] = table.groupby(list(by)).cumcount() + 1
    return table[[*by, "model", *METRICS, "rank"]]
