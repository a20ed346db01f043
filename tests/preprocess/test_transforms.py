"""Pure transforms on tiny hand-made DataFrames, and the atomic publish."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

D = dt.date


@pytest.mark.spark
def test_trading_calendar_numbers_dates_densely(spark) -> None:
    from pyspark.testing import assertDataFrameEqual

    from tickercast.preprocess.transforms import trading_calendar

    prices = spark.createDataFrame(
        [("A", D(2024, 1, 5)), ("B", D(2024, 1, 2)), ("A", D(2024, 1, 2)), ("B", D(2024, 1, 8))],
        "symbol string, date date",
    )
    expected = spark.createDataFrame(
        [(D(2024, 1, 2), 0), (D(2024, 1, 5), 1), (D(2024, 1, 8), 2)], "date date, time_idx long"
    )
    assertDataFrameEqual(trading_calendar(spark, [r.date for r in prices.collect()]), expected)


@pytest.mark.spark
def test_observations_count_for_the_next_trading_row(spark) -> None:
    from pyspark.testing import assertDataFrameEqual

    from tickercast.preprocess.transforms import daily_sentiment, trading_calendar

    prices = spark.createDataFrame(
        [
            ("A", D(2024, 1, 4)),
            ("A", D(2024, 1, 5)),
            ("A", D(2024, 1, 8)),
            ("A", D(2024, 1, 9)),
            ("B", D(2024, 1, 5)),
            ("B", D(2024, 1, 9)),  # no row on Monday the 8th: a gap
        ],
        "symbol string, date date",
    )
    observations = spark.createDataFrame(
        [
            ("A", D(2024, 1, 5), 0.5),  # same day
            ("A", D(2024, 1, 6), -0.25),  # Saturday -> Monday
            ("A", D(2024, 1, 7), 0.75),  # Sunday -> Monday
            ("A", D(2024, 1, 10), 1.0),  # after the last row: waits
            ("B", D(2024, 1, 4), -1.0),  # before B's first row -> its first row
            ("B", D(2024, 1, 3), 0.25),  # before any trading date -> B's first row
            ("B", D(2024, 1, 6), 0.5),  # Saturday -> Monday, a gap for B -> Tuesday
            ("C", D(2024, 1, 5), 0.5),  # no prices for C: never counts
        ],
        "symbol string, effective_date date, score double",
    )
    expected = spark.createDataFrame(
        [
            ("A", D(2024, 1, 5), 0.5, 1),
            ("A", D(2024, 1, 8), 0.25, 2),
            ("B", D(2024, 1, 5), -0.375, 2),
            ("B", D(2024, 1, 9), 0.5, 1),
        ],
        "symbol string, date date, sentiment_mean double, news_count long",
    )
    calendar = trading_calendar(spark, [r.date for r in prices.collect()])
    assertDataFrameEqual(daily_sentiment(prices, calendar, observations), expected)


@pytest.mark.spark
def test_a_daily_mean_has_the_same_bits_in_any_order_or_partitioning(spark) -> None:
    import math
    import random

    from tickercast.preprocess.transforms import daily_sentiment, trading_calendar

    prices = spark.createDataFrame([("A", D(2024, 1, 5))], "symbol string, date date")
    rng = random.Random(3)
    scores = [rng.uniform(-1, 1) for _ in range(500)] + [1.0, -1.0, 1e-300, -0.1, 0.1 + 0.2]
    means = []
    for order, partitions in ((scores, 1), (scores[::-1], 7), (sorted(scores), 3)):
        observations = spark.createDataFrame(
            [("A", D(2024, 1, 5), s) for s in order], "symbol string, effective_date date, score double"
        ).repartition(partitions)
        daily = daily_sentiment(prices, trading_calendar(spark, [D(2024, 1, 5)]), observations)
        means.append(daily.first()["sentiment_mean"])
    assert means[0] == means[1] == means[2]
    assert math.isclose(means[0], math.fsum(scores) / len(scores), rel_tol=1e-15, abs_tol=1e-17)


@pytest.mark.spark
def test_duplicates_resolve_to_the_file_sorting_last(spark) -> None:
    from pyspark.testing import assertDataFrameEqual

    from tickercast.preprocess.validate import resolve_duplicates

    rows = spark.createDataFrame(
        [
            (0, "a1", "X", D(2024, 1, 2), 1.0, None, "valid"),
            (1, "b1", "X", D(2024, 1, 2), 2.0, None, "valid"),
            (2, "c1", "X", D(2024, 1, 2), 2.0, None, "valid"),
            (0, "a2", "X", D(2024, 1, 3), 5.0, None, "valid"),
            (0, "a3", "X", None, None, "unparseable date", "bad"),
        ],
        "file_index int, record string, symbol string, date date, close double, reason string, status string",
    )
    out = resolve_duplicates(rows, ["symbol", "date"], ["close"]).select("record", "status", "reason")
    expected = spark.createDataFrame(
        [
            ("a1", "superseded", "superseded"),
            ("b1", "duplicate", None),
            ("c1", "valid", None),
            ("a2", "valid", None),
            ("a3", "bad", "unparseable date"),
        ],
        "record string, status string, reason string",
    )
    assertDataFrameEqual(out, expected)


@pytest.mark.spark
def test_duplicate_resolution_looks_back_on_the_previous_valid_row(spark) -> None:
    from pyspark.testing import assertDataFrameEqual

    from tickercast.preprocess.validate import previous_name, resolve_duplicates

    rows = spark.createDataFrame(
        [
            (0, "a1", "X", D(2024, 1, 2), 1.0, None, "valid"),
            (1, "b1", "X", D(2024, 1, 2), 2.0, None, "valid"),  # wins 2 Jan
            (0, "a2", "X", D(2024, 1, 3), 9.0, "non-positive price", "bad"),
            (0, "a3", "X", D(2024, 1, 4), 5.0, None, "valid"),
            (1, "b3", "X", D(2024, 1, 4), 5.0, None, "valid"),  # wins 4 Jan
            (0, "a4", "X", D(2024, 1, 5), 7.0, None, "valid"),
            (0, "y1", "Y", D(2024, 1, 3), 3.0, None, "valid"),  # another symbol starts afresh
        ],
        "file_index int, record string, symbol string, date date, close double, reason string, status string",
    )
    out = resolve_duplicates(rows, ["symbol", "date"], ["close"], previous=["close"])
    previous = previous_name("close")
    got = out.where("status = 'valid'").select("record", previous)
    expected = spark.createDataFrame(
        [("b1", None), ("b3", 2.0), ("a4", 5.0), ("y1", None)], f"record string, {previous} double"
    )
    assertDataFrameEqual(got, expected)


@pytest.mark.spark
def test_calendar_lookups_map_every_day_to_the_next_trading_date(spark) -> None:
    from tickercast.preprocess.transforms import calendar_lookups

    # A Friday, the next Monday and Wednesday, given out of order and repeated.
    tables = calendar_lookups(spark, [D(2024, 1, 8), D(2024, 1, 5), D(2024, 1, 10), D(2024, 1, 8)])
    assert [tuple(r) for r in tables["bounds"].collect()] == [(D(2024, 1, 5), D(2024, 1, 10))]
    days = {r["_day"]: r["_next_idx"] for r in tables["days"].collect()}
    assert days == {
        D(2024, 1, 5): 0,
        D(2024, 1, 6): 1,
        D(2024, 1, 7): 1,
        D(2024, 1, 8): 1,
        D(2024, 1, 9): 2,
        D(2024, 1, 10): 2,
    }
    empty = calendar_lookups(spark, [])
    assert [tuple(r) for r in empty["bounds"].collect()] == [(None, None)]
    assert empty["days"].count() == 0


@pytest.mark.spark
def test_calendar_columns_are_the_exchange_calendars_computed_in_the_workers(spark) -> None:
    from tickercast.preprocess.transforms import calendar_columns

    # A Sunday, a Monday and a Dec 31st; a stale calendar column is replaced.
    frame = spark.createDataFrame(
        [("A", D(2023, 12, 31), 9), ("A", D(2024, 1, 1), 9), ("B", D(2024, 12, 31), 9)],
        "symbol string, date date, month long",
    )
    out = calendar_columns(frame)
    assert out.columns == ["symbol", "date", "day_of_week", "day_of_month", "month"]
    assert dict(out.dtypes)["day_of_week"] == "bigint"
    rows = sorted(tuple(r) for r in out.collect())
    assert rows == [
        ("A", D(2023, 12, 31), 6, 31, 12),
        ("A", D(2024, 1, 1), 0, 1, 1),
        ("B", D(2024, 12, 31), 1, 31, 12),
    ]


def test_first_lines_skips_blank_lines_and_a_bom_and_survives_bad_bytes(tmp_path: Path) -> None:
    from tickercast.preprocess.validate import first_lines

    bom = tmp_path / "bom.csv"
    bom.write_bytes(b'\xef\xbb\xbf\n  \nDate, Symbol ,"Close"\n2024-01-02,A,1\n')
    assert first_lines(str(bom)) == ["Date", "Symbol", "Close"]
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes(b"Dat\xe9,Symbol\n")
    assert first_lines(str(latin1)) == ["Dat\ufffd", "Symbol"]
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert first_lines(str(empty)) == []
