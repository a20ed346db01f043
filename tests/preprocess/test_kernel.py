"""The feature kernel and the Parquet writer the Spark job runs in its Python workers (no Spark here)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tickercast import schema
from tickercast.preprocess import kernel, spec, write

COLUMNS = spec.curated_columns(["^GSPC"])


def _rows(symbols: dict[str, int], seed: int = 0) -> pa.Table:
    """Rows as the job hands them to the kernel: grouped by symbol, in date order, numbered."""
    rng = np.random.default_rng(seed)
    parts = []
    for symbol, n in symbols.items():
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
        previous = np.concatenate([[np.nan], close[:-1]])
        mean = np.where(rng.random(n) < 0.3, rng.uniform(-1, 1, n), np.nan)
        dates = [dt.date(2020, 1, 1) + dt.timedelta(days=d) for d in range(n)]
        parts.append(
            pa.table(
                {
                    schema.DATE: pa.array(dates, pa.date32()),
                    schema.SYMBOL: [symbol] * n,
                    schema.OPEN: close,
                    schema.HIGH: close * 1.01,
                    schema.LOW: close * 0.99,
                    schema.CLOSE: close,
                    schema.VOLUME: np.full(n, 1000.0),
                    schema.TIME_IDX: np.arange(n, dtype=np.int64),
                    kernel.SENTIMENT_MEAN: pa.array(mean, mask=np.isnan(mean)),
                    schema.NEWS_COUNT: pa.array(np.where(np.isnan(mean), 0, 2), mask=np.isnan(mean)),
                    kernel.PREVIOUS_CLOSE: pa.array(previous, mask=np.isnan(previous)),
                    kernel.ROW_NUMBER: np.arange(1, n + 1, dtype=np.int64),
                }
            )
        )
    return pa.concat_tables(parts)


def _batches(table: pa.Table, size: int) -> list[pa.RecordBatch]:
    return table.combine_chunks().to_batches(max_chunksize=size)


def test_batches_regroup_into_whole_symbols_in_order() -> None:
    table = _rows({"AAA": 250, "BBB": 7, "CCC": 400})
    for size in (1, 5, 64, 1000):
        parts = list(kernel.whole_symbols(_batches(table, size)))
        assert pa.concat_tables(parts).equals(table)
        for part in parts:
            symbols = part.column(schema.SYMBOL).to_pylist()
            assert part.num_rows == sum(
                1 for s in table.column(schema.SYMBOL).to_pylist() if s in set(symbols)
            )


def test_features_have_the_same_bits_however_the_rows_are_batched() -> None:
    table = _rows({"AAA": 300, "BBB": 260, "CCC": 30})
    whole = kernel.curated_table(table, {}, COLUMNS[: len(schema.BASE_CURATED_COLUMNS)])
    pieces = [
        kernel.curated_table(t, {}, COLUMNS[: len(schema.BASE_CURATED_COLUMNS)])
        for t in kernel.whole_symbols(_batches(table, 37))
    ]
    assert pa.concat_tables(pieces).equals(whole)


def test_a_tail_with_200_rows_of_lookback_gives_the_full_run_bits() -> None:
    # What the incremental mode relies on: every feature depends only on the last 200 rows.
    table = _rows({"AAA": 700})
    full = kernel.window_columns(table)
    start = 333
    tail = table.slice(start)
    tail = tail.set_column(
        tail.schema.get_field_index(kernel.ROW_NUMBER),
        kernel.ROW_NUMBER,
        pa.array(np.arange(1, tail.num_rows + 1, dtype=np.int64)),
    )
    again = kernel.window_columns(tail)
    emitted = start + schema.MAX_LOOKBACK_ROWS
    for name, values in full.items():
        assert values.slice(emitted).equals(again[name].slice(emitted - start)), name


def test_indicators_follow_the_formulas() -> None:
    table = _rows({"AAA": 260})
    got = kernel.window_columns(table)
    close = table.column(schema.CLOSE).to_numpy()
    ma = got["ma_20"].to_numpy(zero_copy_only=False)
    assert np.isnan(ma[:19]).all()
    np.testing.assert_allclose(ma[19:], np.convolve(close, np.ones(20) / 20, "valid"), rtol=1e-12)
    returns = np.diff(np.log(close))
    rv = got["rv_50"].to_numpy(zero_copy_only=False)
    assert np.isnan(rv[:50]).all()
    assert rv[120] == pytest.approx(np.std(returns[120 - 50 : 120], ddof=1) * np.sqrt(252), rel=1e-9)
    sentiment = got[schema.SENTIMENT].to_numpy()
    mean = table.column(kernel.SENTIMENT_MEAN).to_numpy(zero_copy_only=False)
    observed = ~np.isnan(mean)
    assert (got[schema.SENTIMENT_OBSERVED].to_numpy() == observed).all()
    np.testing.assert_array_equal(sentiment[observed], mean[observed])
    last = np.flatnonzero(observed)[0]
    assert sentiment[last + 1] == (mean[last] * 0.5 ** (1 / 5) if not observed[last + 1] else mean[last + 1])


def test_rsi_is_100_without_losses_and_50_when_flat() -> None:
    table = _rows({"UP": 20, "FLAT": 20})
    close = np.concatenate([np.arange(1.0, 21.0), np.full(20, 5.0)])
    previous = np.concatenate([[np.nan], close[:19], [np.nan], close[20:39]])
    table = table.set_column(table.schema.get_field_index(schema.CLOSE), schema.CLOSE, pa.array(close))
    table = table.set_column(
        table.schema.get_field_index(kernel.PREVIOUS_CLOSE),
        kernel.PREVIOUS_CLOSE,
        pa.array(previous, mask=np.isnan(previous)),
    )
    rsi = kernel.window_columns(table)[schema.RSI].to_pylist()
    assert rsi[:14] == [None] * 14 and rsi[20:34] == [None] * 14
    assert set(rsi[14:20]) == {100.0} and set(rsi[34:40]) == {50.0}


def test_rows_out_of_order_are_refused() -> None:
    table = _rows({"AAA": 5, "BBB": 5})
    split = pa.concat_tables([table.slice(0, 3), table.slice(5), table.slice(3, 2)])
    with pytest.raises(kernel.RowsOutOfOrder):
        kernel.window_columns(split)
    shuffled = table.take([1, 0, 2, 3, 4, 5, 6, 7, 8, 9])
    with pytest.raises(kernel.RowsOutOfOrder):
        kernel.window_columns(shuffled)


def test_a_price_too_large_for_exact_sums_is_refused() -> None:
    table = _rows({"AAA": 30})
    huge = pa.array(np.full(30, 1e15))
    table = table.set_column(table.schema.get_field_index(schema.CLOSE), schema.CLOSE, huge)
    with pytest.raises(kernel.ValueTooLarge, match=kernel.VALUE_TOO_LARGE):
        kernel.window_columns(table)


def test_content_folds_ignore_order_and_batches_but_see_every_value() -> None:
    curated = kernel.curated_table(_rows({"AAA": 80, "BBB": 90}), {}, list(schema.BASE_CURATED_COLUMNS))
    folds = kernel.content_folds(curated)
    reordered = curated.take(np.random.default_rng(1).permutation(curated.num_rows))
    parts = [kernel.content_folds(t) for t in (reordered.slice(0, 50), reordered.slice(50))]
    assert kernel.combine_folds(parts) == folds
    changed = curated.set_column(
        curated.schema.get_field_index(schema.VOLUME),
        schema.VOLUME,
        pa.array(np.concatenate([[1001.0], np.full(curated.num_rows - 1, 1000.0)])),
    )
    assert kernel.content_folds(changed) != folds
    nulled = curated.set_column(
        curated.schema.get_field_index("ma_20"),
        "ma_20",
        pa.array(np.zeros(curated.num_rows)),
    )
    assert kernel.content_folds(nulled) != folds  # a null is not a 0


def test_a_partition_file_appears_complete_or_not_at_all(tmp_path: Path) -> None:
    table = _rows({"AAA": 300, "BBB": 40})
    market = {"mkt_gspc_close": np.linspace(1, 2, 300), "mkt_gspc_ret": np.full(300, np.nan)}
    target = write.curated_schema(COLUMNS)
    path, temporary = tmp_path / "part-00000.parquet", tmp_path / ".part-00000.parquet.1.tmp"
    metrics = write.write_partition(_batches(table, 64), str(path), str(temporary), target, market, True)
    written = pq.read_table(path)
    assert written.schema.names == COLUMNS and not temporary.exists()
    assert metrics.to_pydict()["rows"] == [340]
    assert metrics.to_pydict()["first"] == [dt.date(2020, 1, 1)]
    assert written.column("mkt_gspc_close").to_pylist()[:2] == [1.0, market["mkt_gspc_close"][1]]
    assert written.column("mkt_gspc_ret").null_count == 340

    broken = tmp_path / "part-00001.parquet"
    bad = table.set_column(
        table.schema.get_field_index(schema.CLOSE), schema.CLOSE, pa.array(np.full(340, 1e15))
    )
    with pytest.raises(kernel.ValueTooLarge):
        write.write_partition(_batches(bad, 64), str(broken), str(tmp_path / ".b.tmp"), target, market, True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part-00000.parquet"]

    empty = write.write_partition(
        [], str(tmp_path / "part-00002.parquet"), str(tmp_path / ".e.tmp"), target, {}, True
    )
    assert empty.to_pydict()["rows"] == [0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part-00000.parquet"]
