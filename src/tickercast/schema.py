"""The column contract that every stage shares.

Raw CSVs (written by ``tickercast data``) -> curated Parquet (written by ``tickercast preprocess``)
-> model features (read by ``tickercast train`` and ``tickercast serve``). Every stage imports its
column names from here so that a rename happens in exactly one place. ``docs/data-contract.md``
describes the same contract for people.
"""

from __future__ import annotations

import re
from pathlib import Path

SCHEMA_VERSION = 1

# --- Raw layout under the data root -------------------------------------------------------------

RAW_DIR = "raw"
RAW_PRICES = "prices"
RAW_INDICES = "indices"
RAW_NEWS = "news"
RAW_SENTIMENT = "sentiment"
RAW_KINDS = (RAW_PRICES, RAW_INDICES, RAW_NEWS, RAW_SENTIMENT)

# Raw price and index CSVs: `Date,Symbol,Open,High,Low,Close,Volume[,Adj Close,Dividends,Stock Splits]`.
PRICE_COLUMNS = ("Date", "Symbol", "Open", "High", "Low", "Close", "Volume")
PRICE_REQUIRED = PRICE_COLUMNS
PRICE_OPTIONAL = ("Adj Close", "Dividends", "Stock Splits")
# An index file may carry only a close.
INDEX_REQUIRED = ("Date", "Symbol", "Close")
INDEX_OPTIONAL = ("Open", "High", "Low", "Volume", *PRICE_OPTIONAL)
# Raw news: one headline per row; `published_at` is an ISO timestamp with offset.
NEWS_COLUMNS = ("published_at", "Symbol", "headline")
# Raw sentiment (the original project's format): a score in [-1, 1] per (Date, Symbol).
SENTIMENT_COLUMNS = ("Date", "Symbol", "sentiment")

REQUIRED_COLUMNS = {
    RAW_PRICES: PRICE_REQUIRED,
    RAW_INDICES: INDEX_REQUIRED,
    RAW_NEWS: NEWS_COLUMNS,
    RAW_SENTIMENT: SENTIMENT_COLUMNS,
}

# Raw tickers are upper case; the API accepts either case and upper-cases before lookup.
SYMBOL_PATTERN = r"^[A-Z0-9.^=-]{1,15}$"
SYMBOL_RE = re.compile(SYMBOL_PATTERN)
API_TICKER_PATTERN = r"^[A-Za-z0-9.^=-]{1,15}$"

# News published after this local time (or on a non-trading day) counts for the next trading date.
MARKET_TIMEZONE = "America/New_York"
MARKET_CLOSE_HOUR = 16

# --- Curated layout -------------------------------------------------------------------------------

CURATED_DIR = "curated"
FEATURES_DIR = "features"
MANIFEST_FILE = "manifest.json"
QUARANTINE_DIR = "quarantine"

# Curated columns (lower case, one row per symbol and trading date).
DATE = "date"
SYMBOL = "symbol"
OPEN, HIGH, LOW, CLOSE, VOLUME = "open", "high", "low", "close", "volume"
TIME_IDX = "time_idx"
LOG_RETURN = "log_return"
MA_WINDOWS = (20, 50, 200)
RV_WINDOWS = (20, 50)
RSI_WINDOW = 14
MOVING_AVERAGES = tuple(f"ma_{n}" for n in MA_WINDOWS)
REALISED_VOLS = tuple(f"rv_{n}" for n in RV_WINDOWS)
RSI = f"rsi_{RSI_WINDOW}"
DAY_OF_WEEK, DAY_OF_MONTH, MONTH = "day_of_week", "day_of_month", "month"
CALENDAR_COLUMNS = (DAY_OF_WEEK, DAY_OF_MONTH, MONTH)
SENTIMENT = "sentiment"
NEWS_COUNT = "news_count"
SENTIMENT_OBSERVED = "sentiment_observed"
SENTIMENT_COLUMNS_CURATED = (SENTIMENT, NEWS_COUNT, SENTIMENT_OBSERVED)

# The longest indicator window: the number of past rows an incremental run must re-read.
MAX_LOOKBACK_ROWS = max(MA_WINDOWS)

BASE_CURATED_COLUMNS = (
    DATE,
    SYMBOL,
    OPEN,
    HIGH,
    LOW,
    CLOSE,
    VOLUME,
    TIME_IDX,
    LOG_RETURN,
    *MOVING_AVERAGES,
    *REALISED_VOLS,
    RSI,
    *CALENDAR_COLUMNS,
    *SENTIMENT_COLUMNS_CURATED,
)

MARKET_PREFIX = "mkt_"


def index_feature_name(index_symbol: str) -> str:
    """Return the short name of a market index used in curated column names.

    Args:
        index_symbol: The raw index symbol, e.g. ``^GSPC``.

    Returns:
        The symbol lower-cased with every non-alphanumeric character removed (``^GSPC`` -> ``gspc``).

    """
    return re.sub(r"[^a-z0-9]", "", index_symbol.lower())


def market_columns(index_symbol: str) -> tuple[str, str]:
    """Return the ``(close, log return)`` curated column names for one market index.

    Args:
        index_symbol: The raw index symbol, e.g. ``^VIX``.

    Returns:
        For example ``("mkt_vix_close", "mkt_vix_ret")``.

    """
    name = index_feature_name(index_symbol)
    return f"{MARKET_PREFIX}{name}_close", f"{MARKET_PREFIX}{name}_ret"


def is_market_column(column: str) -> bool:
    """Tell whether a curated column was derived from a market index."""
    return column.startswith(MARKET_PREFIX) and column.endswith(("_close", "_ret"))


def raw_dir(data_root: Path, kind: str) -> Path:
    """Return the folder that holds raw CSVs of one kind (``prices``, ``indices``, ...)."""
    if kind not in RAW_KINDS:
        raise ValueError(f"unknown raw kind {kind!r}; expected one of {', '.join(RAW_KINDS)}")
    return data_root / RAW_DIR / kind
