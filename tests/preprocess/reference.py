"""An independent, deliberately plain reference of the curated features (loops, no shared code).

It reads the formulas from the issue, not from tickercast.preprocess: per symbol in date order,
explicit windows, the VADER analyzer called directly. Slow, and only meant for test-sized data.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

NY = ZoneInfo("America/New_York")
HALF_LIFE = 5.0  # documented in docs/preprocessing.md
MAX_CARRY_ROWS = 60
FFILL = 3


def _date(text: str) -> dt.date:
    return dt.date.fromisoformat(str(text).strip()[:10])


def _short(symbol: str) -> str:
    return re.sub(r"[^a-z0-9]", "", symbol.lower())


def _window(values: list[float | None], end: int, n: int) -> list[float] | None:
    if end + 1 < n:
        return None
    window = values[end - n + 1 : end + 1]
    if any(v is None for v in window):
        return None
    return window  # type: ignore[return-value]


def reference_features(
    prices: pd.DataFrame, indices: pd.DataFrame | None = None, news: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Return the curated rows for raw frames that hold only valid rows (later rows win)."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    latest: dict[tuple[str, dt.date], tuple[float, ...]] = {}
    for row in prices.itertuples(index=False):
        latest[(row.Symbol, _date(row.Date))] = tuple(
            float(getattr(row, c)) for c in ("Open", "High", "Low", "Close", "Volume")
        )
    calendar = sorted({d for _, d in latest})
    position = {d: i for i, d in enumerate(calendar)}
    by_symbol: dict[str, list[dt.date]] = {}
    for symbol, date in sorted(latest):
        by_symbol.setdefault(symbol, []).append(date)

    # Sentiment observations: each headline counts for its symbol's first trading row on or after
    # its New York date, the next day when published after 16:00.
    observed: dict[tuple[str, dt.date], list[float]] = {}
    if news is not None:
        analyzer = SentimentIntensityAnalyzer()
        for row in news.itertuples(index=False):
            local = dt.datetime.fromisoformat(str(row.published_at)).astimezone(NY)
            day = local.date()
            if local.time() > dt.time(16, 0):
                day += dt.timedelta(days=1)
            dates = by_symbol.get(row.Symbol, [])
            target = next((d for d in dates if d >= day), None)
            if target is not None:
                score = analyzer.polarity_scores(str(row.headline))["compound"]
                observed.setdefault((row.Symbol, target), []).append(score)

    market: dict[str, list[float | None]] = {}
    if indices is not None:
        raw: dict[str, dict[dt.date, float]] = {}
        for row in indices.itertuples(index=False):
            raw.setdefault(row.Symbol, {})[_date(row.Date)] = float(row.Close)
        for symbol, values in raw.items():
            aligned: list[float | None] = []
            last_value, last_pos = None, None
            for i, date in enumerate(calendar):
                if date in values:
                    last_value, last_pos = values[date], i
                aligned.append(last_value if last_pos is not None and i - last_pos <= FFILL else None)
            market[symbol] = aligned

    out = []
    for symbol, dates in sorted(by_symbol.items()):
        closes = [latest[(symbol, d)][3] for d in dates]
        rets: list[float | None] = [None] + [
            math.log(closes[i] / closes[i - 1]) for i in range(1, len(closes))
        ]
        deltas: list[float | None] = [None] + [closes[i] - closes[i - 1] for i in range(1, len(closes))]
        last_obs: tuple[int, int, float] | None = None  # (row, time_idx, value)
        for i, date in enumerate(dates):
            o, h, lo, c, v = latest[(symbol, date)]
            t = position[date]
            row = {
                "date": date,
                "symbol": symbol,
                "open": o,
                "high": h,
                "low": lo,
                "close": c,
                "volume": v,
                "time_idx": t,
                "log_return": rets[i],
            }
            for n in (20, 50, 200):
                w = _window(closes, i, n)
                row[f"ma_{n}"] = math.fsum(w) / n if w else None
            for n in (20, 50):
                w = _window(rets, i, n)
                row[f"rv_{n}"] = float(np.std(np.array(w), ddof=1)) * math.sqrt(252) if w else None
            w = _window(deltas, i, 14)
            if w is None:
                row["rsi_14"] = None
            else:
                gain = math.fsum(max(d, 0.0) for d in w) / 14
                loss = math.fsum(max(-d, 0.0) for d in w) / 14
                if loss == 0:
                    row["rsi_14"] = 100.0 if gain > 0 else 50.0
                else:
                    row["rsi_14"] = 100 - 100 / (1 + gain / loss)
            row["day_of_week"] = date.weekday()
            row["day_of_month"] = date.day
            row["month"] = date.month
            scores = observed.get((symbol, date))
            if scores:
                value = math.fsum(scores) / len(scores)
                last_obs = (i, t, value)
                row.update(sentiment=value, news_count=len(scores), sentiment_observed=1)
            else:
                value = 0.0
                if last_obs is not None and i - last_obs[0] <= MAX_CARRY_ROWS:
                    value = last_obs[2] * 0.5 ** ((t - last_obs[1]) / HALF_LIFE)
                row.update(sentiment=value, news_count=0, sentiment_observed=0)
            for index_symbol, aligned in market.items():
                name = _short(index_symbol)
                value_now = aligned[t]
                value_prev = aligned[t - 1] if t > 0 else None
                row[f"mkt_{name}_close"] = value_now
                row[f"mkt_{name}_ret"] = (
                    math.log(value_now / value_prev)
                    if value_now is not None and value_prev is not None
                    else None
                )
            out.append(row)
    return pd.DataFrame(out)


def assert_features_close(actual: pd.DataFrame, expected: pd.DataFrame, rtol: float = 1e-9) -> None:
    """Same rows, same columns; numbers equal to ``rtol`` relative; nulls in the same places."""
    actual = actual.sort_values(["symbol", "date"]).reset_index(drop=True)
    expected = expected.sort_values(["symbol", "date"]).reset_index(drop=True)
    assert list(actual.columns) == list(expected.columns)
    assert len(actual) == len(expected)
    assert [str(d) for d in actual["date"]] == [str(d) for d in expected["date"]]
    assert actual["symbol"].tolist() == expected["symbol"].tolist()
    for column in actual.columns:
        if column in ("date", "symbol"):
            continue
        a = actual[column].to_numpy(dtype=float, na_value=np.nan)
        b = pd.to_numeric(expected[column]).to_numpy(dtype=float, na_value=np.nan)
        assert np.array_equal(np.isnan(a), np.isnan(b)), f"{column}: nulls differ"
        both = ~np.isnan(a)
        diff = np.abs(a[both] - b[both])
        allowed = rtol * np.maximum(np.abs(a[both]), np.abs(b[both])) + 1e-15
        worst = int(np.argmax(diff - allowed)) if both.any() else 0
        assert (diff <= allowed).all(), f"{column}: {a[both][worst]!r} != {b[both][worst]!r}"
