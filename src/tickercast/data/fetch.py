"""Live daily prices, indices and headlines from Yahoo Finance through yfinance (the ``fetch`` extra).

The boundary with the network is two calls on ``yfinance.Ticker``: ``history`` (daily OHLCV with
dividends and splits, unadjusted, dates as New York midnight timestamps with offset) and
``get_news``. Everything is fetched before anything is written, so a failure part-way (no network,
an unknown ticker, a rate limit) writes nothing and ends with one line saying why.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from tickercast import schema
from tickercast.data.output import StagedOutput, WriteSummary
from tickercast.errors import UserError

INDEX_SYMBOLS = ("^GSPC", "^IXIC", "^VIX")
FILE_PREFIX = "yf-"
MAX_TICKERS = 200
NEWS_COUNT = 100
_HISTORY_COLUMNS = ("Open", "High", "Low", "Close", "Volume", "Adj Close", "Dividends", "Stock Splits")


def parse_tickers(text: str) -> list[str]:
    """Split a comma-separated ticker list, upper-case it and check every symbol.

    Args:
        text: For example ``"aapl, MSFT"``.

    Returns:
        The distinct symbols in the order given.

    Raises:
        UserError: The list is empty, too long, or holds an invalid symbol.

    """
    symbols = list(dict.fromkeys(s.strip().upper() for s in text.split(",") if s.strip()))
    if not symbols:
        raise UserError("--tickers needs at least one symbol, e.g. --tickers AAPL,MSFT")
    if len(symbols) > MAX_TICKERS:
        raise UserError(f"--tickers takes at most {MAX_TICKERS} symbols per fetch, got {len(symbols)}")
    bad = [s for s in symbols if not schema.SYMBOL_RE.match(s)]
    if bad:
        raise UserError(f"invalid ticker {bad[0]!r}: use letters, digits and . ^ = - (at most 15 characters)")
    return symbols


def _yfinance() -> Any:
    try:
        import yfinance
    except ImportError:
        raise UserError(
            "yfinance is not installed; install the fetch extra: pip install 'tickercast[fetch]'"
        ) from None
    logging.getLogger("yfinance").setLevel(logging.CRITICAL)  # its own error logs would repeat ours
    return yfinance


def _first_line(exc: BaseException) -> str:
    """Return the gist of an exception's message (curl's ``curl: (6) X. See URL`` becomes ``X``)."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    curl = re.search(r"curl: \(\d+\) (.*?)(?:\. See https?://\S+.*)?$", text)
    if curl:
        text = curl.group(1)
    return text[:160]


def _is_network_error(exc: BaseException) -> bool:
    """Tell a connection problem from Yahoo saying "no such data" (both come out of yfinance)."""
    if isinstance(exc, OSError | TimeoutError | ConnectionError):
        return True
    name = type(exc).__name__
    return any(word in name for word in ("Connection", "DNS", "Timeout", "SSL", "Proxy"))


def fetch_history(symbol: str, start: dt.date, end: dt.date) -> pd.DataFrame:
    """Download one symbol's daily history and shape it into the raw contract.

    Args:
        symbol: Ticker or index symbol.
        start: First date.
        end: Last date, inclusive.

    Returns:
        ``Date`` (yfinance's ``YYYY-MM-DD 00:00:00-05:00`` timestamps), ``Symbol``, then
        ``Open, High, Low, Close, Volume, Adj Close, Dividends, Stock Splits`` as present; rows
        without a close are dropped.

    Raises:
        UserError: No network, or Yahoo has no daily prices for the symbol in the range.

    """
    yf = _yfinance()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # raise_errors is deprecated but still the portable switch
            frame = yf.Ticker(symbol).history(
                start=start.isoformat(),
                end=(end + dt.timedelta(days=1)).isoformat(),  # yfinance's end is exclusive
                interval="1d",
                auto_adjust=False,
                actions=True,
                raise_errors=True,
            )
    except Exception as exc:  # the boundary: yfinance raises requests/curl errors and its own YF* errors
        if _is_network_error(exc):
            raise UserError(f"cannot reach Yahoo Finance (no network?): {_first_line(exc)}") from None
        raise UserError(
            f"Yahoo Finance has no daily prices for {symbol} from {start} to {end} "
            f"(unknown or delisted ticker?): {_first_line(exc)}"
        ) from None
    if frame is None or frame.empty or "Close" not in frame:
        raise UserError(
            f"Yahoo Finance has no daily prices for {symbol} from {start} to {end} "
            "(unknown or delisted ticker?)"
        )
    frame = frame.dropna(subset=["Close"])
    # Daily bars are stamped at midnight in the exchange's zone (New York, Chicago for ^VIX): keep that
    # stamp as yfinance writes it, so its date part is the trading date.
    index = pd.DatetimeIndex(frame.index)
    dates = [ts.isoformat(sep=" ") if index.tz is not None else ts.date().isoformat() for ts in index]
    out = pd.DataFrame({"Date": dates, "Symbol": symbol})
    for column in _HISTORY_COLUMNS:
        if column in frame:
            out[column] = frame[column].to_numpy()
    if "Volume" in out:
        out["Volume"] = out["Volume"].fillna(0).astype("int64")
    local_dates = index.date
    keep = (local_dates >= start) & (local_dates <= end)
    return out[keep].reset_index(drop=True)


def _news_item(item: dict[str, Any]) -> tuple[pd.Timestamp, str] | None:
    """Read one yfinance news item, in the current (``content``) or the older flat layout."""
    nested = item.get("content")
    content: dict[str, Any] = nested if isinstance(nested, dict) else item
    title = content.get("title")
    published = content.get("pubDate") or content.get("displayTime")
    if published:
        stamp = pd.Timestamp(published)
    elif content.get("providerPublishTime") is not None:
        stamp = pd.Timestamp(int(content["providerPublishTime"]), unit="s")
    else:
        return None
    if not title or not str(title).strip():
        return None
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return stamp.tz_convert(schema.MARKET_TIMEZONE), " ".join(str(title).split())


def fetch_news(symbol: str, start: dt.date, end: dt.date) -> pd.DataFrame:
    """Download the recent headlines Yahoo Finance lists for a symbol, within ``start..end``.

    Args:
        symbol: Ticker symbol.
        start: First New York publication date kept.
        end: Last New York publication date kept.

    Returns:
        ``published_at`` (ISO timestamp with New York offset), ``Symbol``, ``headline``.

    Raises:
        UserError: No network.

    """
    yf = _yfinance()
    try:
        items = yf.Ticker(symbol).get_news(count=NEWS_COUNT)
    except Exception as exc:  # the boundary, as in fetch_history
        if _is_network_error(exc):
            raise UserError(f"cannot reach Yahoo Finance (no network?): {_first_line(exc)}") from None
        raise UserError(f"Yahoo Finance news for {symbol} failed: {_first_line(exc)}") from None
    rows = [parsed for parsed in map(_news_item, items or []) if parsed is not None]
    rows = [(ts, title) for ts, title in rows if start <= ts.date() <= end]
    rows.sort(key=lambda row: row[0])
    return pd.DataFrame(
        {
            "published_at": [ts.isoformat() for ts, _ in rows],
            "Symbol": symbol,
            "headline": [title for _, title in rows],
        },
        columns=list(schema.NEWS_COLUMNS),
    )


def _file_symbol(symbol: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=-]", "", symbol.replace("^", "idx-"))


def fetch_market(
    out: Path,
    tickers: Iterable[str],
    start: dt.date,
    end: dt.date | None = None,
    *,
    indices: bool = False,
    news: bool = False,
    force: bool = False,
    progress: Callable[[int], None] | None = None,
) -> WriteSummary:
    """Fetch daily prices (and optionally indices and headlines) and write them in the raw contract.

    Files: ``raw/prices/yf-<SYMBOL>-<start>-<end>.csv``, ``raw/indices/yf-idx-<NAME>-<start>-<end>.csv``
    and ``raw/news/yf-news-<SYMBOL>-<start>-<end>.csv``; a later fetch of another range adds files
    next to these (the contract allows overlapping files).

    Args:
        out: The data root.
        tickers: Symbols to fetch (checked with :func:`parse_tickers` rules).
        start: First date.
        end: Last date, inclusive; default today.
        indices: Also fetch ^GSPC, ^IXIC and ^VIX.
        news: Also fetch headlines for each ticker.
        force: Replace existing files whose content differs.
        progress: Called with 1 after each download.

    Returns:
        What was written where.

    Raises:
        UserError: Bad dates or symbols, no network, an unknown ticker, an unwritable ``out``, or
            existing files that would change without ``force``. Nothing is written in that case.

    """
    symbols = parse_tickers(",".join(tickers))
    today = dt.date.today()
    if start > today:
        raise UserError(f"--start {start} is in the future")
    end = min(end or today, today)
    if start > end:
        raise UserError(f"--start {start} is after --end {end}")
    span = f"{start}-{end}"
    plan = [(schema.RAW_PRICES, s) for s in symbols]
    if indices:
        plan += [(schema.RAW_INDICES, s) for s in INDEX_SYMBOLS]
    with StagedOutput(out) as staged:  # checks --out before any download
        rows = {schema.RAW_PRICES: 0, schema.RAW_INDICES: 0}
        if news:
            rows[schema.RAW_NEWS] = 0
        for kind, symbol in plan:
            frame = fetch_history(symbol, start, end)
            name = f"{schema.RAW_DIR}/{kind}/{FILE_PREFIX}{_file_symbol(symbol)}-{span}.csv"
            frame.to_csv(staged.path(name), index=False, lineterminator="\n")
            rows[kind] += len(frame)
            if progress is not None:
                progress(1)
        for symbol in symbols if news else ():
            headlines = fetch_news(symbol, start, end)
            if len(headlines):
                name = (
                    f"{schema.RAW_DIR}/{schema.RAW_NEWS}/{FILE_PREFIX}news-{_file_symbol(symbol)}-{span}.csv"
                )
                headlines.to_csv(staged.path(name), index=False, lineterminator="\n")
                rows[schema.RAW_NEWS] += len(headlines)
            if progress is not None:
                progress(1)
        return staged.commit(rows, force=force)
