"""The rules of a curated feature: date patterns, feature constants, quarantine reasons, the columns.

Free of Spark and pandas imports: the Spark job, :mod:`tickercast.features.curate` and serving all
read them. ``docs/preprocessing.md`` explains each rule for people.
"""

from __future__ import annotations

import math

from tickercast import schema

# --- Dates ---------------------------------------------------------------------------------------

# A raw `Date` is an ISO date (`2018-03-01`) or an ISO timestamp as yfinance writes it
# (`2018-03-01 00:00:00-05:00`); the calendar date is taken as written, i.e. in the exchange's
# local time, so the offset never moves a row to another day.
DATE_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"([ T][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?(Z|[+-][0-9]{2}:?[0-9]{2})?)?$"
)
# News `published_at` must say which instant it means: an ISO timestamp with an offset (or `Z`).
TIMESTAMP_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?(Z|[+-][0-9]{2}:?[0-9]{2})$"
)

# --- Features --------------------------------------------------------------------------------------

ANNUALISATION = math.sqrt(252.0)
# A market index value is carried forward over at most this many missing trading days.
MARKET_FFILL_LIMIT = 3
# Days without news: the symbol's last observation decays toward 0 with this half-life in trading
# days (time_idx steps) ...
SENTIMENT_HALF_LIFE_DAYS = 5.0
# ... and is forgotten (sentiment 0) once it is more than this many of the symbol's rows old. The
# bound keeps every feature a function of at most MAX_LOOKBACK_ROWS past rows, which is what makes
# the incremental mode exact.
SENTIMENT_MAX_CARRY_ROWS = 60
assert SENTIMENT_MAX_CARRY_ROWS < schema.MAX_LOOKBACK_ROWS

# --- Quarantine reasons ----------------------------------------------------------------------------

REASON_UNPARSEABLE_DATE = "unparseable date"
REASON_UNPARSEABLE_NUMBER = "unparseable number"  # followed by ": <column>"
REASON_MISSING_FIELD = "missing field"  # followed by ": <column>"
REASON_NON_POSITIVE_PRICE = "non-positive price"  # followed by ": <column>"
REASON_HIGH_BELOW_LOW = "high < low"
REASON_OPEN_OUTSIDE = "open outside [low, high]"
REASON_CLOSE_OUTSIDE = "close outside [low, high]"
REASON_NEGATIVE_VOLUME = "negative volume"
REASON_FUTURE_DATE = "future date"
REASON_BAD_SYMBOL = "bad symbol"
REASON_SENTIMENT_RANGE = "sentiment outside [-1, 1]"
REASON_MISSING_COLUMNS = "missing columns"  # followed by ": <col>, <col>"
REASON_MALFORMED = "malformed line"
# A one-line field (anything but a headline) that holds a line break: most likely an unclosed quote.
REASON_SPANS_LINES = f"{REASON_MALFORMED}: a quoted field runs over a line break (an unclosed quote?)"
REASON_SUPERSEDED = "superseded"

# The curated integer columns; everything else numeric is float64.
INTEGER_COLUMNS = (
    schema.TIME_IDX,
    schema.DAY_OF_WEEK,
    schema.DAY_OF_MONTH,
    schema.MONTH,
    schema.NEWS_COUNT,
    schema.SENTIMENT_OBSERVED,
)


def curated_columns(index_symbols: list[str] | tuple[str, ...]) -> list[str]:
    """Return the curated column names, in order, for the given market index symbols.

    Args:
        index_symbols: Raw index symbols (``^GSPC``, ...); order does not matter.

    Returns:
        ``schema.BASE_CURATED_COLUMNS`` followed by ``mkt_<name>_close, mkt_<name>_ret`` per index,
        indices sorted by their short name.

    """
    columns = list(schema.BASE_CURATED_COLUMNS)
    for name in sorted({schema.index_feature_name(s) for s in index_symbols}):
        columns += [f"{schema.MARKET_PREFIX}{name}_close", f"{schema.MARKET_PREFIX}{name}_ret"]
    return columns
