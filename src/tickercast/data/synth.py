"""A deterministic market simulator with a planted, recoverable news signal.

Model, per trading day t (a weekday calendar with the NYSE's regular holidays):

* market log return ``m_t = mu_m + e_t`` with GARCH(1,1) variance and Student-t(5) shocks;
* ticker i: ``r_it = mu_i + beta_i * m_t + eps_it + kappa * s_i,t-1``, where ``eps`` has its own
  GARCH(1,1) variance and ``s_i,t-1`` is the *true sentiment* of the previous trading day;
* consistent OHLC (``low <= min(open, close)``, ``max(open, close) <= high``) and a volume that rises
  with the size of the move; ``^GSPC`` is the market factor's price path and ``^VIX`` its
  annualised conditional volatility in percent.

News: on about ``news_rate`` of days a ticker gets 1-3 headlines from calibrated templates
(:mod:`tickercast.data.headlines`). The true sentiment of (symbol, trading day t) is the mean VADER
compound score of the headlines *attributed to t as of its close*: published after 16:00 New York
time on the previous trading day, on the non-trading days in between, or on day t before 16:00. This
is exactly the rule the preprocessing job applies, so the sentiment it computes equals the truth.
Days without news have true sentiment 0 and no planted component.

Same arguments give byte-identical files. Tickers are simulated in chunks of
:data:`TICKERS_PER_CHUNK` with one random stream per ticker, so memory stays bounded and the first N
tickers do not depend on how many more are asked for.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tickercast import schema
from tickercast.data.headlines import HeadlineBank, build_bank, is_neutral_symbol
from tickercast.data.output import StagedOutput, WriteSummary
from tickercast.data.synth_format import TradingCalendar, clock_strings, price_table, write_csv, year_slices
from tickercast.errors import UserError
from tickercast.features.calendar import trading_days_ending, trading_days_from

MIN_DAYS = 260  # the 200-day moving average plus room to train and test
MAX_DAYS = 20_000
MAX_TICKERS = 100_000
MAX_ABS_KAPPA = 0.5
DEFAULT_END = dt.date(2024, 12, 31)  # without --start the calendar ends here, so runs are reproducible
TICKERS_PER_CHUNK = 250
TRUTH_FILE = "synth_truth.json"
ORACLE_FILE = "synth_oracle.parquet"
FILE_PREFIX = "synth-"
OWNED = (
    f"{schema.RAW_DIR}/{schema.RAW_PRICES}/{FILE_PREFIX}*.csv",
    f"{schema.RAW_DIR}/{schema.RAW_INDICES}/{FILE_PREFIX}*.csv",
    f"{schema.RAW_DIR}/{schema.RAW_NEWS}/{FILE_PREFIX}*.csv",
    TRUTH_FILE,
    ORACLE_FILE,
)
GENERATOR = "tickercast-synth/1"
# Tickers a user might also hold real data for; the simulator never emits them.
RESERVED_SYMBOLS = frozenset({"AAPL", "AMZN", "GOOG", "META", "MSFT", "NFLX", "NVDA", "TSLA", "ABCD"})
_SYMBOL_SEED = 20_240_101
_CLOSE_S = schema.MARKET_CLOSE_HOUR * 3600

# Market factor: daily volatility about 15% a year, strongly persistent variance.
_MKT_MU, _MKT_SIGMA, _MKT_ALPHA, _MKT_BETA = 3e-4, 0.0095, 0.09, 0.89
_T_DF = 5
# Headlines: how many on a news day, and when they are published relative to the session.
_HEADLINES_PER_DAY = (1, 2, 3)
_HEADLINES_P = (0.7, 0.22, 0.08)
_TONE_P = (0.4, 0.4, 0.2)  # positive, negative, neutral
_SESSION_SHARE, _AFTER_CLOSE_SHARE = 0.65, 0.2  # the rest falls on non-trading days when there are any


ProgressCallback = Callable[[int], None]


def _t_shocks(rng: np.random.Generator, size: int | tuple[int, ...]) -> np.ndarray:
    """Student-t shocks scaled to unit variance (fat tails, as in real returns)."""
    return rng.standard_t(_T_DF, size=size) / math.sqrt(_T_DF / (_T_DF - 2))


def make_symbols(count: int) -> list[str]:
    """Return ``count`` distinct 3-4 letter tickers, the same prefix whatever ``count`` is.

    Symbols that the sentiment scorer would read as words (``GOOD``, ``NO``, ...) and well-known real
    tickers are skipped, so a headline's score never depends on the symbol in it.
    """
    rng = np.random.default_rng(_SYMBOL_SEED)
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    symbols: list[str] = []
    seen: set[str] = set()
    while len(symbols) < count:
        lengths = rng.choice((3, 4), size=1024, p=(0.3, 0.7))
        draws = rng.integers(0, 26, size=(1024, 4))
        for length, row in zip(lengths, draws, strict=True):
            symbol = "".join(letters[row[:length]])
            if symbol in seen or symbol in RESERVED_SYMBOLS:
                continue
            seen.add(symbol)
            if is_neutral_symbol(symbol):
                symbols.append(symbol)
                if len(symbols) == count:
                    break
    return symbols


def _validate(tickers: int, days: int, kappa: float, news_rate: float) -> None:
    if not 1 <= tickers <= MAX_TICKERS:
        raise UserError(f"--tickers must be between 1 and {MAX_TICKERS:,}, got {tickers}")
    if days < MIN_DAYS:
        raise UserError(
            f"--days must be at least {MIN_DAYS} (the 200-day indicators need history), got {days}"
        )
    if days > MAX_DAYS:
        raise UserError(f"--days must be at most {MAX_DAYS:,}, got {days}")
    if not math.isfinite(kappa) or abs(kappa) > MAX_ABS_KAPPA:
        raise UserError(f"--kappa must be a number between -{MAX_ABS_KAPPA} and {MAX_ABS_KAPPA}, got {kappa}")
    if not 0.0 <= news_rate <= 1.0:
        raise UserError(f"news rate must be between 0 and 1, got {news_rate}")


@dataclass(frozen=True)
class _Market:
    returns: np.ndarray  # (D,) log returns of the market factor
    variance: np.ndarray  # (D + 1,) conditional variance; [t] applies to day t, [D] to the day after
    noise: np.ndarray  # (6, D) intraday noise for the two index series


def _simulate_market(seed: int, days: int) -> _Market:
    rng = np.random.default_rng([seed, 0])
    shocks = _t_shocks(rng, days)
    noise = rng.standard_normal((6, days))
    omega = _MKT_SIGMA**2 * (1 - _MKT_ALPHA - _MKT_BETA)
    variance = np.empty(days + 1)
    eps = np.empty(days)
    variance[0] = _MKT_SIGMA**2
    for t in range(days):
        eps[t] = math.sqrt(variance[t]) * shocks[t]
        variance[t + 1] = omega + _MKT_ALPHA * eps[t] ** 2 + _MKT_BETA * variance[t]
    return _Market(returns=_MKT_MU + eps, variance=variance, noise=noise)


@dataclass
class _Chunk:
    """One chunk of tickers, simulated over every day."""

    symbols: list[str]
    beta: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    sentiment: np.ndarray  # true sentiment per (ticker, day)
    news_count: np.ndarray
    # One entry per headline:
    h_ticker: np.ndarray
    h_day: np.ndarray
    h_template: np.ndarray
    h_local_day: np.ndarray  # New York calendar day of publication, days since 1970
    h_second: np.ndarray  # New York second of the day


def _price(x: np.ndarray, decimals: int) -> np.ndarray:
    """Round a price the way a feed would; rounding is monotonic, so OHLC order survives it."""
    floor = 10.0**-decimals
    return np.maximum(np.round(x, decimals), floor)


def _simulate_chunk(
    seed: int,
    first: int,
    symbols: list[str],
    market: _Market,
    calendar: TradingCalendar,
    kappa: float,
    news_rate: float,
    bank: HeadlineBank,
) -> _Chunk:
    n, days = len(symbols), len(calendar.days)
    params = np.empty((n, 7))
    shocks = np.empty((n, days))
    noise = np.empty((n, 4, days))
    tone_templates = [bank.by_tone(t) for t in range(3)]
    heads: list[tuple[np.ndarray, ...]] = []
    for row in range(n):
        rng = np.random.default_rng([seed, 1, first + row])
        params[row] = (
            rng.uniform(0.4, 1.8),  # beta
            rng.uniform(0.008, 0.020),  # idiosyncratic daily volatility
            rng.uniform(0.04, 0.10),  # GARCH alpha
            rng.uniform(0.93, 0.985),  # GARCH persistence (alpha + beta)
            math.exp(rng.uniform(math.log(10), math.log(400))),  # first previous close
            math.exp(rng.uniform(math.log(2e5), math.log(2e7))),  # typical volume
            rng.normal(2e-4, 2e-4),  # drift
        )
        shocks[row] = _t_shocks(rng, days)
        noise[row] = rng.standard_normal((4, days))
        has_news = rng.random(days) < news_rate
        per_day = np.where(has_news, rng.choice(_HEADLINES_PER_DAY, size=days, p=_HEADLINES_P), 0)
        tone = rng.choice(3, size=days, p=_TONE_P)
        day_of = np.repeat(np.arange(days), per_day)
        total = len(day_of)
        pick = rng.random(total)
        template = np.empty(total, dtype="int64")
        for t in range(3):
            mask = tone[day_of] == t
            choices = tone_templates[t]
            template[mask] = choices[(pick[mask] * len(choices)).astype("int64")]
        heads.append((np.full(total, row), day_of, template, rng.random((3, total))))

    beta, sigma, alpha, persist, p0, vol0, mu = params.T
    garch_beta = persist - alpha
    omega = sigma**2 * (1 - persist)
    var = np.empty((n, days))
    eps = np.empty((n, days))
    h = sigma**2
    prev = np.zeros(n)
    for t in range(days):
        h = omega + alpha * prev**2 + garch_beta * h
        var[:, t] = h
        prev = np.sqrt(h) * shocks[:, t]
        eps[:, t] = prev

    h_ticker = np.concatenate([x[0] for x in heads]).astype("int64")
    h_day = np.concatenate([x[1] for x in heads]).astype("int64")
    h_template = np.concatenate([x[2] for x in heads])
    uniforms = np.concatenate([x[3] for x in heads], axis=1)
    cell = h_ticker * days + h_day
    news_count = np.bincount(cell, minlength=n * days).reshape(n, days)
    score_sum = np.bincount(cell, weights=bank.score[h_template], minlength=n * days).reshape(n, days)
    sentiment = np.divide(score_sum, news_count, out=np.zeros((n, days)), where=news_count > 0)

    returns = mu[:, None] + beta[:, None] * market.returns[None, :] + eps
    returns[:, 1:] += kappa * sentiment[:, :-1]
    close = p0[:, None] * np.exp(np.cumsum(returns, axis=1))
    prev_close = np.concatenate((p0[:, None], close[:, :-1]), axis=1)
    day_sd = np.sqrt(beta[:, None] ** 2 * market.variance[None, :days] + var)
    overnight = 0.35 * returns + 0.15 * day_sd * noise[:, 0]
    open_ = prev_close * np.exp(overnight)
    high = np.maximum(open_, close) * np.exp(0.5 * day_sd * np.abs(noise[:, 1]))
    low = np.minimum(open_, close) * np.exp(-0.5 * day_sd * np.abs(noise[:, 2]))
    volume = np.rint(vol0[:, None] * np.exp(0.3 * noise[:, 3] + 12.0 * np.abs(returns))).astype("int64")

    local_day, second = _publication_times(calendar, h_day, uniforms)
    return _Chunk(
        symbols=symbols,
        beta=beta,
        open=_price(open_, 4),
        high=_price(high, 4),
        low=_price(low, 4),
        close=_price(close, 4),
        volume=volume,
        sentiment=sentiment,
        news_count=news_count,
        h_ticker=h_ticker,
        h_day=h_day,
        h_template=h_template,
        h_local_day=local_day,
        h_second=second,
    )


def _publication_times(
    calendar: TradingCalendar, h_day: np.ndarray, uniforms: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Spread headlines over the window that counts for their trading day as of its close.

    65% fall on the trading day itself between 06:00 and 15:59:59, 20% after 16:05 on the previous
    trading day, and 15% on the weekend or holiday in between (or in the session when there is none).
    Times never touch 16:00 exactly, so "after the close" is never ambiguous.
    """
    kind_u, second_u, gap_u = uniforms
    day = calendar.day_int[h_day]
    prev = calendar.prev_int[h_day]
    gap = day - prev - 1
    kind = np.where(kind_u < _SESSION_SHARE, 0, np.where(kind_u < _SESSION_SHARE + _AFTER_CLOSE_SHARE, 1, 2))
    kind = np.where((kind == 2) & (gap == 0), 0, kind)
    off_day = prev + 1 + np.floor(gap_u * np.maximum(gap, 1)).astype("int64")
    local_day = np.select([kind == 0, kind == 1], [day, prev], off_day)
    session = 6 * 3600 + np.floor(second_u * (_CLOSE_S - 6 * 3600))
    after = _CLOSE_S + 300 + np.floor(second_u * (86_400 - _CLOSE_S - 300))
    weekend = 8 * 3600 + np.floor(second_u * 14 * 3600)
    second = np.select([kind == 0, kind == 1], [session, after], weekend).astype("int64")
    return local_day, second


@dataclass
class _Stats:
    """Running sums for the truth file, accumulated chunk by chunk."""

    pairs: int = 0
    abs_oracle: float = 0.0
    abs_naive: float = 0.0
    s: float = 0.0
    r: float = 0.0
    ss: float = 0.0
    rr: float = 0.0
    sr: float = 0.0
    news_days: int = 0
    headlines: int = 0

    def add(self, chunk: _Chunk, kappa: float) -> None:
        log_ret = np.diff(np.log(chunk.close), axis=1)  # what preprocess computes from the CSVs
        planted = kappa * chunk.sentiment[:, :-1]
        s = chunk.sentiment[:, :-1]
        self.pairs += log_ret.size
        self.abs_oracle += float(np.abs(log_ret - planted).sum())
        self.abs_naive += float(np.abs(log_ret).sum())
        self.s += float(s.sum())
        self.r += float(log_ret.sum())
        self.ss += float((s * s).sum())
        self.rr += float((log_ret * log_ret).sum())
        self.sr += float((s * log_ret).sum())
        self.news_days += int((chunk.news_count > 0).sum())
        self.headlines += len(chunk.h_day)

    def corr_and_slope(self) -> tuple[float, float]:
        n = self.pairs
        cov = self.sr / n - (self.s / n) * (self.r / n)
        var_s = self.ss / n - (self.s / n) ** 2
        var_r = self.rr / n - (self.r / n) ** 2
        if var_s <= 0 or var_r <= 0:
            return 0.0, 0.0
        return cov / math.sqrt(var_s * var_r), cov / var_s


def _write_prices(staged: StagedOutput, chunk_no: int, chunk: _Chunk, calendar: TradingCalendar) -> int:
    rows = 0
    for k, (year, a, b) in enumerate(year_slices(calendar)):
        # Alternate ISO dates and yfinance's midnight timestamps with offset: both are in the contract.
        dates = calendar.price_dates(a, b, yfinance_style=(chunk_no + k) % 2 == 1)
        cols = {
            "Open": chunk.open[:, a:b],
            "High": chunk.high[:, a:b],
            "Low": chunk.low[:, a:b],
            "Close": chunk.close[:, a:b],
            "Volume": chunk.volume[:, a:b],
        }
        path = staged.path(
            f"{schema.RAW_DIR}/{schema.RAW_PRICES}/{FILE_PREFIX}prices-c{chunk_no:03d}-{year}.csv"
        )
        write_csv(path, schema.PRICE_COLUMNS, price_table(dates, chunk.symbols, cols), quote=False)
        rows += len(chunk.symbols) * (b - a)
    return rows


def _write_news(
    staged: StagedOutput, chunk_no: int, chunk: _Chunk, calendar: TradingCalendar, bank: HeadlineBank
) -> int:
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(chunk.h_day) == 0:
        return 0
    offset = calendar.offset_s[calendar.index(chunk.h_local_day)]
    utc = chunk.h_local_day * 86_400 + chunk.h_second - offset
    order = np.lexsort((utc, chunk.h_ticker))
    years = calendar.days.astype("datetime64[Y]").astype("int64")[chunk.h_day[order]] + 1970
    clock = clock_strings()
    rows = 0
    for k, year in enumerate(np.unique(years)):
        sel = order[years == year]
        if (chunk_no + k) % 2 == 0:  # New York local time with its offset
            day_idx = calendar.index(chunk.h_local_day[sel])
            stamp = calendar.iso[day_idx] + "T" + clock[chunk.h_second[sel]] + calendar.offset_text[day_idx]
        else:  # the same instant in UTC
            day_idx = calendar.index(utc[sel] // 86_400)
            stamp = calendar.iso[day_idx] + "T" + clock[utc[sel] % 86_400] + "+00:00"
        template = chunk.h_template[sel]
        headline = pc.binary_join_element_wise(
            pa.array(bank.prefix[template].tolist()),
            pa.array(chunk.symbols).take(pa.array(chunk.h_ticker[sel])),
            pa.array(bank.suffix[template].tolist()),
            "",
        )
        table = pa.Table.from_arrays(
            [pa.array(stamp.tolist()), pa.array(chunk.symbols).take(pa.array(chunk.h_ticker[sel])), headline],
            names=list(schema.NEWS_COLUMNS),
        )
        path = staged.path(f"{schema.RAW_DIR}/{schema.RAW_NEWS}/{FILE_PREFIX}news-c{chunk_no:03d}-{year}.csv")
        write_csv(path, schema.NEWS_COLUMNS, table, quote=True)
        rows += len(sel)
    return rows


def _write_indices(staged: StagedOutput, market: _Market, calendar: TradingCalendar) -> int:
    days = len(calendar.days)
    noise = market.noise
    day_sd = np.sqrt(market.variance[:days])
    close = 2000.0 * np.exp(np.cumsum(market.returns))
    prev_close = np.concatenate(([2000.0], close[:-1]))
    open_ = prev_close * np.exp(0.3 * market.returns + 0.1 * day_sd * noise[0])
    high = np.maximum(open_, close) * np.exp(0.4 * day_sd * np.abs(noise[1]))
    low = np.minimum(open_, close) * np.exp(-0.4 * day_sd * np.abs(noise[2]))
    volume = np.rint(3.5e9 * np.exp(0.2 * noise[3] + 15.0 * np.abs(market.returns))).astype("int64")
    # VIX: the market's conditional volatility for the next day, annualised, in percent, plus a premium.
    vix_close = 110.0 * np.sqrt(252.0 * market.variance[1:]) * np.exp(0.05 * noise[4])
    vix_open = np.concatenate(([vix_close[0]], vix_close[:-1])) * np.exp(0.03 * noise[5])
    vix_high = np.maximum(vix_open, vix_close) * np.exp(0.04 * np.abs(noise[4] - noise[5]))
    vix_low = np.minimum(vix_open, vix_close) * np.exp(-0.04 * np.abs(noise[4] + noise[5]))
    series = (
        ("^GSPC", "gspc", False, (open_, high, low, close), volume),
        ("^VIX", "vix", True, (vix_open, vix_high, vix_low, vix_close), np.zeros(days, dtype="int64")),
    )
    for symbol, name, yfinance_style, ohlc, vol in series:
        cols = dict(zip(("Open", "High", "Low", "Close"), (_price(x, 2)[None, :] for x in ohlc), strict=True))
        cols["Volume"] = vol[None, :]
        table = price_table(calendar.price_dates(0, days, yfinance_style), [symbol], cols)
        path = staged.path(f"{schema.RAW_DIR}/{schema.RAW_INDICES}/{FILE_PREFIX}index-{name}.csv")
        write_csv(path, schema.PRICE_COLUMNS, table, quote=False)
    return 2 * days


def _refuse_other_run_early(
    out: Path, seed: int, kappa: float, tickers: int, start: str, days: int, news_rate: float
) -> None:
    """Refuse before simulating when ``out`` holds a run with other arguments (saves minutes at scale)."""
    path = out / TRUTH_FILE
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        return  # no earlier run, or an unreadable one that the final comparison will name
    wanted = {
        "generator": GENERATOR,
        "seed": seed,
        "kappa": kappa,
        "tickers": tickers,
        "start": start,
        "days": days,
        "news_rate": news_rate,
    }
    changed = [
        f"{key} {previous.get(key)} -> {value}" for key, value in wanted.items() if previous.get(key) != value
    ]
    if changed:
        raise UserError(
            f"refusing to overwrite data in {out}: it holds a synth run with other arguments "
            f"({', '.join(changed)}); use --force to replace it, or choose another --out"
        )


def generate_market(
    out: Path,
    tickers: int,
    days: int,
    seed: int = 7,
    start: dt.date | None = None,
    kappa: float = 0.02,
    *,
    news_rate: float = 0.6,
    force: bool = False,
    progress: ProgressCallback | None = None,
) -> WriteSummary:
    """Simulate a market and write it in the raw contract under ``out``.

    Writes ``raw/prices/synth-prices-c<chunk>-<year>.csv``, ``raw/indices/synth-index-{gspc,vix}.csv``
    (symbols ``^GSPC`` and ``^VIX``), ``raw/news/synth-news-c<chunk>-<year>.csv``,
    ``synth_truth.json`` and ``synth_oracle.parquet`` (date, symbol, planted, sentiment, news_count;
    ``planted`` = kappa x true sentiment on that date, added to the next trading day's log return).

    Args:
        out: The data root.
        tickers: Number of simulated tickers.
        days: Number of trading days (at least :data:`MIN_DAYS`).
        seed: Random seed; the same arguments give byte-identical files.
        start: First calendar date (rolled forward to a trading day). Default: the calendar ends on
            2024-12-31.
        kappa: Strength of the planted signal (log-return per unit of sentiment).
        news_rate: Share of (ticker, trading day) cells with headlines.
        force: Replace existing files whose content differs, and remove stale ``synth-*`` files.
        progress: Called with the number of tickers finished after each chunk.

    Returns:
        What was written where.

    Raises:
        UserError: An argument is out of range, the calendar would reach today or later, ``out`` is
            not writable, or existing files would change without ``force``.

    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    _validate(tickers, days, kappa, news_rate)
    if start is None:
        calendar = TradingCalendar(trading_days_ending(DEFAULT_END, days))
    else:
        calendar = TradingCalendar(trading_days_from(start, days))
    end = calendar.days[-1].astype(object)
    if end >= dt.date.today():
        raise UserError(
            f"{days} trading days from {start} run to {end}, which is not in the past; "
            "pass an earlier --start"
        )
    if not force:
        _refuse_other_run_early(Path(out), seed, kappa, tickers, str(calendar.days[0]), days, news_rate)
    symbols = make_symbols(tickers)
    bank = build_bank("vader")
    market = _simulate_market(seed, days)
    oracle_schema = pa.schema(
        [
            ("date", pa.date32()),
            ("symbol", pa.string()),
            ("planted", pa.float64()),
            ("sentiment", pa.float64()),
            ("news_count", pa.int32()),
        ]
    )
    stats = _Stats()
    betas: dict[str, float] = {}
    rows = {schema.RAW_PRICES: 0, schema.RAW_INDICES: 0, schema.RAW_NEWS: 0}
    with StagedOutput(out, owned=OWNED) as staged:
        rows[schema.RAW_INDICES] = _write_indices(staged, market, calendar)
        dates = pa.array(calendar.days.astype("datetime64[D]"), type=pa.date32())
        with pq.ParquetWriter(staged.path(ORACLE_FILE), oracle_schema, compression="zstd") as oracle:
            for chunk_no, first in enumerate(range(0, tickers, TICKERS_PER_CHUNK)):
                chunk_symbols = symbols[first : first + TICKERS_PER_CHUNK]
                chunk = _simulate_chunk(seed, first, chunk_symbols, market, calendar, kappa, news_rate, bank)
                rows[schema.RAW_PRICES] += _write_prices(staged, chunk_no, chunk, calendar)
                rows[schema.RAW_NEWS] += _write_news(staged, chunk_no, chunk, calendar, bank)
                n = len(chunk_symbols)
                oracle.write_table(
                    pa.table(
                        {
                            "date": dates.take(pa.array(np.tile(np.arange(days), n))),
                            "symbol": pa.array(chunk_symbols).take(pa.array(np.repeat(np.arange(n), days))),
                            "planted": pa.array((kappa * chunk.sentiment).reshape(-1)),
                            "sentiment": pa.array(chunk.sentiment.reshape(-1)),
                            "news_count": pa.array(chunk.news_count.reshape(-1).astype("int32")),
                        },
                        schema=oracle_schema,
                    )
                )
                stats.add(chunk, kappa)
                betas.update(zip(chunk_symbols, (round(float(b), 6) for b in chunk.beta), strict=True))
                if progress is not None:
                    progress(n)
        corr, slope = stats.corr_and_slope()
        truth = {
            "generator": GENERATOR,
            "seed": seed,
            "kappa": kappa,
            "tickers": tickers,
            "days": days,
            "start": str(calendar.days[0]),
            "end": str(calendar.days[-1]),
            "news_rate": news_rate,
            "news_days": stats.news_days,
            "headlines": stats.headlines,
            "scorer": "vader",
            "sentiment_definition": (
                "mean VADER compound score of the headlines attributed to a trading date as of its "
                "16:00 America/New_York close (after-close and non-trading-day headlines count for the "
                "next trading date); 0 on days without news"
            ),
            "oracle_mae_log_return": round(stats.abs_oracle / stats.pairs, 10),
            "naive_mae_log_return": round(stats.abs_naive / stats.pairs, 10),
            "sentiment_next_return_corr": round(corr, 10),
            "sentiment_next_return_slope": round(slope, 10),
            "oracle_file": ORACLE_FILE,
            "betas": betas,
        }
        staged.path(TRUTH_FILE).write_text(json.dumps(truth, indent=2) + "\n")
        return staged.commit(rows, force=force)
