"""The model in memory: one bundle, the latest feature window per ticker and every forecast path.

This module knows nothing of HTTP. A :class:`Predictor` is a snapshot: built once (bundle loaded,
features read, every horizon of every ticker forecast in one batched ``bundle.predict_paths`` call,
then the bundle's calibration applied with the adaptive conformal miscoverage of
:mod:`tickercast.serve.conformal`) and never changed afterwards, apart from caches of things derived
from it (plots, explanations, encoded responses). Reloading builds a new snapshot and swaps the
reference in :class:`PredictorHolder`; a request that already holds the old snapshot finishes on it.
"""

from __future__ import annotations

import datetime
import functools
import json
import logging
import math
import operator
import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import pandas as pd

from tickercast import schema
from tickercast.features.calendar import add_calendar_columns, trading_days_between, trading_days_ending
from tickercast.manifest import SymbolSpan, find_manifest
from tickercast.model.calibration import DEFAULT_COVERAGE, Calibration, apply_calibration
from tickercast.model.inputs import WARMUP_COLUMNS
from tickercast.serve.conformal import BandStats, ConformalStore

log = logging.getLogger(__name__)

T = TypeVar("T")

PLOT_DAYS = 120
DIFF_DAYS = (1, 3, 5)
# Curated columns without which no forecast can be made (the model derives its inputs from them).
REQUIRED_COLUMNS = (schema.DATE, schema.SYMBOL, schema.TIME_IDX, *WARMUP_COLUMNS, *schema.CALENDAR_COLUMNS)
SERVED_PRICES = ("p10", "p50", "p90")
RAW_PRICES = ("raw_p10", "raw_p50", "raw_p90")


class BundleLike(Protocol):
    """What the service needs from :class:`tickercast.model.bundle.ModelBundle`."""

    metadata: dict[str, Any]
    calibration: Calibration | None

    @property
    def horizon(self) -> int:
        """Trading days ahead the model forecasts."""
        ...

    def predict_paths(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Forecast every horizon for every symbol in ``frame``."""
        ...

    def explain(self, frame: pd.DataFrame) -> dict[str, dict]:
        """Return variable importances and attention per symbol."""
        ...


class UnknownTickerError(LookupError):
    """The ticker is well-formed but has no forecast in this snapshot."""


class HistoryError(ValueError):
    """History sent by a caller cannot be forecast from; the message says why (HTTP 422)."""


class InsufficientHistoryError(HistoryError):
    """Too few rows past the indicator warm-up; carries the counts for the message."""

    def __init__(self, usable: int, needed: int) -> None:
        super().__init__(
            f"history has {usable} rows past the indicator warm-up; "
            f"the model needs its last {needed} rows past it"
        )
        self.usable = usable
        self.needed = needed


class DataError(RuntimeError):
    """The curated dataset cannot be read or does not fit the model; the snapshot is not built."""


@dataclass(frozen=True, slots=True)
class PathPoint:
    """The forecast of one horizon: served prices (calibrated when the bundle has a calibration)."""

    horizon: int
    forecast_for: datetime.date
    p10: float
    p50: float
    p90: float
    raw_p10: float
    raw_p50: float
    raw_p90: float
    calibrated: bool


@dataclass(frozen=True, slots=True)
class Forecast:
    """The forecast for one ticker: the next day's fields, its path over every horizon, and context.

    ``p10``, ``p50``, ``p90`` are the served next-day prices: the calibrated band and the median
    shrunk toward the random walk when ``calibrated``, else the model's (sorted) quantiles, which
    ``raw_p10``... always keep.
    """

    ticker: str
    as_of: datetime.date
    forecast_for: datetime.date
    last_close: float
    p10: float
    p50: float
    p90: float
    change: float
    one_diff: float | None
    three_diff: float | None
    five_diff: float | None
    sentiment: float | None
    raw_p10: float
    raw_p50: float
    raw_p90: float
    calibrated: bool = False
    path: tuple[PathPoint, ...] = ()


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _as_date(value: Any) -> datetime.date:
    if isinstance(value, datetime.datetime):
        return value.date()
    if isinstance(value, datetime.date):
        return value
    return pd.Timestamp(value).date()


def _pct(new: float, old: float | None) -> float | None:
    if old is None or old == 0:
        return None
    return _finite((new / old - 1.0) * 100.0)


def served_paths(
    paths: pd.DataFrame, calibration: Calibration | None, alpha: dict[int, float] | None = None
) -> pd.DataFrame:
    """Turn ``bundle.predict_paths`` rows into the prices the service serves.

    Args:
        paths: One row per symbol and horizon (``last_close``, ``vol``, ``q10/q50/q90``,
            ``p10/p50/p90``).
        calibration: The bundle's calibration, or ``None`` (the model's quantiles are served).
        alpha: Adaptive conformal miscoverage per horizon (replaces the calibration's).

    Returns:
        The rows with ``raw_p10/raw_p50/raw_p90`` (the model's prices, sorted: a quantile model can
        cross them, and sorting never worsens the pinball loss), ``p10/p50/p90`` (served: the
        calibrated median and band where the horizon is calibrated, else the raw prices) and
        ``calibrated``.

    """
    out = paths.copy()
    raw = np.sort(out[["p10", "p50", "p90"]].to_numpy(dtype=float), axis=1)
    out["raw_p10"], out["raw_p50"], out["raw_p90"] = raw[:, 0], raw[:, 1], raw[:, 2]
    out["calibrated"] = False
    if calibration is None or not calibration.horizons or out.empty:
        out["p10"], out["p50"], out["p90"] = raw[:, 0], raw[:, 1], raw[:, 2]
        return out
    calibrated = apply_calibration(out, calibration, alpha=alpha)
    done = out["horizon"].isin(list(calibration.horizons)).to_numpy()
    last_close = out["last_close"].to_numpy(dtype=float)
    for i, name in enumerate(("p10", "p50", "p90")):
        price = last_close * np.exp(calibrated[f"c_q{name[1:]}"].to_numpy(dtype=float))
        out[name] = np.where(done, price, raw[:, i])
    out["calibrated"] = done
    return out


def make_path(rows: pd.DataFrame) -> tuple[PathPoint, ...]:
    """Turn one ticker's :func:`served_paths` rows into its path, horizon 1 first.

    Raises:
        HistoryError: The model returned a non-finite price.

    """
    points = []
    for row in rows.sort_values("horizon").itertuples(index=False):
        values = [_finite(getattr(row, name)) for name in (*SERVED_PRICES, *RAW_PRICES)]
        if any(value is None for value in values):
            raise HistoryError(f"the model returned no finite forecast for {row.symbol} at h={row.horizon}")
        p10, p50, p90, raw_p10, raw_p50, raw_p90 = (float(v) for v in values)  # type: ignore[arg-type]
        points.append(
            PathPoint(
                horizon=int(row.horizon),
                forecast_for=_as_date(row.forecast_for),
                p10=p10,
                p50=p50,
                p90=p90,
                raw_p10=raw_p10,
                raw_p50=raw_p50,
                raw_p90=raw_p90,
                calibrated=bool(row.calibrated),
            )
        )
    return tuple(points)


def make_forecast(row: pd.Series, history: pd.DataFrame, path: tuple[PathPoint, ...] = ()) -> Forecast:
    """Combine the next-day row of :func:`served_paths` with the ticker's recent history.

    Args:
        row: The horizon-1 row (symbol, as_of, forecast_for, last_close, p10-p90 and, when served
            from :func:`served_paths`, raw_p10-raw_p90 and calibrated).
        history: The ticker's curated rows, sorted by date (at least the last row).
        path: The ticker's forecast for every horizon (:func:`make_path`).

    Returns:
        The forecast with the percentage change against the last close, the 1/3/5-day diffs and
        the latest sentiment; quantiles sorted if the model's crossed.

    Raises:
        HistoryError: The model returned a non-finite price.

    """
    raw_names = RAW_PRICES if all(name in row for name in RAW_PRICES) else SERVED_PRICES
    prices = {name: _finite(row[name]) for name in ("last_close", *SERVED_PRICES, *raw_names)}
    if any(value is None for value in prices.values()):
        raise HistoryError(f"the model returned no finite forecast for {row[schema.SYMBOL]}")
    # A quantile model can output crossing quantiles (P10 above P50); sorting them (quantile
    # rearrangement) never makes the pinball loss worse and gives a valid P10 <= P50 <= P90.
    p10, p50, p90 = sorted(float(prices[name]) for name in SERVED_PRICES)  # type: ignore[arg-type]
    raw = sorted(float(prices[name]) for name in raw_names)  # type: ignore[arg-type]
    closes = history[schema.CLOSE].to_numpy(dtype=float)
    last_close = float(prices["last_close"])  # type: ignore[arg-type]
    diffs = {
        days: _pct(float(closes[-1]), _finite(closes[-1 - days])) if len(closes) > days else None
        for days in DIFF_DAYS
    }
    sentiment = _finite(history[schema.SENTIMENT].iloc[-1]) if schema.SENTIMENT in history else None
    return Forecast(
        ticker=str(row[schema.SYMBOL]),
        as_of=_as_date(row["as_of"]),
        forecast_for=_as_date(row["forecast_for"]),
        last_close=last_close,
        p10=p10,
        p50=p50,
        p90=p90,
        change=_pct(p50, last_close) or 0.0,
        one_diff=diffs[1],
        three_diff=diffs[3],
        five_diff=diffs[5],
        sentiment=sentiment,
        raw_p10=raw[0],
        raw_p50=raw[1],
        raw_p90=raw[2],
        calibrated=bool(row.get("calibrated", False)),
        path=path,
    )


def needed_columns(available: Sequence[str]) -> list[str]:
    """Return the curated columns to read: the base curated columns and every market-index column.

    The model's inputs (``bundle.metadata["features"]``) are derived from these by
    :func:`tickercast.model.inputs.model_frame`, so the raw curated columns are what must be read.

    Args:
        available: Columns present in the curated dataset.

    Returns:
        The columns to read, in dataset order.

    Raises:
        DataError: A column every forecast needs is missing from the dataset.

    """
    missing = [column for column in REQUIRED_COLUMNS if column not in available]
    if missing:
        raise DataError(
            f"the curated dataset lacks columns {', '.join(missing)}; rerun `tickercast preprocess`"
        )
    wanted = set(schema.BASE_CURATED_COLUMNS)
    return [name for name in available if name in wanted or schema.is_market_column(name)]


def read_latest_window(
    features_dir: Path, rows: int, spans: Mapping[str, SymbolSpan] | None = None
) -> tuple[pd.DataFrame, pd.Series]:
    """Read the last ``rows`` curated rows of every symbol, only the columns the service needs.

    With the manifest's per-symbol spans, each symbol is read from a few trading days before its
    own window (:func:`window_filter`), so a start reads about ``rows`` rows per symbol whatever the
    history length, and a ticker whose data ended years ago does not drag every other ticker's
    read back with it. Without spans (no manifest), every row's key columns are read first.

    Args:
        features_dir: The curated Parquet dataset (``DIR/curated/features``), partitioned or not.
        rows: Rows to keep per symbol.
        spans: ``manifest.symbols``: each symbol's last date and row count.

    Returns:
        The rows sorted by symbol then date (``symbol`` as plain strings), and the trading calendar
        of the rows read: ``time_idx`` indexed by date.

    Raises:
        DataError: The dataset is missing, empty or lacks a needed column.

    """
    import pyarrow.dataset as ds

    if not features_dir.is_dir():
        raise DataError(f"no curated features at {features_dir}; run `tickercast preprocess` first")
    try:
        dataset = ds.dataset(features_dir, format="parquet", partitioning="hive")
        columns = needed_columns(dataset.schema.names)
        if spans:
            frame = dataset.to_table(columns=columns, filter=window_filter(spans, rows)).to_pandas()
            frame[schema.SYMBOL] = frame[schema.SYMBOL].astype(str)
            # A symbol with gaps longer than the slack comes back short: read it whole.
            counts = frame[schema.SYMBOL].value_counts()
            short = [s for s, span in spans.items() if counts.get(s, 0) < min(rows, span.rows)]
            if short:
                rest = dataset.to_table(columns=columns, filter=ds.field(schema.SYMBOL).isin(short))
                frame = pd.concat(
                    [frame[~frame[schema.SYMBOL].isin(short)], rest.to_pandas()], ignore_index=True
                )
        else:
            frame = _read_from_keys(dataset, columns, rows)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"cannot read curated features at {features_dir}: {exc}") from exc
    if frame.empty:
        raise DataError(f"the curated dataset at {features_dir} has no rows")
    frame[schema.SYMBOL] = frame[schema.SYMBOL].astype(str)
    frame = frame.sort_values([schema.SYMBOL, schema.DATE], kind="stable")
    window = frame.groupby(schema.SYMBOL, sort=False).tail(rows).reset_index(drop=True)
    calendar = frame.drop_duplicates(schema.DATE).set_index(schema.DATE)[schema.TIME_IDX].sort_index()
    return window, calendar


# Trading days read beyond each symbol's window: room for a few missing days without a second read.
WINDOW_SLACK = 10


def window_filter(spans: Mapping[str, SymbolSpan], rows: int) -> Any:
    """Build the Parquet filter of each symbol's last ``rows`` trading days (plus :data:`WINDOW_SLACK`).

    Symbols are grouped by their last date (most share the dataset's), one clause per group.

    Returns:
        A ``pyarrow.dataset`` expression.

    """
    import pyarrow.dataset as ds

    by_last: dict[str, list[str]] = {}
    for symbol, span in spans.items():
        by_last.setdefault(span.last_date, []).append(symbol)
    clauses = []
    for last, symbols in sorted(by_last.items()):
        days = trading_days_ending(datetime.date.fromisoformat(last[:10]), rows + WINDOW_SLACK)
        start = pd.Timestamp(days[0]).date()
        clauses.append(ds.field(schema.SYMBOL).isin(sorted(symbols)) & (ds.field(schema.DATE) >= start))
    return functools.reduce(operator.or_, clauses)


def _read_from_keys(dataset: Any, columns: list[str], rows: int) -> pd.DataFrame:
    """Read every row's key columns, then the wide rows from the earliest symbol window start on."""
    import pyarrow.dataset as ds

    keys = dataset.to_table(columns=[schema.SYMBOL, schema.DATE]).to_pandas()
    if keys.empty:
        return keys
    ranked = keys.sort_values(schema.DATE).groupby(keys[schema.SYMBOL].astype(str))[schema.DATE]
    start = min(dates.iloc[max(len(dates) - rows, 0)] for _, dates in ranked)
    return dataset.to_table(columns=columns, filter=ds.field(schema.DATE) >= start).to_pandas()


def read_data_version(manifest_path: Path) -> str | None:
    """Return the curated dataset's ``data_version`` from its manifest, or ``None`` when absent."""
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        return None
    value = manifest.get("data_version") if isinstance(manifest, dict) else None
    return str(value) if value is not None else None


def usable_tail(rows: pd.DataFrame, count: int) -> pd.DataFrame | None:
    """Return a symbol's last ``count`` rows when all are past the indicator warm-up, else ``None``."""
    tail = rows.tail(count)
    if len(tail) < count or tail[list(WARMUP_COLUMNS)].isna().any().any():
        return None
    return tail


class Predictor:
    """A loaded model with the forecasts it made for the latest curated data.

    Build one with :meth:`build`; it is read-only afterwards, so requests may share it freely.
    """

    def __init__(
        self,
        bundle: BundleLike,
        *,
        model_version: str | None,
        source: str,
        data_version: str | None,
        window: pd.DataFrame,
        calendar: pd.Series,
        forecasts: dict[str, Forecast],
        alphas: dict[int, float] | None = None,
        bands: Sequence[BandStats] = (),
    ) -> None:
        self.bundle = bundle
        self.model_version = model_version
        self.source = source
        self.data_version = data_version
        self.forecasts = forecasts
        self.tickers = tuple(sorted(forecasts))
        self.horizon = int(bundle.horizon)
        self.calibration = bundle.calibration
        # Nominal coverage of the served band: the calibration's, else the P10-P90 quantiles' 80%.
        self.band_level = self.calibration.coverage if self.calibration is not None else DEFAULT_COVERAGE
        # ACI miscoverage of the horizons that have taken a step (the others serve the calibration's qhat).
        self.alphas = dict(alphas or {})
        self.bands = tuple(bands)
        self.min_history_rows = int(bundle.metadata.get("min_history_rows") or 1)
        self.loaded_at = datetime.datetime.now(datetime.UTC)
        self.latest_date = max(forecast.as_of for forecast in forecasts.values())
        self.dtypes = {str(column): dtype for column, dtype in window.dtypes.items()}
        self._history = {str(symbol): rows for symbol, rows in window.groupby(schema.SYMBOL, sort=False)}
        market_columns = [column for column in window.columns if schema.is_market_column(column)]
        market = window[[schema.DATE, *market_columns]].drop_duplicates(schema.DATE)
        self._market = market.set_index(schema.DATE).sort_index()
        self._calendar = calendar
        self._bundle_lock = threading.Lock()
        self._memo: dict[Hashable, Any] = {}
        self._memo_lock = threading.Lock()

    @classmethod
    def build(
        cls,
        bundle: BundleLike,
        *,
        features_dir: Path,
        manifest_path: Path,
        model_version: str | None,
        source: str,
        conformal: ConformalStore | None = None,
    ) -> Predictor:
        """Read the latest feature window of every ticker and forecast every horizon in one batched call.

        Served forecasts of earlier snapshots whose day now has a close in the data are settled
        first (adaptive conformal inference); its miscoverage then sets the calibrated bands, and
        this snapshot's path forecasts are kept in ``conformal`` until they settle in turn.

        Args:
            bundle: A loaded (hash-verified) model bundle.
            features_dir: The curated Parquet dataset.
            manifest_path: The curated dataset's manifest (for its ``data_version``).
            model_version: The registry version, if the bundle came from the registry.
            source: Where the bundle came from (model URI or folder), for ``/model``.
            conformal: The adaptive conformal state (saved here); ``None``: a fresh one in memory.

        Returns:
            The ready snapshot.

        Raises:
            DataError: The data cannot be read or no ticker has enough history.

        """
        min_rows = int(bundle.metadata.get("min_history_rows") or 1)
        manifest = find_manifest(manifest_path)
        window, calendar = read_latest_window(
            features_dir,
            max(min_rows, PLOT_DAYS, max(DIFF_DAYS) + 1),
            manifest.symbols if manifest is not None else None,
        )
        inputs, short = [], []
        for symbol, rows in window.groupby(schema.SYMBOL, sort=False):
            tail = usable_tail(rows, min_rows)
            if tail is None:
                short.append(str(symbol))
            else:
                inputs.append(tail)
        if short:
            log.warning(
                "not serving %s: fewer than %d curated rows past the warm-up", ", ".join(short), min_rows
            )
        if not inputs:
            raise DataError(
                f"no ticker has the {min_rows} curated rows past the indicator warm-up the model needs"
            )
        usable = window[~window[schema.SYMBOL].isin(short)]
        paths = bundle.predict_paths(pd.concat(inputs, ignore_index=True))
        conformal = conformal or ConformalStore(None)
        key = model_key(model_version, bundle.metadata)
        horizons = range(1, int(bundle.horizon) + 1)
        try:
            conformal.settle(window)
            alphas = conformal.alpha_map(key, horizons)
            served = served_paths(paths, bundle.calibration, alphas)
            forecasts = _forecasts(served, usable)
            if not forecasts:
                raise DataError("the model produced no usable forecast for any ticker")
            conformal.record(key, _pending(served[served[schema.SYMBOL].isin(list(forecasts))]))
            bands = conformal.stats(key, horizons)
        finally:
            # Settled outcomes are kept even when this snapshot fails: they happened either way.
            conformal.save()
        return cls(
            bundle,
            model_version=model_version,
            source=source,
            data_version=read_data_version(manifest_path) or bundle.metadata.get("data_version"),
            window=usable,
            calendar=calendar,
            forecasts=forecasts,
            alphas=alphas,
            bands=bands,
        )

    # --- lookups ----------------------------------------------------------------------------------

    @property
    def metadata(self) -> dict[str, Any]:
        """The bundle's metadata (run id, trained at, test metrics, ...)."""
        return self.bundle.metadata

    def forecast(self, ticker: str) -> Forecast:
        """Return the precomputed forecast of ``ticker`` (already upper-cased).

        Raises:
            UnknownTickerError: No forecast for this ticker.

        """
        try:
            return self.forecasts[ticker]
        except KeyError:
            raise UnknownTickerError(ticker) from None

    def history(self, ticker: str) -> pd.DataFrame:
        """Return the curated rows kept for ``ticker`` (up to ~120 trading days), sorted by date."""
        self.forecast(ticker)
        return self._history[ticker]

    def memo(self, key: Hashable, compute: Callable[[], T]) -> T:
        """Return a value derived from this snapshot, computing it once.

        Cached values live as long as the snapshot, so a key is implicitly scoped to this model
        and data version.
        """
        try:
            return self._memo[key]
        except KeyError:
            pass
        with self._memo_lock:
            if key not in self._memo:
                self._memo[key] = compute()
            return self._memo[key]

    # --- model calls (blocking: run them in a worker thread) --------------------------------------

    def explain(self, ticker: str) -> dict[str, Any]:
        """Return the model's variable importances and attention behind ``ticker``'s forecast.

        All tickers are explained in one call the first time any is asked for.

        Raises:
            UnknownTickerError: No forecast for this ticker.

        """
        self.forecast(ticker)

        def explain_all() -> dict[str, dict]:
            frame = pd.concat([rows.tail(self.min_history_rows) for rows in self._history.values()])
            with self._bundle_lock:
                return {str(key): value for key, value in self.bundle.explain(frame).items()}

        explanations = self.memo("explain", explain_all)
        if ticker not in explanations:
            raise UnknownTickerError(ticker)
        return explanations[ticker]

    def forecast_history(self, ticker: str, frame: pd.DataFrame) -> Forecast:
        """Forecast every horizon from history sent by a caller (curated columns).

        Args:
            ticker: The upper-cased ticker the rows belong to.
            frame: Curated rows with ``date`` and the base curated columns; market-index columns
                may be missing (taken from the served data by date), calendar columns too (derived
                from the date). ``time_idx`` is re-derived on the served trading calendar.

        Returns:
            The forecast, computed now, calibrated as the served ones are (same ACI miscoverage).

        Raises:
            HistoryError: Columns missing or too few rows past the indicator warm-up.

        """
        frame = self._complete(ticker, frame)
        tail = usable_tail(frame, self.min_history_rows)
        if tail is None:
            usable = int(frame[list(WARMUP_COLUMNS)].notna().all(axis=1).sum())
            raise InsufficientHistoryError(usable, self.min_history_rows)
        with self._bundle_lock:
            try:
                paths = self.bundle.predict_paths(tail)
            except ValueError as exc:
                raise HistoryError(f"the model cannot forecast from this history: {exc}") from exc
        if paths.empty:
            raise HistoryError("the model returned no forecast for this history")
        served = served_paths(paths, self.calibration, self.alphas)
        first = served[served["horizon"] == 1]
        if first.empty:
            raise HistoryError("the model returned no next-day forecast for this history")
        return make_forecast(first.iloc[0], frame, make_path(served))

    def _complete(self, ticker: str, frame: pd.DataFrame) -> pd.DataFrame:
        """Add what history sent by a caller may lack, from the date and the served data.

        Calendar columns come from the exchange calendar; market-index columns from the served
        data by date; sentiment columns from the served ticker's rows by date (prices carry no
        news), 0 and unobserved where the service knows none. ``time_idx`` is always re-derived.
        """
        frame = frame.copy()
        frame[schema.SYMBOL] = ticker
        frame[schema.DATE] = [_as_date(value) for value in frame[schema.DATE]]
        frame = (
            frame.sort_values(schema.DATE).drop_duplicates(schema.DATE, keep="last").reset_index(drop=True)
        )
        calendar_columns = add_calendar_columns(frame[[schema.DATE]])
        for column in schema.CALENDAR_COLUMNS:
            if column not in frame.columns:
                frame[column] = calendar_columns[column].to_numpy()
        missing_market = [column for column in self._market.columns if column not in frame.columns]
        if missing_market:
            # Same values on a date for every ticker; dates the service has no data for stay null,
            # which the model reads as "market data missing".
            frame[missing_market] = self._market[missing_market].reindex(frame[schema.DATE]).to_numpy()
        missing_sentiment = [c for c in schema.SENTIMENT_COLUMNS_CURATED if c not in frame.columns]
        if missing_sentiment:
            served = self._history.get(ticker)
            known = (
                served.set_index(schema.DATE)[missing_sentiment].reindex(frame[schema.DATE])
                if served is not None and set(missing_sentiment) <= set(served.columns)
                else pd.DataFrame(index=frame[schema.DATE], columns=missing_sentiment, dtype="float64")
            )
            for column in missing_sentiment:
                values = known[column].fillna(0).to_numpy()
                frame[column] = values.astype("float64" if column == schema.SENTIMENT else "int64")
        frame[schema.TIME_IDX] = self._time_idx(frame[schema.DATE])
        missing = [column for column in REQUIRED_COLUMNS if column not in frame.columns]
        if missing:
            raise HistoryError(f"history lacks the curated columns {', '.join(missing)}")
        return frame

    def _time_idx(self, dates: pd.Series) -> np.ndarray:
        """Place dates on the served trading calendar, so ``time_idx`` means what it meant in training."""
        known = dates.map(self._calendar)
        positions = np.arange(len(dates))
        if known.notna().any():
            anchor = int(np.flatnonzero(known.notna().to_numpy())[-1])
            return (int(known.iloc[anchor]) + positions - anchor).astype("int64")
        # None of the dates is served: count exchange trading days from the last served date.
        last_date = self._calendar.index[-1]
        offsets = trading_days_between(
            np.asarray(last_date, dtype="datetime64[D]"),
            pd.to_datetime(dates).to_numpy().astype("datetime64[D]"),
        )
        return (int(self._calendar.iloc[-1]) + offsets).astype("int64")


def model_key(model_version: str | None, metadata: dict[str, Any]) -> str:
    """Name the model whose conformal state a snapshot uses: its registry version, else its run."""
    if model_version is not None:
        return f"version-{model_version}"
    return f"run-{metadata.get('run_id') or 'unknown'}"


def _forecasts(served: pd.DataFrame, histories: pd.DataFrame) -> dict[str, Forecast]:
    """Build each ticker's forecast from its :func:`served_paths` rows (tickers that fail are logged)."""
    by_symbol = {str(symbol): rows for symbol, rows in histories.groupby(schema.SYMBOL, sort=False)}
    forecasts: dict[str, Forecast] = {}
    for symbol, rows in served.groupby(schema.SYMBOL, sort=False):
        ticker = str(symbol)
        first = rows[rows["horizon"] == 1]
        try:
            if first.empty:
                raise HistoryError("no next-day forecast")
            forecasts[ticker] = make_forecast(first.iloc[0], by_symbol[ticker], make_path(rows))
        except HistoryError as exc:
            log.warning("not serving %s: %s", ticker, exc)
    return forecasts


def _pending(served: pd.DataFrame) -> pd.DataFrame:
    """Return the served path rows in the shape :meth:`ConformalStore.record` keeps."""
    return pd.DataFrame(
        {
            "symbol": served[schema.SYMBOL].astype(str).to_numpy(),
            "origin": [_as_date(d) for d in served["as_of"]],
            "horizon": served["horizon"].astype(int).to_numpy(),
            "forecast_for": [_as_date(d) for d in served["forecast_for"]],
            "last_close": served["last_close"].to_numpy(dtype=float),
            "p50": served["p50"].to_numpy(dtype=float),
            "lower": served["p10"].to_numpy(dtype=float),
            "upper": served["p90"].to_numpy(dtype=float),
        }
    )


class PredictorHolder:
    """The one mutable thing: which snapshot is serving now, and why none is, if none is."""

    def __init__(self) -> None:
        self.current: Predictor | None = None
        self.error: str | None = None
        self.reloads = 0

    def swap(self, predictor: Predictor) -> Predictor | None:
        """Make ``predictor`` the serving snapshot; a single reference assignment, hence atomic."""
        previous, self.current = self.current, predictor
        self.error = None
        self.reloads += 1
        return previous
