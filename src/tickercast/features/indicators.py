"""The per-symbol feature formulas on Arrow tables, in numpy: the one implementation of every indicator.

The Spark job's Python workers run it on each partition (Spark hands them Arrow batches through
``mapInArrow``, every symbol's rows together and in date order; :func:`whole_symbols` regroups the
batches so that no symbol is split), and :mod:`tickercast.features.curate` runs it on one machine.
:func:`window_columns` computes the indicators and the imputed sentiment for whole symbols at once,
vectorised over all of them. The formulas are those of ``docs/preprocessing.md``.

Moving sums are differences of running sums, so a 200-row mean costs two lookups per row, not 200
additions. Running sums of doubles would make a value depend on where the sum started (an
incremental run recomputing a tail would get other bits than a full run), so they are exact
integer sums of fixed-point parts: each value is split into ``hi = floor(value * 2^b)`` and
``lo = floor(the rest * 2^30)``, summed as int64. A difference of two such running sums is the
exact sum of the window's rounded values even where a running sum wrapped around (int64 sums are
exact modulo 2^64), provided the window's own sum fits: :class:`ValueTooLarge` otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tickercast import schema
from tickercast.features import rules
from tickercast.features.calendar import calendar_columns

# The input columns the kernel reads; the job's rows carry them (plus anything passed through).
ROW_NUMBER = "_row"  # 1-based position in the symbol's rows (Spark's row_number over the symbol)
PREVIOUS_CLOSE = "_previous_close"  # the close of the symbol's previous row, null on its first
SENTIMENT_MEAN = "sentiment_mean"  # the day's mean observed score, null on days without one

# Prices and price changes get 2^-50 steps, squared returns (below 1e3) 2^-60 steps.
_PRICE_BITS, _SQUARE_BITS, _LOW_BITS = 20, 30, 30
_INT64_LIMIT = float(2**63)

# Said on top of the worker's error, which reaches the driver as text.
VALUE_TOO_LARGE = "tickercast: value too large to sum exactly"


class ValueTooLarge(ArithmeticError):
    """A value whose window sum would not fit the exact fixed-point integer sums."""


class RowsOutOfOrder(RuntimeError):
    """Rows reached the kernel split across partitions or out of date order: a bug, not bad data."""


def _segment_starts(symbols: pa.Array) -> np.ndarray:
    """Return, for each row, the position of its symbol's first row (rows grouped by symbol)."""
    encoded = pc.dictionary_encode(symbols)
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    change = np.empty(len(codes), dtype=bool)
    change[:1] = True
    np.not_equal(codes[1:], codes[:-1], out=change[1:])
    starts = np.flatnonzero(change)
    if len(starts) != len(encoded.dictionary):  # more runs than symbols: one is split
        raise RowsOutOfOrder("a symbol's rows are not together in the partition")
    return starts[np.cumsum(change) - 1]


def _moving_int(values: np.ndarray, n: int, first: np.ndarray, position: np.ndarray) -> np.ndarray:
    """Sum ``values`` (int64) over each row's last ``n`` rows of its own symbol, exactly."""
    running = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(values, out=running[1:])
    return running[position + 1] - running[np.maximum(position + 1 - n, first)]


def _moving_sum(values: np.ndarray, n: int, bits: int, first: np.ndarray, position: np.ndarray) -> np.ndarray:
    """Sum doubles over each row's last ``n`` rows, each rounded down to a multiple of 2^-(bits+30)."""
    scaled = values * float(2**bits)  # a power of two: exact
    if len(scaled) and float(np.abs(scaled).max()) * n >= _INT64_LIMIT:
        raise ValueTooLarge(
            f"{VALUE_TOO_LARGE}: {float(np.abs(values).max()):.6g} over {n} rows "
            f"(the limit is about {_INT64_LIMIT / 2**bits / n:.3g})"
        )
    hi = np.floor(scaled)
    lo = np.floor((scaled - hi) * float(2**_LOW_BITS))  # the fraction of a double: exact
    hi_sum = _moving_int(hi.astype(np.int64), n, first, position)
    lo_sum = _moving_int(lo.astype(np.int64), n, first, position)
    low_step = float(2 ** (bits + _LOW_BITS))
    return hi_sum.astype(np.float64) / float(2**bits) + lo_sum.astype(np.float64) / low_step


def _lagged(values: np.ndarray, n: int, first: np.ndarray, position: np.ndarray) -> np.ndarray:
    """Return each row's value ``n`` rows back in its own symbol, NaN where there is none."""
    back = position - n
    out = np.full(len(values), np.nan)
    inside = back >= first
    out[inside] = values[back[inside]]
    return out


def _doubles(table: pa.Table, name: str) -> np.ndarray:
    """Return a column as float64, null as NaN."""
    return table.column(name).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)


def _nullable(values: np.ndarray) -> pa.Array:
    """Return a float64 Arrow array with NaN as null."""
    return pa.array(values, mask=np.isnan(values), type=pa.float64())


def window_columns(table: pa.Table) -> dict[str, pa.Array]:
    """Compute the per-symbol indicators and the imputed sentiment of whole symbols.

    Args:
        table: Rows grouped by symbol and in date order within each, every symbol complete (or a
            complete tail: the numbers then restart at its first row), with ``symbol, close,
            time_idx`` and :data:`ROW_NUMBER`, :data:`PREVIOUS_CLOSE`, :data:`SENTIMENT_MEAN` and
            ``news_count`` (null on rows without observations).

    Returns:
        ``log_return``, ``ma_*``, ``rv_*``, ``rsi_14``, ``sentiment``, ``news_count`` (0 without
        observations) and ``sentiment_observed``, one value per row.

    Raises:
        RowsOutOfOrder: The row numbers do not count each symbol's rows from 1.
        ValueTooLarge: A value too large for the exact sums.

    """
    n_rows = table.num_rows
    position = np.arange(n_rows, dtype=np.int64)
    first = _segment_starts(table.column(schema.SYMBOL).combine_chunks())
    row = position - first + 1
    if not np.array_equal(row, table.column(ROW_NUMBER).to_numpy(zero_copy_only=False)):
        raise RowsOutOfOrder("the rows of a symbol are not in date order")
    close, previous = _doubles(table, schema.CLOSE), _doubles(table, PREVIOUS_CLOSE)
    columns: dict[str, pa.Array] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        log_return = np.log(close / previous)
        delta = np.nan_to_num(close - previous, nan=0.0)  # no change before a symbol's first row
        columns[schema.LOG_RETURN] = _nullable(log_return)
        for n in schema.MA_WINDOWS:
            mean = _moving_sum(close, n, _PRICE_BITS, first, position) / float(n)
            columns[f"ma_{n}"] = _nullable(np.where(row >= n, mean, np.nan))
        squares = np.nan_to_num(log_return * log_return, nan=0.0)
        for n in schema.RV_WINDOWS:
            # The returns over a window telescope: their sum is the log of the close n rows apart.
            total = np.log(close / _lagged(close, n, first, position))
            sum_squares = _moving_sum(squares, n, _SQUARE_BITS, first, position)
            variance = np.maximum((sum_squares - total * total / float(n)) / float(n - 1), 0.0)
            volatility = np.sqrt(variance) * rules.ANNUALISATION
            columns[f"rv_{n}"] = _nullable(np.where(row >= n + 1, volatility, np.nan))
        columns[schema.RSI] = _nullable(_rsi(delta, row, first, position))
        sentiment, observed = _sentiment(table, first, position)
    news = table.column(schema.NEWS_COUNT).to_numpy(zero_copy_only=False)
    columns[schema.SENTIMENT] = pa.array(sentiment, type=pa.float64())
    columns[schema.NEWS_COUNT] = pa.array(np.nan_to_num(news.astype(np.float64), nan=0.0).astype(np.int64))
    columns[schema.SENTIMENT_OBSERVED] = pa.array(observed.astype(np.int64))
    return columns


def _rsi(delta: np.ndarray, row: np.ndarray, first: np.ndarray, position: np.ndarray) -> np.ndarray:
    """RSI over the last ``RSI_WINDOW`` changes; exact counts decide the no-loss and flat cases."""
    n = schema.RSI_WINDOW
    gains = _moving_sum(np.maximum(delta, 0.0), n, _PRICE_BITS, first, position)
    losses = _moving_sum(np.maximum(-delta, 0.0), n, _PRICE_BITS, first, position)
    ups = _moving_int((delta > 0).astype(np.int64), n, first, position)
    downs = _moving_int((delta < 0).astype(np.int64), n, first, position)
    rsi = 100.0 - 100.0 / (1.0 + gains / losses)
    rsi = np.where(downs == 0, np.where(ups == 0, 50.0, 100.0), rsi)
    return np.where(row >= n + 1, rsi, np.nan)


def _sentiment(table: pa.Table, first: np.ndarray, position: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Observed means where there are some, else the last one decayed (past only), else 0."""
    mean = _doubles(table, SENTIMENT_MEAN)
    observed = ~np.isnan(mean)
    last = np.maximum.accumulate(np.where(observed, position, -1))
    seen = last >= first  # an observation in this symbol's rows so far
    last = np.where(seen, last, position)
    time_idx = table.column(schema.TIME_IDX).to_numpy(zero_copy_only=False)
    carried = seen & (position - last <= rules.SENTIMENT_MAX_CARRY_ROWS)
    decay = np.power(0.5, (time_idx - time_idx[last]).astype(np.float64) / rules.SENTIMENT_HALF_LIFE_DAYS)
    return np.where(observed, mean, np.where(carried, mean[last] * decay, 0.0)), observed


def market_columns(time_idx: pa.Array, market: Mapping[str, np.ndarray]) -> dict[str, pa.Array]:
    """Look the market columns up by ``time_idx`` in arrays indexed by it (NaN for null)."""
    index = time_idx.to_numpy(zero_copy_only=False)
    return {name: _nullable(values[index]) for name, values in market.items()}


def curated_table(table: pa.Table, market: Mapping[str, np.ndarray], columns: Sequence[str]) -> pa.Table:
    """Turn ordered rows into curated rows: indicators, calendar, market, in ``columns``' order.

    Args:
        table: As for :func:`window_columns`, plus ``date, open, high, low, volume``.
        market: Each ``mkt_*`` column as an array indexed by ``time_idx`` (NaN for null).
        columns: The curated columns in order (:func:`tickercast.features.rules.curated_columns`).

    """
    computed = {
        **{name: table.column(name) for name in table.column_names},
        **window_columns(table),
        **calendar_columns(table.column(schema.DATE)),
        **market_columns(table.column(schema.TIME_IDX), market),
    }
    return pa.table({name: computed[name] for name in columns})


def whole_symbols(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.Table]:
    """Regroup a partition's batches so that each table holds whole symbols.

    Rows arrive grouped by symbol, but a batch may end inside one: its rows wait for the next
    batch. At most one symbol's rows wait, so memory stays bounded by the batch size plus the
    longest history.
    """
    waiting: pa.Table | None = None
    for batch in batches:
        if batch.num_rows == 0:
            continue
        table = pa.Table.from_batches([batch])
        if waiting is not None:
            table = pa.concat_tables([waiting, table])
        symbols = table.column(schema.SYMBOL)
        same_as_last = pc.equal(symbols, symbols[-1]).to_numpy(zero_copy_only=False)
        split = len(same_as_last) - int(np.argmin(same_as_last[::-1])) if not same_as_last.all() else 0
        if split:
            yield table.slice(0, split)
        waiting = table.slice(split)
    if waiting is not None and waiting.num_rows:
        yield waiting
