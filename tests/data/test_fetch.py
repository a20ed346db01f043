from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import ClassVar

import pandas as pd
import pytest
import yfinance
from yfinance.exceptions import YFPricesMissingError

from tickercast import schema
from tickercast.data.fetch import fetch_market, parse_tickers
from tickercast.errors import UserError

from .conftest import read_raw

FIXTURES = Path(__file__).parent / "fixtures" / "yfinance"
START, END = dt.date(2024, 1, 2), dt.date(2024, 1, 8)


class RecordedTicker:
    """Replays the recorded yfinance responses in tests/data/fixtures/yfinance."""

    calls: ClassVar[list[tuple[str, dict]]] = []

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol

    def history(self, **kwargs: object) -> pd.DataFrame:
        RecordedTicker.calls.append((self.symbol, kwargs))
        path = FIXTURES / f"{self.symbol}.csv"
        if not path.exists():
            raise YFPricesMissingError(self.symbol, f"(1d {kwargs['start']} -> {kwargs['end']})")
        frame = pd.read_csv(path, index_col="Date")
        frame.index = pd.DatetimeIndex([pd.Timestamp(s) for s in frame.index])
        lo, hi = pd.Timestamp(str(kwargs["start"])).date(), pd.Timestamp(str(kwargs["end"])).date()
        return frame[[lo <= ts.date() < hi for ts in frame.index]]

    def get_news(self, count: int = 10) -> list:
        return json.loads((FIXTURES / "news.json").read_text()).get(self.symbol, [])


class OfflineTicker(RecordedTicker):
    def history(self, **kwargs: object) -> pd.DataFrame:
        from curl_cffi.requests.exceptions import DNSError

        raise DNSError(
            "Failed to perform, curl: (6) Could not resolve host: query2.finance.yahoo.com. "
            "See https://curl.se/libcurl/c/libcurl-errors.html first for more details."
        )


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> type[RecordedTicker]:
    RecordedTicker.calls = []
    monkeypatch.setattr(yfinance, "Ticker", RecordedTicker)
    return RecordedTicker


def test_fetch_writes_prices_indices_and_news_in_the_contract(recorded, tmp_path: Path) -> None:
    summary = fetch_market(tmp_path, ["aapl", "MSFT"], START, END, indices=True, news=True)
    assert summary.rows == {"prices": 10, "indices": 15, "news": 4}

    prices = read_raw(tmp_path, schema.RAW_PRICES)
    assert list(prices.columns[:7]) == list(schema.PRICE_COLUMNS)
    assert set(prices["Symbol"]) == {"AAPL", "MSFT"}
    assert prices["Date"].iloc[0] == "2024-01-02 00:00:00-05:00"
    aapl = prices[prices["Symbol"] == "AAPL"]
    assert aapl["Close"].astype(float).tolist() == pytest.approx(
        [185.64, 184.25, 181.91, 181.18, 185.56], abs=1e-5
    )
    assert aapl["Volume"].tolist() == ["82488700", "58414500", "71983600", "62303300", "59144500"]

    indices = read_raw(tmp_path, schema.RAW_INDICES)
    assert set(indices["Symbol"]) == {"^GSPC", "^IXIC", "^VIX"}
    vix_dates = indices.loc[indices["Symbol"] == "^VIX", "Date"].str.slice(0, 10)
    assert vix_dates.tolist() == ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-08"]

    news = read_raw(tmp_path, schema.RAW_NEWS)
    assert list(news.columns[:3]) == list(schema.NEWS_COLUMNS)
    # the February item is outside the window and the untitled video is dropped
    assert news["headline"].tolist() == [
        "Apple shares slide as analysts downgrade iPhone maker",
        "Apple faces weak demand in China",
        "Apple stock rebounds on strong services growth",
        "Microsoft nears Apple as most valuable company",
    ]
    assert news["published_at"].tolist()[:2] == ["2024-01-02T09:31:07-05:00", "2024-01-04T17:05:00-05:00"]
    assert news.loc[news["Symbol"] == "MSFT", "published_at"].item() == "2024-01-05T10:00:00-05:00"

    # the request asked for unadjusted daily bars over the inclusive window
    symbol, kwargs = recorded.calls[0]
    assert symbol == "AAPL" and kwargs["interval"] == "1d" and kwargs["auto_adjust"] is False
    assert (kwargs["start"], kwargs["end"]) == ("2024-01-02", "2024-01-09")


def test_refetching_the_same_range_leaves_identical_files_alone(recorded, tmp_path: Path) -> None:
    fetch_market(tmp_path, ["AAPL"], START, END)
    again = fetch_market(tmp_path, ["AAPL"], START, END)
    assert again.written == [] and again.unchanged == ["raw/prices/yf-AAPL-2024-01-02-2024-01-08.csv"]


def test_unknown_ticker_fails_with_one_line_and_writes_nothing(recorded, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"no daily prices for ZZZZZ .*unknown or delisted") as excinfo:
        fetch_market(tmp_path / "out", ["AAPL", "ZZZZZ"], START, END)
    assert "\n" not in str(excinfo.value)
    assert not list((tmp_path / "out").rglob("*.csv"))


def test_no_network_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(yfinance, "Ticker", OfflineTicker)
    with pytest.raises(UserError) as excinfo:
        fetch_market(tmp_path, ["AAPL"], START, END)
    assert str(excinfo.value) == (
        "cannot reach Yahoo Finance (no network?): Could not resolve host: query2.finance.yahoo.com"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "at least one symbol"),
        ("AAPL,BAD TICKER", "invalid ticker 'BAD TICKER'"),
        (",".join(["A"] * 1), None),
    ],
)
def test_ticker_lists_are_checked(text: str, message: str | None) -> None:
    if message is None:
        assert parse_tickers(text) == ["A"]
    else:
        with pytest.raises(UserError, match=message):
            parse_tickers(text)


def test_dates_are_checked(recorded, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="after --end"):
        fetch_market(tmp_path, ["AAPL"], END, START)
    with pytest.raises(UserError, match="in the future"):
        fetch_market(tmp_path, ["AAPL"], dt.date.today() + dt.timedelta(days=3))
    assert recorded.calls == []
