"""Turning history rows sent by a caller into curated feature rows the model can read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from tickercast import schema
from tickercast.serve.predictor import HistoryError

RAW_MARKERS = ("Date", "Close")


def history_kind(rows: Sequence[Mapping[str, Any]]) -> Literal["raw", "curated"]:
    """Tell raw OHLCV rows (``Date, Open, High, Low, Close, Volume``) from curated ones (``date, close``).

    Raises:
        HistoryError: The rows are neither, or mix both.

    """
    keys = set().union(*(row.keys() for row in rows))
    raw = all(marker in keys for marker in RAW_MARKERS)
    curated = schema.DATE in keys and schema.CLOSE in keys
    if raw and not curated:
        return "raw"
    if curated and not raw:
        return "curated"
    if raw and curated:
        raise HistoryError("history mixes raw (Date, Close) and curated (date, close) columns; send one kind")
    raise HistoryError(
        "history rows need either raw columns Date, Open, High, Low, Close, Volume "
        "or curated columns (date, close and the model's features)"
    )


def raw_to_curated(rows: Sequence[Mapping[str, Any]], ticker: str, keep: int | None = None) -> pd.DataFrame:
    """Compute curated features from raw OHLCV rows with :func:`tickercast.features.curate.curate`.

    Prices carry no news, so the rows have no sentiment columns: like the market-index columns,
    :meth:`tickercast.serve.predictor.Predictor.forecast_history` takes them from the served data
    by date (the served ticker's own sentiment; none known is 0 and unobserved).

    Args:
        rows: Raw rows (``Date, Open, High, Low, Close, Volume``); a ``Symbol`` key is ignored.
        ticker: The upper-cased ticker the rows belong to.
        keep: Compute features from only the latest ``keep`` rows. Every feature of a row depends on
            at most ``schema.MAX_LOOKBACK_ROWS`` rows before it, so keeping the rows the model reads
            plus that look-back gives exactly the same features, at a bounded cost.

    Returns:
        Curated rows for ``ticker``: the price-derived columns and the calendar columns.

    Raises:
        HistoryError: A column is missing, a date repeats, or a value is unreadable or impossible.

    """
    from tickercast.features.curate import curate, parse_dates

    missing = [
        column
        for column in schema.PRICE_REQUIRED
        if column != "Symbol" and any(column not in r for r in rows)
    ]
    if missing:
        raise HistoryError(f"raw history rows lack {', '.join(missing)}")
    prices = pd.DataFrame(
        [{column: row[column] for column in schema.PRICE_REQUIRED if column in row} for row in rows]
    )
    prices["Symbol"] = ticker
    dates = prices["Date"].astype(str).str.slice(0, 10)
    if dates.duplicated().any():
        raise HistoryError(f"raw history has more than one row for Date {dates[dates.duplicated()].iloc[0]}")
    if keep is not None and len(prices) > keep:
        parsed = parse_dates(prices["Date"])
        if parsed.notna().all():  # otherwise the feature code names the bad row
            prices = prices.iloc[np.argsort(parsed.to_numpy(), kind="stable")[-keep:]]
    try:
        features = curate(prices)
    except ValueError as exc:
        raise HistoryError(f"raw history: {exc}") from None
    features = features.drop(columns=list(schema.SENTIMENT_COLUMNS_CURATED))
    return features[features[schema.SYMBOL].astype(str) == ticker]


def curated_rows(rows: Sequence[Mapping[str, Any]], dtypes: Mapping[str, Any]) -> pd.DataFrame:
    """Build a curated frame from rows, with the served dataset's column types.

    Args:
        rows: Curated rows (``date``, ``close``, indicators...).
        dtypes: Column types of the served curated data; unknown columns are dropped.

    Returns:
        The frame, ``date`` as :class:`datetime.date`.

    Raises:
        HistoryError: A value cannot be read as its column's type.

    """
    frame = pd.DataFrame(list(rows))
    frame = frame[[column for column in frame.columns if column in dtypes and column != schema.SYMBOL]]
    try:
        frame[schema.DATE] = pd.to_datetime(frame[schema.DATE], format="ISO8601").dt.date
        for column in frame.columns:
            if column != schema.DATE:
                frame[column] = pd.to_numeric(frame[column], errors="raise").astype(dtypes[column])
    except (ValueError, TypeError) as exc:
        raise HistoryError(f"history has a value of the wrong type: {exc}") from None
    if frame[schema.DATE].duplicated().any():
        raise HistoryError("history has more than one row for the same date")
    return frame
