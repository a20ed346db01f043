"""The feature kernel: window indicators and imputed sentiment on Arrow tables (no Spark here)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from tests.factories import kernel_batches, kernel_rows
from tickercast import schema
from tickercast.features import indicators, rules

COLUMNS = rules.curated_columns(["^GSPC"])


def test_batches_regroup_into_whole_symbols_in_order() -> None:
    table = kernel_rows({"AAA": 250, "BBB": 7, "CCC": 400})
    for size in (1, 5, 64, 1000):
        parts = list(indicators.whole_symbols(kernel_batches(table, size)))
        assert pa.concat_tables(parts).equals(table)
        for part in parts:
            symbols = part.column(schema.SYMBOL).to_pylist()
            assert part.num_rows == sum(
                1 for s in table.column(schema.SYMBOL).to_pylist() if s in set(symbols)
            )


def test_features_have_the_same_bits_however_the_rows_are_batched() -> None:
    table = kernel_rows({"AAA": 300, "BBB": 260, "CCC": 30})
    whole = indicators.curated_table(table, {}, COLUMNS[: len(schema.BASE_CURATED_COLUMNS)])
    pieces = [
        indicators.curated_table(t, {}, COLUMNS[: len(schema.BASE_CURATED_COLUMNS)])
        for t in indicators.whole_symbols(kernel_batches(table, 37))
    ]
    assert pa.concat_tables(pieces).equals(whole)


def test_a_tail_with_200_rows_of_lookback_gives_the_full_run_bits() -> None:
    # What the incremental mode relies on: every feature depends only on the last 200 rows.
    table = kernel_rows({"AAA": 700})
    full = indicators.window_columns(table)
    start = 333
    tail = table.slice(start)
    tail = tail.set_column(
        tail.schema.get_field_index(indicators.ROW_NUMBER),
        indicators.ROW_NUMBER,
        pa.array(np.arange(1, tail.num_rows + 1, dtype=np.int64)),
    )
    again = indicators.window_columns(tail)
    emitted = start + schema.MAX_LOOKBACK_ROWS
    for name, values in full.items():
        assert values.slice(emitted).equals(again[name].slice(emitted - start)), name


def test_indicators_follow_the_formulas() -> None:
    table = kernel_rows({"AAA": 260})
    got = indicators.window_columns(table)
    close = table.column(schema.CLOSE).to_numpy()
    ma = got["ma_20"].to_numpy(zero_copy_only=False)
    assert np.isnan(ma[:19]).all()
    np.testing.assert_allclose(ma[19:], np.convolve(close, np.ones(20) / 20, "valid"), rtol=1e-12)
    returns = np.diff(np.log(close))
    rv = got["rv_50"].to_numpy(zero_copy_only=False)
    assert np.isnan(rv[:50]).all()
    assert rv[120] == pytest.approx(np.std(returns[120 - 50 : 120], ddof=1) * np.sqrt(252), rel=1e-9)
    sentiment = got[schema.SENTIMENT].to_numpy()
    mean = table.column(indicators.SENTIMENT_MEAN).to_numpy(zero_copy_only=False)
    observed = ~np.isnan(mean)
    assert (got[schema.SENTIMENT_OBSERVED].to_numpy() == observed).all()
    np.testing.assert_array_equal(sentiment[observed], mean[observed])
    last = np.flatnonzero(observed)[0]
    assert sentiment[last + 1] == (mean[last] * 0.5 ** (1 / 5) if not observed[last + 1] else mean[last + 1])


def test_rsi_is_100_without_losses_and_50_when_flat() -> None:
    table = kernel_rows({"UP": 20, "FLAT": 20})
    close = np.concatenate([np.arange(1.0, 21.0), np.full(20, 5.0)])
    previous = np.concatenate([[np.nan], close[:19], [np.nan], close[20:39]])
    table = table.set_column(table.schema.get_field_index(schema.CLOSE), schema.CLOSE, pa.array(close))
    table = table.set_column(
        table.schema.get_field_index(indicators.PREVIOUS_CLOSE),
        indicators.PREVIOUS_CLOSE,
        pa.array(previous, mask=np.isnan(previous)),
    )
    rsi = indicators.window_columns(table)[schema.RSI].to_pylist()
    assert rsi[:14] == [None] * 14 and rsi[20:34] == [None] * 14
    assert set(rsi[14:20]) == {100.0} and set(rsi[34:40]) == {50.0}


def test_rows_out_of_order_are_refused() -> None:
    table = kernel_rows({"AAA": 5, "BBB": 5})
    split = pa.concat_tables([table.slice(0, 3), table.slice(5), table.slice(3, 2)])
    with pytest.raises(indicators.RowsOutOfOrder):
        indicators.window_columns(split)
    shuffled = table.take([1, 0, 2, 3, 4, 5, 6, 7, 8, 9])
    with pytest.raises(indicators.RowsOutOfOrder):
        indicators.window_columns(shuffled)


def test_a_price_too_large_for_exact_sums_is_refused() -> None:
    table = kernel_rows({"AAA": 30})
    huge = pa.array(np.full(30, 1e15))
    table = table.set_column(table.schema.get_field_index(schema.CLOSE), schema.CLOSE, huge)
    with pytest.raises(indicators.ValueTooLarge, match=indicators.VALUE_TOO_LARGE):
        indicators.window_columns(table)
