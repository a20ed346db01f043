"""One-machine curation (the Spark job's kernel) against the independent reference, and its edge cases."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from tests.preprocess.conftest import RawData
from tests.preprocess.reference import assert_features_close, reference_features
from tickercast import schema
from tickercast.features import rules
from tickercast.features.curate import curate


def test_every_indicator_matches_the_reference(raw_data: RawData) -> None:
    expected = reference_features(raw_data.prices, raw_data.indices, raw_data.news)
    actual = curate(raw_data.prices, raw_data.indices, raw_data.news)
    assert_features_close(actual, expected)
    # The data really exercises the edge cases the reference implements.
    assert actual["sentiment_observed"].sum() > 50
    assert (actual["news_count"] > 1).any()
    # The 5-day hole in ^GSPC: 3 days carried, 2 null.
    assert actual.loc[actual["mkt_gspc_close"].isna(), "date"].nunique() == 2
    assert actual["ma_200"].notna().sum() > 100


def test_columns_and_dtypes_are_the_contract(raw_data: RawData) -> None:
    out = curate(raw_data.prices, raw_data.indices, raw_data.news)
    assert list(out.columns) == rules.curated_columns(["^GSPC", "^VIX"])
    assert isinstance(out["date"].iloc[0], dt.date)
    for column in rules.INTEGER_COLUMNS:
        assert out[column].dtype == np.int64
    assert out["close"].dtype == np.float64


def test_no_news_means_zero_unobserved_sentiment(raw_data: RawData) -> None:
    out = curate(raw_data.prices)
    assert (out["sentiment"] == 0).all()
    assert (out["sentiment_observed"] == 0).all()
    assert (out["news_count"] == 0).all()
    assert list(out.columns) == list(schema.BASE_CURATED_COLUMNS)


def test_changing_data_after_t_leaves_features_up_to_t_unchanged(raw_data: RawData) -> None:
    before = curate(raw_data.prices, raw_data.indices, raw_data.news)
    prices, indices = raw_data.prices.copy(), raw_data.indices.copy()
    late = prices["Date"].str.slice(0, 10) > raw_data.split.isoformat()
    for column in ("Open", "High", "Low", "Close"):
        prices.loc[late, column] = (prices.loc[late, column].astype(float) * 3).astype(str)
    late_index = indices["Date"].str.slice(0, 10) > raw_data.split.isoformat()
    indices = indices[~late_index]
    _, late_news = raw_data.early_late("news")
    news = raw_data.news.copy()
    news.loc[late_news.index, "headline"] = "Catastrophic fraud scandal and terrible losses"
    after = curate(prices, indices, news)
    cut = pd.Series([d <= raw_data.split for d in before["date"]])
    pd.testing.assert_frame_equal(
        before[cut].reset_index(drop=True), after[cut.to_numpy()].reset_index(drop=True)
    )
    assert (
        not before[~cut]["close"]
        .reset_index(drop=True)
        .equals(after[~cut.to_numpy()]["close"].reset_index(drop=True))
    )


def _prices(closes: list[float], symbol: str = "AAA", start: str = "2024-01-01") -> pd.DataFrame:
    dates = pd.bdate_range(start, periods=len(closes))
    return pd.DataFrame(
        {
            "Date": dates.strftime("%Y-%m-%d"),
            "Symbol": symbol,
            "Open": closes,
            "High": [c + 1 for c in closes],
            "Low": [c - 1 for c in closes],
            "Close": closes,
            "Volume": 100,
        }
    )


def test_rsi_special_cases() -> None:
    flat = curate(_prices([10.0] * 20))
    assert flat["rsi_14"].isna().sum() == 14  # 14 changes need 15 rows
    assert (flat["rsi_14"].dropna() == 50).all()
    rising = curate(_prices([10.0 + i for i in range(20)]))
    assert (rising["rsi_14"].dropna() == 100).all()
    falling = curate(_prices([50.0 - i for i in range(20)]))
    assert (falling["rsi_14"].dropna() == 0).all()


def test_both_date_formats_give_the_calendar_date_as_written() -> None:
    frame = _prices([10.0, 11.0])
    frame.loc[1, "Date"] = "2024-01-02 00:00:00-05:00"
    out = curate(frame)
    assert [str(d) for d in out["date"]] == ["2024-01-01", "2024-01-02"]
    assert out["log_return"].iloc[1] == pytest.approx(math.log(11 / 10))


def test_news_after_the_close_or_on_a_weekend_counts_for_the_next_trading_day() -> None:
    prices = _prices([10.0] * 5, start="2024-01-04")  # Thu 4, Fri 5, Mon 8, Tue 9, Wed 10
    news = pd.DataFrame(
        {
            "published_at": [
                "2024-01-04T15:59:59-05:00",  # Thursday in session -> Thursday
                "2024-01-04T16:00:01-05:00",  # Thursday after the close -> Friday
                "2024-01-06T12:00:00-05:00",  # Saturday -> Monday
                "2024-01-08T22:30:00+00:00",  # Monday 17:30 New York -> Tuesday
            ],
            "Symbol": "AAA",
            "headline": ["good", "good", "good", "good"],
        }
    )
    out = curate(prices, sentiment=news)
    assert out["news_count"].tolist() == [1, 1, 1, 1, 0]
    assert out["sentiment_observed"].tolist() == [1, 1, 1, 1, 0]
    decayed = out["sentiment"].iloc[3] * 0.5 ** (1 / rules.SENTIMENT_HALF_LIFE_DAYS)
    assert out["sentiment"].iloc[4] == pytest.approx(decayed)


def test_raw_sentiment_scores_are_observations() -> None:
    prices = _prices([10.0] * 3, start="2024-01-04")
    scores = pd.DataFrame(
        {"Date": ["2024-01-06", "2024-01-04"], "Symbol": "AAA", "sentiment": ["0.5", "-0.25"]}
    )
    out = curate(prices, sentiment=scores)
    assert out["sentiment"].tolist()[:3] == [-0.25, 0.0 + -0.25 * 0.5 ** (1 / 5), 0.5]
    assert out["sentiment_observed"].tolist() == [1, 0, 1]


def test_market_index_is_carried_at_most_three_trading_days() -> None:
    prices = _prices([10.0] * 8)
    index = pd.DataFrame(
        {"Date": prices["Date"].iloc[[0, 6, 7]], "Symbol": "^GSPC", "Close": [100.0, 110.0, 121.0]}
    )
    out = curate(prices, indices=index)
    assert out["mkt_gspc_close"].tolist()[:4] == [100.0] * 4
    assert out["mkt_gspc_close"].iloc[4:6].isna().all()
    assert out["mkt_gspc_ret"].iloc[1] == 0.0
    assert math.isnan(out["mkt_gspc_ret"].iloc[6])  # the day before is null
    assert out["mkt_gspc_ret"].iloc[7] == pytest.approx(math.log(1.1))


def test_later_rows_win_for_the_same_symbol_and_date() -> None:
    frame = pd.concat([_prices([10.0, 11.0]), _prices([10.0, 12.0])], ignore_index=True)
    out = curate(frame)
    assert out["close"].tolist() == [10.0, 12.0]


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("Date", "2024-13-01", "unparseable date"),
        ("Close", "abc", "unparseable number: Close"),
        ("Low", "-1", "non-positive price: Low"),
        ("High", "5", "high < low"),
        ("Volume", "-3", "negative volume"),
        ("Symbol", "bad symbol", "bad symbol"),
    ],
)
def test_unusable_rows_raise_a_clear_error(column: str, value: str, reason: str) -> None:
    frame = _prices([10.0, 11.0]).astype(str)
    frame.loc[1, column] = value
    with pytest.raises(ValueError, match=reason):
        curate(frame)


def test_missing_columns_are_named() -> None:
    with pytest.raises(ValueError, match="missing columns: Volume"):
        curate(_prices([10.0]).drop(columns="Volume"))


def test_a_price_too_large_for_exact_sums_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="too large to sum exactly"):
        curate(_prices([1e15] * 3))


def test_news_means_are_exact_sums_whatever_the_order() -> None:
    prices = _prices([10.0] * 2, start="2024-01-04")
    scores = pd.DataFrame({"Date": "2024-01-04", "Symbol": "AAA", "sentiment": ["0.1", "0.2", "0.3", "-0.7"]})
    forward = curate(prices, sentiment=scores)
    backward = curate(prices, sentiment=scores.iloc[::-1])
    assert forward["sentiment"].iloc[0] == backward["sentiment"].iloc[0]
    assert forward["sentiment"].iloc[0] == pytest.approx(-0.025, rel=1e-15)
    assert forward["news_count"].tolist() == [4, 0]
